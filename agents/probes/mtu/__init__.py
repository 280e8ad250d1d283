"""Probe ``mtu``: the largest packet that crosses to each peer unfragmented.

- probe.py: the declaration, its parameters and the ``mtu`` job (DF-bit UDP probes per peer)

It sends the RTT packet (agents/net/packet.py) to the peers' echo responders and takes the peer
list from the rtt probe."""
