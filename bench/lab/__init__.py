"""The talbench lab: a multi-node cluster stand-in made of network namespaces on this host.

topology (spec, --delay parsing, address plan; pure), netns (bounded ``ip`` wrapper),
state (lab.json and the host-wide lab index), processes (spawning, signalling, health over the
agents' unix sockets), delayline (the userspace TUN delay program), network (building the lab's
namespaces, bridge, veths and routes), launch (starting the delay line and the agents),
status (a lab's condition and health), teardown (down, and crashed labs' leftovers),
addons (the add-on point: agent launchers, add-ons and what they leave behind),
lab (up, and the entry points: up / down / status / find_usable),
delayline_timing (the delay line's spin budget).
"""
