"""The Grafana dashboard for the metrics a run pushes (bench/report/metrics.py), shipped as package
data (``dashboards/talbench.json``): ``talbench manifests --dashboard`` prints it for Grafana's
import, and ``talbench manifests --cronjob --pushgateway URL`` wraps it in a ConfigMap labelled
``grafana_dashboard: "1"`` for Grafana's dashboard sidecar (kube-prometheus-stack, the Grafana
Helm chart).  Its queries select on the grouping key's labels (cluster, scenario) and a check."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

DASHBOARD_FILE = "talbench.json"
SIDECAR_LABEL = "grafana_dashboard"  # the Grafana sidecar's default label for dashboard ConfigMaps


def dashboard_text() -> str:
    """The dashboard as shipped (JSON, for Grafana's "Import dashboard")."""
    return resources.files("talbench.bench.report").joinpath("dashboards", DASHBOARD_FILE).read_text("utf-8")


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(dashboard_text())
    return document
