"""``talbench agent`` / ``python -m talbench.agents``: run the agent until SIGTERM or SIGINT.

Exit codes: 0 after a clean stop, 2 for bad arguments (one line on stderr), 3 when the agent
cannot serve (address or port in use, socket path taken).

Before it serves, an agent that is alone in its network namespace removes the WireGuard test links
an earlier agent killed hard left there (agents/probes/wireguard/links.py): a Talos node has no shell to do it.
Alone means holding NETNS_LOCK, an abstract unix socket: those belong to the network namespace,
and the kernel frees the name when its holder dies, however it dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import resource
import shutil
import signal
import socket
import ssl
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from talbench.agents import wire
from talbench.agents.app import AgentConfig, make_app
from talbench.agents.probe import ProbeUnavailable
from talbench.agents.probes.registry import default_probes
from talbench.agents.probes.wireguard import links as wireguard

log = logging.getLogger("talbench.agents")

# jobs cancelled, cleanups released (30 s each at most), sockets closed; the DaemonSet's grace
# period (bench/kube/manifests.py GRACE_PERIOD_S) is derived from it
SHUTDOWN_TIMEOUT = 45.0
NETNS_LOCK = b"\0talbench-agent"  # abstract unix socket name: one agent per network namespace holds it
LEFTOVER_TIMEOUT = 30.0
UNIX_PATH_MAX = 107


class ArgumentError(Exception):
    """Bad command line (exit 2)."""


class CannotServe(Exception):
    """The agent cannot listen (exit 3)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(message)


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    token: str
    node: str
    data_dir: Path
    own_data_dir: bool  # created by us: removed on exit
    unix: Path | None
    log_level: str
    tls: ssl.SSLContext | None = None  # the TCP API over HTTPS (the unix socket stays plain)


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` with an IPv4 address or hostname, or ``[IPv6]:PORT``."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ArgumentError(f"--listen {value!r}: write an IPv6 address as [ADDR]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ArgumentError(f"--listen {value!r}: {host!r} is not an IPv6 address") from exc
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise ArgumentError(f"--listen {value!r}: expected ADDR:PORT or [IPv6]:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ArgumentError(f"--listen {value!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _listen_of(listen: str | None, address: str | None, port: str | None) -> tuple[str, int]:
    """``--listen ADDR:PORT``, or ``--listen-address ADDR [--listen-port PORT]`` (argparse has
    made sure exactly one of --listen and --listen-address is given)."""
    if listen is not None:
        if port is not None:
            raise ArgumentError("--listen-port goes with --listen-address, not with --listen ADDR:PORT")
        return parse_listen(listen)
    assert address is not None
    host = f"[{address}]" if ":" in address else address
    return parse_listen(f"{host}:{port or wire.DEFAULT_PORT}")


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"--token-file {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from exc
    if not token:
        raise ArgumentError(f"--token-file {path}: the file is empty")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise ArgumentError(f"--token-file {path}: the token must be one word of printable characters")
    return token


def parse_args(argv: list[str]) -> Options:
    parser = _Parser(prog="talbench agent", description="Run the talbench probe agent.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        help=f"HTTP API and UDP echo address, [IPv6]:PORT for IPv6 (default port {wire.DEFAULT_PORT})",
    )
    where.add_argument(
        "--listen-address",
        metavar="ADDR",
        help="the same as an address alone (IPv4, IPv6 or hostname), with --listen-port: "
        "what a DaemonSet passes from status.hostIP, which carries no brackets",
    )
    parser.add_argument("--listen-port", metavar="PORT", help=f"with --listen-address (default {wire.DEFAULT_PORT})")
    parser.add_argument("--token-file", required=True, metavar="FILE", help="file holding the bearer token")
    parser.add_argument("--node", default=None, help="node name (default: the hostname)")
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR", help="scratch directory (default: a new temporary one)"
    )
    parser.add_argument(
        "--unix", default=None, metavar="PATH", help="also serve the HTTP API on this unix socket (mode 0600)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--tls-cert-file",
        metavar="FILE",
        help="serve the TCP API over HTTPS with this certificate (PEM; with --tls-key-file)",
    )
    parser.add_argument("--tls-key-file", metavar="FILE", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    tls = server_tls(args.tls_cert_file, args.tls_key_file)
    host, port = _listen_of(args.listen, args.listen_address, args.listen_port)
    token = read_token(args.token_file)
    node = args.node if args.node is not None else socket.gethostname()
    if not node or not node.isprintable() or len(node) > 253:
        raise ArgumentError(f"--node {node!r}: must be a printable name of 1 to 253 characters")
    unix = Path(args.unix) if args.unix else None
    if unix is not None:
        if len(os.fsencode(str(unix))) > UNIX_PATH_MAX:
            raise ArgumentError(f"--unix {unix}: longer than {UNIX_PATH_MAX} bytes")
        if not unix.parent.is_dir():
            raise ArgumentError(f"--unix {unix}: directory {unix.parent} does not exist")
    if args.data_dir is None:
        return Options(
            host, port, token, node, Path(tempfile.mkdtemp(prefix="talbench-agent-")), True, unix, args.log_level, tls
        )
    data_dir = Path(args.data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArgumentError(f"--data-dir {data_dir}: {exc.strerror}") from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ArgumentError(f"--data-dir {data_dir}: not writable")
    return Options(host, port, token, node, data_dir.resolve(), False, unix, args.log_level, tls)


def server_tls(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """The API's TLS context from ``--tls-cert-file`` and ``--tls-key-file`` (both or neither)."""
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        raise ArgumentError("--tls-cert-file and --tls-key-file go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:  # an OSError too: first
        raise ArgumentError(
            f"--tls-cert-file {cert_file} / --tls-key-file {key_file}: not a PEM certificate and its key "
            f"({exc.reason or exc.strerror})"
        ) from exc
    except OSError as exc:
        raise ArgumentError(f"--tls-cert-file {cert_file} / --tls-key-file {key_file}: {exc.strerror or exc}") from exc
    return context


# ---- serving --------------------------------------------------------------------------------


def _bind_unix(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` created with mode 0600; a stale socket file (nobody
    answering) is replaced, a live one is refused."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise CannotServe(f"--unix {path}: exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale
        else:
            raise CannotServe(f"--unix {path}: another process is serving on it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise CannotServe(f"--unix {path}: {exc.strerror}") from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def claim_netns(name: bytes = NETNS_LOCK) -> socket.socket | None:
    """Bind the abstract unix socket ``name`` and keep it: None when another process of this
    network namespace holds it (another agent is alive here)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            log.warning("cannot bind the agent's namespace lock: %s", exc.strerror)
        return None
    return sock


async def remove_leftovers() -> None:
    """Remove the test links an earlier agent left in this namespace; never stops the agent."""
    try:
        removed, failed = await asyncio.wait_for(wireguard.remove_leftover_links(), LEFTOVER_TIMEOUT)
    except ProbeUnavailable as exc:
        log.info("leftover test links not looked for: %s", exc)
        return
    except (wireguard.WireGuardError, TimeoutError) as exc:
        log.warning("leftover test links not removed: %s", exc or f"took more than {LEFTOVER_TIMEOUT:g}s")
        return
    for link in removed:
        log.warning(
            "removed test link %s (%s%s) an earlier agent left",
            link.name,
            link.kind,
            f", {', '.join(link.addresses)}" if link.addresses else "",
        )
    for line in failed:
        log.error("cannot remove a leftover test link: %s", line)


def _raise_fd_limit() -> None:
    """RTT keeps one socket per peer (up to 1000): lift the soft open-files limit if allowed."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def serve(options: Options) -> None:
    config = AgentConfig(
        node=options.node,
        token=options.token,
        data_dir=options.data_dir,
        listen_host=options.host,
        listen_port=options.port,
    )
    app = make_app(config, default_probes())
    runner = web.AppRunner(
        app, access_log=log if options.log_level == "debug" else None, shutdown_timeout=2.0, handle_signals=False
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    unix_sock: socket.socket | None = None
    unix_inode: int | None = None
    netns_lock: socket.socket | None = None
    try:
        if options.unix is not None:  # first: refusing a taken socket path logs nothing before
            unix_sock = _bind_unix(options.unix)
            unix_inode = options.unix.stat().st_ino
        try:
            await runner.setup()  # binds the UDP echo responder
        except OSError as exc:
            raise CannotServe(f"UDP {options.host}:{options.port}: {exc.strerror or exc}") from exc
        netns_lock = claim_netns()
        if netns_lock is not None:  # before the API serves: no job of this agent has made a link yet
            await remove_leftovers()
        else:
            log.info("another talbench agent runs in this network namespace: its test links are left alone")
        try:
            await web.TCPSite(runner, options.host, options.port, reuse_address=True, ssl_context=options.tls).start()
        except OSError as exc:
            raise CannotServe(f"TCP {options.host}:{options.port}: {exc.strerror or exc}") from exc
        if unix_sock is not None:
            await web.SockSite(runner, unix_sock).start()
        log.info(
            "agent %s serving %s on %s:%d%s (data %s)",
            options.node,
            "HTTPS" if options.tls else "HTTP",
            options.host,
            options.port,
            f" and {options.unix}" if options.unix else "",
            options.data_dir,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        try:
            await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            log.error("shutdown took more than %gs; exiting anyway", SHUTDOWN_TIMEOUT)
        finally:
            if netns_lock is not None:
                netns_lock.close()
            if unix_sock is not None:
                unix_sock.close()
            if options.unix is not None and unix_inode is not None:
                with contextlib.suppress(OSError):
                    if options.unix.stat().st_ino == unix_inode:
                        options.unix.unlink()


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(sys.argv[1:] if argv is None else list(argv))
    except ArgumentError as exc:
        print(f"talbench agent: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    logging.basicConfig(
        level=getattr(logging, options.log_level.upper()),
        stream=sys.stderr,
        format=f"%(asctime)s {options.node} %(levelname)s %(name)s: %(message)s",
    )
    _raise_fd_limit()
    try:
        asyncio.run(serve(options))
    except CannotServe as exc:
        print(f"talbench agent: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    finally:
        if options.own_data_dir:
            shutil.rmtree(options.data_dir, ignore_errors=True)
    return 0
