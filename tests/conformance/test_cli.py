"""``awsnetemu conformance`` on loopback (no root): bad arguments exit 2 with one line naming the problem (a
bad key, address or profile; a device that does not share the pre-shared key; nothing listening)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PSK = "loop.psk.0123456"


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def conformance(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "emulator", "conformance", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


@contextmanager
def our_cgw(me: str, aws: str, psk: str = PSK, version: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """``awsnetemu vpn --role cgw`` as the device (it initiates, runs DPD, restarts on timeout); yields once its
    sockets are bound (its ``listening`` event)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [
        sys.executable, "-m", "emulator", "vpn", "--role", "cgw", "--local", me, "--remote", aws, "--psk", psk,
        "--ike-version", str(version), "--dpd-timeout-action", "restart", "--retransmit-timeout", "0.5",
        "--events", "-",
    ]  # fmt: skip
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()  # the driver's listening event comes first, once the sockets are bound
        assert b'"listening"' in first, first
        yield p
    finally:
        p.terminate()
        p.wait(10)
        if p.stdout is not None:
            p.stdout.close()


def test_unknown_profile_key_exits_2(tmp_path: Path) -> None:
    prof = tmp_path / "p.yaml"
    prof.write_text("DPDTimeoutSeconds: 40\nDpdTimeoutSecs: 30\n")
    res = conformance("--cgw", "127.0.0.2", "--psk", PSK, "--profile", str(prof))
    assert res.returncode == 2, res.stderr
    assert "DpdTimeoutSecs" in res.stderr and "unknown tunnel option" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_bad_arguments_exit_2() -> None:
    port = free_port("127.0.0.2")
    cases: list[tuple[list[str], str]] = [
        (["--cgw", "127.0.0.2", "--psk", "0starts.with.zero"], "psk"),
        (["--cgw", "not-an-ip", "--psk", PSK], "cgw"),
        (["--cgw", "127.0.0.2", "--local", "192.0.2.77:45000", "--psk", PSK], "local"),
        (["--cgw", "127.0.0.2", "--psk", PSK, "--only", "AWS-NOPE-*"], "only"),
        (["--cgw", "127.0.0.2", "--psk", PSK, "--ike-version", "2", "--profile", "/nonexistent.yaml"], "profile"),
        # nothing listens there: the kernel answers our first datagram with ICMP port unreachable
        (["--cgw", f"127.0.0.2:{port}", "--local", f"127.0.0.1:{free_port('127.0.0.1')}", "--psk", PSK], "cgw"),
    ]
    for args, field in cases:
        res = conformance(*args)
        assert res.returncode == 2, (args, res.returncode, res.stderr)
        line = res.stderr.strip().splitlines()[-1]
        assert line.startswith(f"awsnetemu: configuration error: {field}"), (args, line)


def test_wrong_psk_exits_2() -> None:
    aws = f"127.0.0.1:{free_port('127.0.0.1')}"
    cgw = f"127.0.0.2:{free_port('127.0.0.2')}"
    with our_cgw(cgw, aws, psk="another.key.98765"):
        res = conformance("--cgw", cgw, "--local", aws, "--psk", PSK, "--fast", "--only", "AWS-TRN-01")
    assert res.returncode == 2, res.stderr
    assert "psk: the device's pre-shared key differs from --psk" in res.stderr
