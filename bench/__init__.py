"""talbench coordinator: scenarios, planning, dispatch, judging, reports and the CLI.

Its modules and packages, from the top layer down (one direction; .importlinter holds it and
tests/test_import_contract.py proves a breach fails; talbench.agents imports none of them):
    cli/               the `talbench` command: the only place that prints or exits
    run                one run, start to finish (deploy, plan, execute, judge)
    execute            runs the planned probes through a dispatcher's fleet
    probes/            the probes' drivers (orchestrating agents) and their metrics
    dispatch/          how agents are deployed and reached (lab, kube)
    kube/              everything that talks to the Kubernetes API or builds its objects
    lab/               the lab: a cluster stand-in of network namespaces on this host
    agent_client       the client of one agent's HTTP API
    agent_tls          each run's agent CA and serving certificate
    report/            table, run.json, junit.xml, report.html, Prometheus metrics and Pushgateway
    progress           live progress on stderr
    judge              pure: results + thresholds -> verdicts
    retry              pure: which fails are measured once more
    plan               pure: which checks run over which subjects, which results they need
    scenario           scenario files, parsed strictly
    compare/           pure: what changed between two runs (`talbench compare`)
    scenario_include   composition of scenario files with ``include:``
    metric             what a metric is, and the progress sink
    context            the host context of a measurement
    sampling           which node pairs a pair probe measures
    cluster_facts      the cluster's shape as frozen records
    model              plain frozen records used everywhere
    units              quantities with units
    stats              summaries of raw samples
    errors             talbench's own exceptions (the CLI maps them to exit codes)
    histogram          a mergeable latency histogram
    pki                certificates made by talbench itself, in memory
"""
