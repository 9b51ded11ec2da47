"""``awsnetemu conformance`` exits 2 with one line for a device address that cannot be reached at all: no route
to it (ENETUNREACH, at once). Runs in the lab's namespaces, where the routes are known exactly.

(An address on the link where no host answers ARP is not reported to a UDP socket by this kernel: the datagram
is dropped silently. Such a device is one that never answers: its checks fail with "no answer".)"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.realpeer.harness import OUR_IP, PSK, REPO, Lab

pytestmark = pytest.mark.realpeer


@pytest.mark.parametrize(
    ("cgw", "errno_name", "bound"),
    [
        ("10.50.0.1", "ENETUNREACH", 5.0),
    ],
)
def test_unreachable_device_exits_2(lab: Lab, cgw: str, errno_name: str, bound: float) -> None:
    argv = [
        "ip", "netns", "exec", lab.ns_ours, sys.executable, "-m", "emulator", "conformance", "--cgw", cgw,
        "--local", OUR_IP, "--psk", PSK, "--fast", "--only", "AWS-TRN-01",
    ]  # fmt: skip
    t0 = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    host = cgw.strip("[]")
    assert last.startswith(f"awsnetemu: configuration error: cgw: cannot reach {host}:500"), last
    assert errno_name in last, last
    assert wall < bound, wall
