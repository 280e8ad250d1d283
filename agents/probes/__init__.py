"""Agent-side probes: one folder per probe (``<name>/probe.py`` declares it: its parameters, jobs,
tools and capabilities; the folder holds every helper only that probe runs), the same name as its
coordinator-side folder under bench/probes/.  The list of probes is agents/probes/registry.py."""
