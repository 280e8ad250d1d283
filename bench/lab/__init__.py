"""The talbench lab: a multi-node cluster stand-in made of network namespaces on this host.

topology (spec, --delay parsing, address plan; pure), netns (bounded ``ip`` wrapper),
state (lab.json and the host-wide lab index), processes (agents and the delay line),
delayline (the userspace TUN delay program), lab (up / down / status).
"""
