"""``python -m talbench.agents`` as a real child process."""

from __future__ import annotations

import asyncio
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from talbench.agents.main import main
from talbench.bench.agent_tls import make_agent_tls
from tests.agents.helpers import TOKEN, free_port, health_over_unix


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "talbench.agents", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode, err


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    return path


@pytest.mark.processes
async def test_agent_process_serves_unix_socket_and_stops_cleanly_on_sigterm(tmp_path, token_file):
    sock = tmp_path / "agent.sock"
    data = tmp_path / "data"
    port = free_port()
    proc = spawn(
        "--listen",
        f"127.0.0.1:{port}",
        "--token-file",
        str(token_file),
        "--node",
        "cp9",
        "--unix",
        str(sock),
        "--data-dir",
        str(data),
    )
    try:
        health = await health_over_unix(sock)
        assert health["node"] == "cp9" and health["status"] == "ok"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert data.is_dir()
        # the TCP API answers too and wants the (stripped) token
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/facts"
            async with session.get(url, headers={"X-Talbench-Token": TOKEN}) as response:
                assert response.status == 200
            async with session.get(url) as response:
                assert response.status == 401
            # a long RTT job is running when SIGTERM comes: it is cancelled, the exit is prompt
            job = {
                "schema": 1,
                "run_id": "r1",
                "probe": "rtt",
                "params": {
                    "peers": [{"name": "self", "host": "127.0.0.1", "port": port}],
                    "count": 10000,
                    "interval": 0.01,
                },
            }
            async with session.post(
                f"http://127.0.0.1:{port}/v1/jobs", json=job, headers={"X-Talbench-Token": TOKEN}
            ) as response:
                assert response.status == 202
        await asyncio.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0, err
    assert time.monotonic() - started < 5
    assert not sock.exists()
    assert "Traceback" not in err


@pytest.mark.processes
async def test_second_agent_on_the_same_port_or_socket_exits_3(tmp_path, token_file):
    sock = tmp_path / "a.sock"
    port = free_port()
    first = spawn("--listen", f"127.0.0.1:{port}", "--token-file", str(token_file), "--unix", str(sock))
    try:
        await health_over_unix(sock)
        code, err = finish(spawn("--listen", f"127.0.0.1:{port}", "--token-file", str(token_file)))
        assert code == 3 and len(err.strip().splitlines()) == 1 and str(port) in err, err
        code, err = finish(
            spawn("--listen", f"127.0.0.1:{free_port()}", "--token-file", str(token_file), "--unix", str(sock))
        )
        assert code == 3 and len(err.strip().splitlines()) == 1 and "a.sock" in err, err
        assert sock.exists()  # the live agent's socket was left alone
        first.send_signal(signal.SIGINT)
        code, err = finish(first)
        assert code == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)


@pytest.mark.parametrize(
    "args,needle",
    [
        ([], "required"),
        (["--token-file", "TOKEN"], "--listen"),
        (["--listen", "127.0.0.1:8946", "--listen-address", "127.0.0.1", "--token-file", "TOKEN"], "not allowed with"),
        (["--listen", "127.0.0.1:8946", "--listen-port", "80", "--token-file", "TOKEN"], "goes with --listen-address"),
        (["--listen-address", "127.0.0.1", "--listen-port", "0", "--token-file", "TOKEN"], "port"),
        (["--listen-address", "fd00::zz", "--token-file", "TOKEN"], "IPv6"),
        (["--listen", "127.0.0.1:8946"], "--token-file"),
        (["--listen", "127.0.0.1", "--token-file", "TOKEN"], "ADDR:PORT"),
        (["--listen", "127.0.0.1:99999", "--token-file", "TOKEN"], "port"),
        (["--listen", "::1:8946", "--token-file", "TOKEN"], "IPv6"),
        (["--listen", "[nope]:8946", "--token-file", "TOKEN"], "IPv6"),
        (["--listen", "127.0.0.1:8946", "--token-file", "EMPTY"], "empty"),
        (["--listen", "127.0.0.1:8946", "--token-file", "MISSING"], "MISSING"),
        (
            ["--listen", "127.0.0.1:8946", "--token-file", "TOKEN", "--unix", "/nonexistent-dir/x.sock"],
            "nonexistent-dir",
        ),
        (["--listen", "127.0.0.1:8946", "--token-file", "TOKEN", "--log-level", "loud"], "log-level"),
        (["--listen", "127.0.0.1:8946", "--token-file", "TOKEN", "--bogus"], "bogus"),
        (["--listen", "127.0.0.1:8946", "--token-file", "TOKEN", "--tls-cert-file", "CERT"], "go together"),
        (
            [
                "--listen",
                "127.0.0.1:8946",
                "--token-file",
                "TOKEN",
                "--tls-cert-file",
                "MISSING",
                "--tls-key-file",
                "KEY",
            ],
            "MISSING",
        ),
        (
            [
                "--listen",
                "127.0.0.1:8946",
                "--token-file",
                "TOKEN",
                "--tls-cert-file",
                "CERT",
                "--tls-key-file",
                "OTHER",
            ],
            "not a PEM certificate and its key",
        ),
        (
            [
                "--listen",
                "127.0.0.1:8946",
                "--token-file",
                "TOKEN",
                "--tls-cert-file",
                "TOKEN",
                "--tls-key-file",
                "KEY",
            ],
            "not a PEM certificate and its key",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, token_file, capsys, args, needle):
    (tmp_path / "EMPTY").write_text(" \n")
    tls, other = make_agent_tls("a-run"), make_agent_tls("another-run")
    for name, data in (("CERT", tls.cert), ("KEY", tls.key), ("OTHER", other.key)):
        (tmp_path / name).write_bytes(data)
    files = {"TOKEN": str(token_file), "EMPTY": str(tmp_path / "EMPTY"), "MISSING": str(tmp_path / "MISSING")}
    files |= {name: str(tmp_path / name) for name in ("CERT", "KEY", "OTHER")}
    argv = [files.get(a, a) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize(
    "address,port,expected",
    [
        ("fd00::10", "8946", ("fd00::10", 8946)),
        ("10.5.0.2", "9000", ("10.5.0.2", 9000)),
        ("10.5.0.2", None, ("10.5.0.2", 8946)),
    ],
)
def test_a_daemonset_passes_the_node_address_unbracketed(token_file, address, port, expected):
    """status.hostIP of an IPv6 node is a bare address: --listen-address takes it as is."""
    from talbench.agents.main import parse_args

    argv = ["--listen-address", address, "--token-file", str(token_file)] + (["--listen-port", port] if port else [])
    options = parse_args(argv)
    assert (options.host, options.port) == expected


@pytest.mark.processes
def test_bad_arguments_exit_2_as_a_process(tmp_path):
    code, err = finish(spawn("--listen", "127.0.0.1:8946", "--token-file", str(tmp_path / "none")))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
