"""talbench coordinator: scenarios, planning, dispatch, judging, reports and the CLI.

Layers (one direction; tests/test_import_contract.py enforces it):
    talbench.agents        probes (declared units) and the agent process; imports nothing from
                           talbench.bench
    bench.units, bench.model, bench.metric, bench.cluster_facts, bench.scenario, bench.errors
                           plain records and parsing
    bench.stats            pure summaries of raw samples
    bench.judge            pure: results + thresholds -> verdicts
    bench.plan             pure: which checks run over which subjects, which results they need
    bench.probes.*         the probes' drivers (orchestrating agents) and their metrics
    bench.agent_client     the client of one agent's HTTP API
    bench.dispatch.*       how agents are deployed and reached (lab, kube)
    bench.lab.*            the lab: a cluster stand-in of network namespaces on this host
    bench.kube.*           everything that talks to the Kubernetes API or builds its objects
    bench.execute          runs the planned probes through a dispatcher's fleet
    bench.run              one run, start to finish (deploy, plan, execute, judge)
    bench.progress         live progress on stderr
    bench.report.*         table, run.json, junit.xml, Prometheus Pushgateway
    bench.cli              the only place that prints or exits
"""
