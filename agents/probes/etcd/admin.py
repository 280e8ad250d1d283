"""etcd administration over the JSON gateway with etcd3gw: member status, member list, and the
run prefix (is it empty, delete it).  etcd3gw is synchronous (requests): every call here is
bounded by ``timeout`` and meant to run in a thread (``asyncio.to_thread``).

Nothing here compacts, defragments or writes outside the prefix it is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
from etcd3gw import exceptions as gw_errors
from etcd3gw.utils import _encode, _increment_last_byte

from talbench.agents.probes.etcd.generator import TlsFiles

GatewayError = gw_errors.Etcd3Exception


class EtcdUnreachable(RuntimeError):
    """No endpoint answered (or none with a leader) within the time allowed."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int
    protocol: str


def parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ValueError(f"etcd endpoint {url!r} must look like http(s)://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"etcd endpoint {url!r} must be a bare URL (no path, query or user)")
    return Endpoint(url.rstrip("/"), parts.hostname, parts.port, parts.scheme)


def client(url: str, tls: TlsFiles | None = None, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
    endpoint = parse_endpoint(url)
    gateway = etcd3gw.Etcd3Client(
        host=endpoint.host,
        port=endpoint.port,
        protocol=endpoint.protocol,
        ca_cert=tls.cacert if tls else None,
        cert_key=tls.key if tls else None,
        cert_cert=tls.cert if tls else None,
        timeout=timeout,
        api_path="/v3/",
    )
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's CA file, and would
    # send etcd traffic through an HTTP(S)_PROXY: the etcd session ignores the environment.
    gateway.session.trust_env = False
    return gateway


def _uint(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def status(url: str, tls: TlsFiles | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """One endpoint's view: member id, leader id, raft term and index, db size, version.
    ``ok`` False with ``error`` when it did not answer."""
    gateway = client(url, tls, timeout)
    try:
        answer = gateway.status()
    except (GatewayError, OSError, ValueError) as exc:
        return {"endpoint": url, "ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    finally:
        gateway.session.close()
    header = answer.get("header") or {}
    return {
        "endpoint": url,
        "ok": True,
        "member_id": str(header.get("member_id", "")),
        "cluster_id": str(header.get("cluster_id", "")),
        "leader": str(answer.get("leader", "0")),
        "raft_term": _uint(answer.get("raftTerm", header.get("raft_term"))),
        "raft_index": _uint(answer.get("raftIndex")),
        "db_size": _uint(answer.get("dbSize")),
        "version": str(answer.get("version", "")),
    }


def members(url: str, tls: TlsFiles | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
    gateway = client(url, tls, timeout)
    try:
        listed = gateway.members()
    finally:
        gateway.session.close()
    return [
        {
            "id": str(member.get("ID", "")),
            "name": str(member.get("name", "")),
            "peer_urls": list(member.get("peerURLs") or []),
            "client_urls": list(member.get("clientURLs") or []),
            "learner": bool(member.get("isLearner", False)),
        }
        for member in listed
    ]


def wait_for_leader(urls: list[str], tls: TlsFiles | None, deadline_s: float) -> list[dict[str, Any]]:
    """Until every endpoint answers and all agree on one leader; bounded by ``deadline_s``."""
    give_up = time.monotonic() + deadline_s
    last: list[dict[str, Any]] = []
    while True:
        last = [status(url, tls, timeout=min(5.0, max(0.5, give_up - time.monotonic()))) for url in urls]
        leaders = {entry.get("leader") for entry in last if entry["ok"]}
        if all(entry["ok"] for entry in last) and len(leaders) == 1 and "0" not in leaders:
            return last
        if time.monotonic() >= give_up:
            problems = [f"{e['endpoint']}: {e['error']}" for e in last if not e["ok"]] or [
                f"leaders seen: {sorted(str(leader) for leader in leaders)}"
            ]
            raise EtcdUnreachable(f"no healthy etcd leader within {deadline_s:g}s ({'; '.join(problems)})")
        time.sleep(0.25)


def prefix_count(url: str, prefix: str, tls: TlsFiles | None = None, timeout: float = 10.0) -> int:
    """How many keys start with ``prefix`` (a count-only range: reads no values)."""
    gateway = client(url, tls, timeout)
    try:
        answer = gateway.post(
            gateway.get_url("/kv/range"),
            json={"key": _encode(prefix), "range_end": _encode(_increment_last_byte(prefix)), "count_only": True},
        )
    finally:
        gateway.session.close()
    return _uint(answer.get("count"))


def delete_prefix(url: str, prefix: str, tls: TlsFiles | None = None, timeout: float = 30.0) -> int:
    """Delete every key under ``prefix``; returns how many were deleted."""
    if not prefix or not prefix.endswith("/") or prefix == "/":
        raise ValueError(f"refusing to delete the prefix {prefix!r}: it must be a non-root path ending in '/'")
    gateway = client(url, tls, timeout)
    try:
        answer = gateway.post(
            gateway.get_url("/kv/deleterange"),
            json={"key": _encode(prefix), "range_end": _encode(_increment_last_byte(prefix))},
        )
    finally:
        gateway.session.close()
    return _uint(answer.get("deleted"))


def delete_prefix_until_empty(
    urls: list[str], prefix: str, tls: TlsFiles | None, deadline_s: float = 30.0
) -> dict[str, Any]:
    """Delete the prefix, then make sure it stays empty (a write still in flight when the load
    stopped may land after the first delete); bounded by ``deadline_s``.  Tries every endpoint."""
    give_up = time.monotonic() + deadline_s
    deleted = 0
    rounds = 0
    errors: list[str] = []
    while time.monotonic() < give_up:
        for url in urls:
            try:
                deleted += delete_prefix(url, prefix, tls, timeout=max(1.0, min(15.0, give_up - time.monotonic())))
                rounds += 1
                time.sleep(0.3)
                remaining = prefix_count(url, prefix, tls, timeout=max(1.0, min(10.0, give_up - time.monotonic())))
            except (GatewayError, OSError, ValueError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}".splitlines()[0][:200])
                continue
            if remaining == 0:
                return {"deleted": deleted, "remaining": 0, "rounds": rounds, "errors": errors[-3:]}
            break
        else:
            time.sleep(0.5)
    return {"deleted": deleted, "remaining": None, "rounds": rounds, "errors": errors[-3:]}
