"""What a run leaves behind and shows: files, the terminal table, metrics.

Modules and packages:
    table            the verdict table a person reads at the end of a run (rich)
    runjson/         run.json: the complete record of a run, written and read back
    junit            junit.xml: one testcase per verdict
    html/            report.html: one self-contained page per run
    dry_run          `talbench run --dry-run`: the plan before anything runs
    scenarios_text   what `talbench scenarios` prints for one scenario
    history          CronJob mode: each run compared with the previous one kept in the cluster
    metrics          a run's figures as Prometheus metrics
    pushgateway      push them to a Prometheus Pushgateway
    dashboard        the Grafana dashboard of those metrics (dashboards/talbench.json, package data)
    files            atomic file writes
"""
