"""``awsnetemu conformance`` end to end on loopback (no root): bad arguments exit 2 with one line naming the
problem; a device that never answers gets ``fail`` verdicts saying "no answer" within the checks' bounds; a run
against our own CGW engine (``awsnetemu vpn --role cgw``) writes a JUnit file that a JUnit parser reads back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def test_silent_device_fails_with_no_answer_within_bounds() -> None:
    """A socket that reads and never answers: every selected check fails, saying "no answer", and the run ends
    within the bounds (10 s for the device's first initiation, AWS's 13.2 s retransmission budget, 3 s per
    probe) plus start-up slack."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.2", 0))
        cgw = f"127.0.0.2:{silent.getsockname()[1]}"
        aws = f"127.0.0.1:{free_port('127.0.0.1')}"
        t0 = time.monotonic()
        res = conformance(
            "--cgw", cgw, "--local", aws, "--psk", PSK, "--fast", "--json",
            "--only", "AWS-TRN-01,AWS-P1-01,AWS-CHD-01,AWS-DPD-01,AWS-ROB-04",
        )  # fmt: skip
        wall = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    report = json.loads(res.stdout)
    ran = [r for r in report["results"] if r["verdict"] != "skip"]
    assert len(ran) == 5
    for r in ran:
        assert r["verdict"] == "fail", r
        assert "no answer" in r["summary"], r
    assert wall < 10 + 13.2 + 3 + 20, wall


def test_battery_against_our_cgw_and_junit_read_back(tmp_path: Path) -> None:
    """A few checks against our own CGW engine; the JUnit file as xunitparser reads it matches the JSON."""
    import xunitparser

    aws = f"127.0.0.1:{free_port('127.0.0.1')}"
    cgw = f"127.0.0.2:{free_port('127.0.0.2')}"
    junit, out = tmp_path / "junit.xml", tmp_path / "out"
    only = "AWS-TRN-0[13],AWS-P1-0[12],AWS-CHD-01,AWS-DPD-01,AWS-REK-01,AWS-LIF-01,AWS-ROB-03"
    with our_cgw(cgw, aws):
        res = conformance(
            "--cgw", cgw, "--local", aws, "--psk", PSK, "--fast", "--json", "--junit", str(junit),
            "--out", str(out), "--only", only,
        )  # fmt: skip
    report: dict[str, Any] = json.loads(res.stdout)
    verdicts = {r["id"]: r["verdict"] for r in report["results"]}
    # Our CGW engine does not bring the tunnel back after a Delete (no close_action): a precise failure.
    assert verdicts["AWS-LIF-01"] == "fail"
    assert verdicts["AWS-TRN-03"] == "unsupported"  # a custom IKE port: no separate NAT-T port
    for k in ("AWS-TRN-01", "AWS-P1-01", "AWS-P1-02", "AWS-CHD-01", "AWS-DPD-01", "AWS-REK-01", "AWS-ROB-03"):
        assert verdicts[k] == "pass", (k, report["results"])
    assert res.returncode == 1
    with open(junit) as f:
        _suite, result = xunitparser.parse(f)
    assert result.testsRun == len(report["results"])
    failed = {t.methodname.split()[0] for t, _ in result.failures}
    assert failed == {k for k, v in verdicts.items() if v == "fail"}
    skipped = {t.methodname.split()[0] for t, _ in result.skipped}
    assert skipped == {k for k, v in verdicts.items() if v in ("skip", "unsupported")}
    lif = next(t for t, _ in result.failures if t.methodname.startswith("AWS-LIF-01"))
    assert lif.classname == "awsnetemu.conformance.lifecycle"
    assert "no re-initiation" in lif.message
    assert (out / "captures" / "AWS-LIF-01.pcap").exists()
    assert "udp.port==" in report["results"][0]["tshark"]  # custom ports: tshark told to decode them
