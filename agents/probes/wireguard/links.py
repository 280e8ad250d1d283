"""WireGuard links for test tunnels: the kernel implementation when the kernel has it (Talos),
otherwise ``wireguard-go`` (userspace, one process per link), configured with ``wg`` and ``ip``.

wireguard-go's control sockets live in /var/run/wireguard/NAME.sock, shared by every network
namespace of the machine: link names must be unique per run and node (the caller's job).
Private keys never touch a disk: they go to ``wg`` on standard input.

Test links are named ``tb`` + 10 hex digits (agents/probes/wireguard/tunnel.py, link_name).  An agent killed
hard (SIGKILL, OOM) cannot release its kernel links: the next agent in the same network namespace
removes them, and their addresses with them, when it starts (``remove_leftover_links``): only
WireGuard or TUN (wireguard-go) links named that way, never another link.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import sh

from talbench.agents.probe import ProbeUnavailable
from talbench.agents.procs import is_running, kill_and_reap, set_parent_death_term

Implementation = Literal["auto", "kernel", "wireguard-go"]  # auto: the kernel's, else wireguard-go
IMPLEMENTATIONS: tuple[Implementation, ...] = get_args(Implementation)
KERNEL: Implementation = "kernel"
USERSPACE: Implementation = "wireguard-go"
SOCKET_DIR = Path("/var/run/wireguard")
COMMAND_TIMEOUT = 10.0
READY_TIMEOUT = 10.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_=+.-]{1,15}$")
LINK_PREFIX = "tb"
OUR_LINK = re.compile(rf"^{LINK_PREFIX}[0-9a-f]{{10}}$")  # the wireguard.tunnel job's link names
OUR_SOCKET = re.compile(rf"^{LINK_PREFIX}[0-9a-f]{{10}}\.sock$")  # wireguard-go's control sockets of them
OUR_KINDS = frozenset({"wireguard", "tun"})  # kernel WireGuard; wireguard-go's TUN device


class WireGuardError(RuntimeError):
    pass


def _tool(name: str, hint: str) -> sh.Command:
    path = shutil.which(name)
    if path is None:
        raise ProbeUnavailable(f"{name} not found: {hint}")
    return sh.Command(path)


def _wg() -> sh.Command:
    return _tool("wg", "apt-get install wireguard-tools")


def _ip() -> sh.Command:
    return _tool("ip", "apt-get install iproute2")


async def _run(command: sh.Command, *args: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    try:
        return str(await command(*args, _in=stdin, _async=True, _timeout=timeout))
    except sh.TimeoutException as exc:
        raise WireGuardError(f"{command} {' '.join(args[:3])}: no answer within {timeout:g}s") from exc
    except sh.ErrorReturnCode as exc:
        message = (exc.stderr or exc.stdout).decode(errors="replace").strip().splitlines()
        raise WireGuardError(
            f"{Path(str(command)).name} {' '.join(args[:4])}: {message[-1] if message else exc.exit_code}"
        ) from exc


def sweep_stale_sockets(socket_dir: Path = SOCKET_DIR) -> list[str]:
    """Remove control sockets of test links whose wireguard-go is gone (killed hard with its
    agent): a socket nobody listens on.  Only names of the test tunnels' form are touched."""
    removed: list[str] = []
    try:
        entries = list(socket_dir.iterdir())
    except OSError:
        return removed
    for path in entries:
        if not OUR_SOCKET.match(path.name):
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)
                removed.append(path.name)
            except OSError:
                continue
    return removed


async def generate_keypair() -> tuple[str, str]:
    """(private, public), base64 as ``wg`` prints them; kept in memory only."""
    wg = _wg()
    private = (await _run(wg, "genkey")).strip()
    public = (await _run(wg, "pubkey", stdin=private + "\n")).strip()
    return private, public


@dataclass
class WgLink:
    """One WireGuard link this agent created (mutable only in ``process`` being reaped)."""

    name: str
    implementation: Implementation
    process: Any = None  # sh.RunningCommand of wireguard-go, None for the kernel link


async def link_exists(name: str) -> bool:
    try:
        await _run(_ip(), "link", "show", "dev", name)
        return True
    except WireGuardError:
        return False


async def _create_kernel(name: str) -> WgLink:
    await _run(_ip(), "link", "add", "dev", name, "type", "wireguard")
    return WgLink(name, KERNEL)


async def _create_userspace(name: str) -> WgLink:
    binary = _tool(USERSPACE, "apt-get install wireguard-go")
    sweep_stale_sockets()
    control = SOCKET_DIR / f"{name}.sock"
    if control.exists():
        raise WireGuardError(f"{control} exists already: another wireguard-go uses the name {name}")
    proc = binary(
        "-f",
        name,
        _async=True,
        _return_cmd=True,
        _bg_exc=False,
        _preexec_fn=set_parent_death_term,
        _env={**os.environ, "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"},
    )
    link = WgLink(name, USERSPACE, proc)
    give_up = time.monotonic() + READY_TIMEOUT
    try:
        while not (control.exists() and await link_exists(name)):
            if not is_running(proc):
                raise WireGuardError(f"wireguard-go {name} exited at start: {_output(proc)}")
            if time.monotonic() >= give_up:
                raise WireGuardError(f"wireguard-go {name} not ready within {READY_TIMEOUT:g}s")
            await asyncio.sleep(0.05)
    except BaseException:
        await delete(link)
        raise
    return link


def _output(proc: Any) -> str:
    try:
        return (proc.stderr or proc.stdout or b"").decode(errors="replace").strip()[:200]
    except Exception:  # any failure: this only builds a message
        return "no output"


async def create(name: str, implementation: Implementation = "auto") -> WgLink:
    """Create the link ``name``: the kernel's WireGuard, or wireguard-go when the kernel has none
    (``auto``).  Raises ProbeUnavailable when neither can be used."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"bad link name {name!r}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}")
    if await link_exists(name):
        raise WireGuardError(f"a link named {name} exists already")
    kernel_error: str | None = None
    if implementation in ("auto", KERNEL):
        try:
            return await _create_kernel(name)
        except WireGuardError as exc:
            kernel_error = str(exc)
            if implementation == KERNEL:
                raise ProbeUnavailable(
                    f"kernel WireGuard unavailable ({exc}); needs the wireguard module and NET_ADMIN"
                ) from exc
    try:
        return await _create_userspace(name)
    except ProbeUnavailable as exc:
        raise ProbeUnavailable(f"{exc}" + (f" (kernel WireGuard: {kernel_error})" if kernel_error else "")) from exc


async def configure(
    link: WgLink, *, private_key: str, listen_port: int, address: str, fwmark: int | None, mtu: int
) -> None:
    """Key, port, optional fwmark, the tunnel address (CIDR), MTU, up."""
    args = ["set", link.name, "private-key", "/dev/stdin", "listen-port", str(listen_port)]
    if fwmark:
        args += ["fwmark", hex(fwmark)]
    await _run(_wg(), *args, stdin=private_key + "\n")
    ip = _ip()
    await _run(ip, "address", "add", address, "dev", link.name)
    await _run(ip, "link", "set", "dev", link.name, "mtu", str(mtu), "up")


async def add_peer(name: str, *, public_key: str, endpoint: str, allowed_ips: str, keepalive: int = 0) -> None:
    """Give the link ``name`` its peer: the other side's public key, endpoint and tunnel address."""
    args = ["set", name, "peer", public_key, "endpoint", endpoint, "allowed-ips", allowed_ips]
    if keepalive:
        args += ["persistent-keepalive", str(keepalive)]
    await _run(_wg(), *args)


async def peer_stats(name: str) -> dict[str, dict[str, Any]]:
    """Per peer (public key): latest handshake (unix s, 0 = none), bytes received and sent."""
    out = await _run(_wg(), "show", name, "dump")
    peers: dict[str, dict[str, Any]] = {}
    for line in out.strip().splitlines()[1:]:  # the first line is the interface itself
        fields = line.split("\t")
        if len(fields) >= 7:
            peers[fields[0]] = {
                "endpoint": fields[2],
                "latest_handshake": int(fields[4]),
                "rx_bytes": int(fields[5]),
                "tx_bytes": int(fields[6]),
            }
    return peers


async def delete(link: WgLink) -> None:
    """Remove the link and, for wireguard-go, stop and reap its process and its socket.
    Idempotent; bounded."""
    if await link_exists(link.name):
        try:
            await _run(_ip(), "link", "del", "dev", link.name)
        except WireGuardError:
            if link.process is None:
                raise
    if link.process is not None:
        await kill_and_reap(link.process)
        control = SOCKET_DIR / f"{link.name}.sock"
        if control.exists():  # left by a wireguard-go that had to be killed; the name is ours
            control.unlink(missing_ok=True)


# ---- links an earlier agent left ---------------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    """A test link found in the namespace: name, kind and its addresses (CIDR)."""

    name: str
    kind: str
    addresses: tuple[str, ...]


def leftovers_in(links: list[dict[str, Any]]) -> list[Leftover]:
    """The test links among ``ip -details -json address show``'s entries: named as the tunnel job
    names them and of a WireGuard kind; any other link is not ours, whatever its name."""
    found = []
    for link in links:
        name = str(link.get("ifname") or "")
        kind = str((link.get("linkinfo") or {}).get("info_kind") or "")
        if OUR_LINK.match(name) and kind in OUR_KINDS:
            addresses = tuple(
                f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or () if a.get("local")
            )
            found.append(Leftover(name, kind, addresses))
    return found


async def find_leftover_links() -> list[Leftover]:
    out = await _run(_ip(), "-details", "-json", "address", "show")
    try:
        links = json.loads(out or "[]")
    except ValueError as exc:
        raise WireGuardError(f"ip -json address show: not JSON ({exc})") from exc
    return leftovers_in(links if isinstance(links, list) else [])


async def remove_leftover_links() -> tuple[list[Leftover], list[str]]:
    """Delete the test links of this network namespace (their addresses and routes go with them)
    and the stale control sockets of wireguard-go.  Only for an agent that knows no other agent
    shares its namespace (agents/main.py): a live agent's links look the same.  Returns what was
    removed and, one line each, what could not be."""
    removed: list[Leftover] = []
    failed: list[str] = []
    for leftover in await find_leftover_links():
        try:
            await _run(_ip(), "link", "del", "dev", leftover.name)
        except WireGuardError as exc:
            if await link_exists(leftover.name):
                failed.append(str(exc))
                continue
        removed.append(leftover)
    sweep_stale_sockets()
    return removed, failed
