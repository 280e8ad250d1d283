"""What the agent's UDP measurements share: the echo responder the agent app always serves and
the probes that send to it (rtt, mtu, and wireguard's ping through a tunnel), which is why these
modules are not in one probe's folder.

- packet.py: the RTT packet (TWAMP-light in spirit), shared by senders and the responder
- timestamps.py: kernel timestamps on UDP sockets (SO_TIMESTAMPING, SO_TIMESTAMPNS)
- echo.py: the UDP echo responder (the reflector)
"""
