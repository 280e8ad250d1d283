"""The live-etcd probe's settings, declared once: the CLI builds the block from the command line
(``--etcd-endpoints``, ``--etcd-cacert/--etcd-cert/--etcd-key``, ``--allow-live-etcd-writes``,
``--etcd-profile``, ``--etcd-metrics-urls``) and the run's id, validates it with the driver's
``settings`` as a scenario's block is, and turns an error into a usage error (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import FilePath, Strict, StringConstraints, model_validator

from talbench.agents.params import Params, param
from talbench.agents.probes.etcd.generator import TlsFiles
from talbench.agents.probes.etcd.settings import PORT, LoadWindow, WriteFloor
from talbench.agents.wire import RUN_ID_PATTERN

MAX_URLS = 32
HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
ETCD_URL = rf"^https?://{HOST}:{PORT}$"  # a bare URL: scheme, host, port (no path, query or user)

EtcdUrl = Annotated[str, StringConstraints(pattern=ETCD_URL)]
ExistingFile = Annotated[FilePath, Strict(False)]  # a path given as text; it must name a file


def url_list(text: str | None) -> list[str]:
    """A comma-separated option as URLs: blanks dropped, trailing slashes removed, first
    occurrence kept."""
    items = (item.strip().rstrip("/") for item in (text or "").split(","))
    return list(dict.fromkeys(item for item in items if item))


class LiveEtcdSettings(LoadWindow, WriteFloor, Params):
    """The live etcd of a running cluster: where it is, how to authenticate, and whether (and
    how hard) talbench may write to it.  ``duration`` is the write load's, or the observation
    window of the metrics when read-only."""

    endpoints: tuple[EtcdUrl, ...] = param(
        sequence=True,
        min_length=1,
        max_length=MAX_URLS,
        help="--etcd-endpoints: the cluster's etcd client URLs (https://HOST:2379)",
    )
    run_id: str = param(pattern=RUN_ID_PATTERN, help="the run: writes go under /talbench/<run-id>/ only")
    cacert: ExistingFile | None = param(None, help="--etcd-cacert: the CA that signed etcd's server certificate")
    cert: ExistingFile | None = param(None, help="--etcd-cert: talbench's client certificate")
    key: ExistingFile | None = param(None, help="--etcd-key: the client certificate's key")
    allow_writes: bool = param(
        False, help="--allow-live-etcd-writes: write a load under /talbench/<run-id>/ (deleted after)"
    )
    profile: Literal["s", "m", "l", "xl"] | None = param(
        None, help="--etcd-profile: the write load's profile (default s)"
    )
    metrics_urls: tuple[EtcdUrl, ...] = param(
        (),
        sequence=True,
        max_length=MAX_URLS,
        help="--etcd-metrics-urls: etcd's metrics listeners (listen-metrics-urls, often :2381)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together (--etcd-cert, --etcd-key)")
        if (self.cacert or self.cert) and not all(url.startswith("https://") for url in self.endpoints):
            raise ValueError("cacert and cert need https:// endpoints (--etcd-cacert, --etcd-cert)")
        if self.profile is not None and not self.allow_writes:
            raise ValueError(
                "profile (--etcd-profile) writes to the live etcd: add --allow-live-etcd-writes to allow it"
            )
        return self

    @property
    def load_profile(self) -> str:
        return self.profile or "s"

    @property
    def prefix(self) -> str:
        return f"/talbench/{self.run_id}/"

    @property
    def tls(self) -> TlsFiles | None:
        if self.cacert or self.cert or self.key:
            return TlsFiles(_text(self.cacert), _text(self.cert), _text(self.key))
        return None


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
