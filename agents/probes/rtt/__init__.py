"""Probe ``rtt``: UDP round trips to every peer's echo responder.

- probe.py: the declaration, its parameters and the ``rtt`` job (one stream per peer)
- stream.py: one peer's stream of stamped packets and the round trips read from them

The packet, the kernel timestamps and the echo responder are shared with mtu and wireguard:
agents/net/."""
