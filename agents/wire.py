"""The agent's HTTP API, version 1.  Shared by the agent and by the coordinator's client.

    GET    /v1/health          no auth     {"schema", "status": "ok", "node", "version", "api"}
    GET    /v1/facts           bearer      {"schema", "node", "facts": {...}}
    POST   /v1/jobs            bearer      body {"schema", "run_id", "probe", "params"}
                                           -> 202 {"schema", "job": JOB}
    GET    /v1/jobs/{id}       bearer      -> {"schema", "job": JOB}
    DELETE /v1/jobs/{id}       bearer      cancels; -> {"schema", "job": JOB}
    DELETE /v1/runs/{run_id}   bearer      cancels the run's jobs and releases what its probes
                                           left running (CleanupRegistry); -> {"schema", "released": [names]}

    JOB = {"id", "probe", "run_id", "state": "running"|"done"|"failed"|"cancelled",
           "started", "ended", "time_limit", "result": {...}|null, "error": str|null,
           "resources": {"cpu_process_percent", "cpu_system_percent", ...,
                         "cpu_periods", "cpu_throttled_periods", "cpu_throttled_s",
                         "cpu_quota_cores"}}   (the agent's cgroup over the job; absent when
                                                no cpu cgroup is readable)

Errors are {"schema", "error": "one line"} with 400 (bad body or params), 401 (token), 404, 405,
408 (body too slow), 409 (too many jobs), 413 (body over 4 MiB), 415 (a Content-Encoding).
The RTT echo responder listens on UDP at the same port number as the HTTP API.
"""

from __future__ import annotations

import re

API = "v1"
SCHEMA_VERSION = 1
PREFIX = "/v1"
TOKEN_HEADER = "Authorization"  # "Bearer <token>"
TOKEN_HEADER_ALT = "X-Talbench-Token"  # the same token; survives proxies that consume Authorization

JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_FINAL_STATES = frozenset({JOB_DONE, JOB_FAILED, JOB_CANCELLED})
# GET /v1/jobs/{id}?wait=SECONDS answers when the job has ended or after at most that long (a
# long poll: a coordinator asks a few times per job, not four times a second per agent)
MAX_JOB_WAIT = 30.0

# error_kind values: "unavailable" means the probe cannot run on this node at all (missing tool,
# no permission: ProbeUnavailable); the coordinator turns it into exit 3 with the agent's hint.
ERROR_PARAMS = "params"
ERROR_UNAVAILABLE = "unavailable"
ERROR_TIMEOUT = "timeout"
ERROR_FAILED = "failed"
ERROR_CANCELLED = "cancelled"

# Default agent port: clashes with nothing Talos uses (2379-2383, 2380, 6443, 7445, 10250,
# 50000-50001, 51820, 4789, 8472).
DEFAULT_PORT = 8946

# A run id names the run's Kubernetes namespace (``talbench-<run-id>``: a DNS label of at most 63
# characters) and stands in label values, directory names and etcd key prefixes: 1 to 54
# lowercase letters, digits and '-', starting and ending with a letter or digit
# (bench.run.new_run_id makes ``20261121-153000-a1b2``).
RUN_ID_MAX = 54
RUN_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,52}[a-z0-9])?$"


def valid_run_id(value: object) -> bool:
    """Whether ``value`` is a run id (see RUN_ID_PATTERN)."""
    return isinstance(value, str) and re.fullmatch(RUN_ID_PATTERN, value) is not None
