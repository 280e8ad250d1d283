"""talbench coordinator: scenarios, planning, dispatch, judging, reports and the CLI.

Layers (one direction; tests/test_import_contract.py enforces it):
    talbench.agents   probes and the agent process; imports nothing from talbench.bench
    bench.units, bench.model, bench.scenario   plain records and parsing
    bench.stats, bench.probes.*.metrics        pure summaries of raw samples
    bench.judge                                pure: results + thresholds -> verdicts
    bench.dispatch.*                           how agents are reached (local, lab, kube)
    bench.execute                              runs the planned probes through a dispatcher
    bench.report.*                             table, run.json, junit.xml
    bench.cli                                  the only place that prints or exits
"""
