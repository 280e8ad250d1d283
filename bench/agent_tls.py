"""Each run's agent TLS: a CA of its own, made when the run starts, and one serving certificate.

The agents serve their API over HTTPS with the certificate (handed to them with the run's token,
in the run's Secret); the coordinator trusts that CA alone, for that run alone, and checks the
name ``SERVER_NAME`` whatever address it dials (the certificate is one for every agent of the
run, so it names no node).  The CA's private key is never written anywhere: once the serving
certificate is signed nothing else can be, and the CA ends with the run.

Through the API server's pod proxy (``pods/https:NAME:PORT/proxy``) the API server carries the
traffic encrypted to the agent but does not check the agent's certificate (Kubernetes' proxy
never does); the coordinator's own hop is the API server's TLS.  Inside the cluster (CronJob mode)
the coordinator dials the agents directly and checks them against the run's CA.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass

from talbench.bench import pki

SERVER_NAME = "talbench-agent.invalid"  # in every run's agent certificate; .invalid never resolves
VALIDITY = datetime.timedelta(days=7)  # longer than any run (a run's deadline is renewed while it lasts)


@dataclass(frozen=True)
class AgentTls:
    """What a run's agents serve with, and what the coordinator checks them against."""

    ca_cert: bytes  # PEM: the run's CA (public)
    cert: bytes  # PEM: the agents' serving certificate, naming SERVER_NAME
    key: bytes  # PEM: its private key (a secret, like the run's token)
    server_name: str = SERVER_NAME

    def __repr__(self) -> str:  # never print the key
        return f"AgentTls(server_name={self.server_name!r})"


def make_agent_tls(run_id: str, *, now: datetime.datetime | None = None) -> AgentTls:
    """A fresh CA for run ``run_id`` and the agents' serving certificate; the CA key is dropped."""
    authority = pki.Authority.new("talbench", f"talbench-run-{run_id}-agents-ca", VALIDITY, now=now)
    serving = authority.issue(SERVER_NAME, server=True, names=(SERVER_NAME,))
    return AgentTls(authority.cert_pem(), serving.cert, serving.key)


def client_context(tls: AgentTls) -> ssl.SSLContext:
    """The coordinator's TLS context for the run's agents: the run's CA only, the name checked."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=tls.ca_cert.decode("ascii"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
