"""``awsnetemu conformance`` on loopback (no root) against a device that never answers: every selected check
fails saying "no answer", within the checks' bounds."""

from __future__ import annotations

import json
import socket
import time

from tests.conformance.test_cli import PSK, conformance, free_port


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
