"""``awsnetemu conformance`` against libreswan's pluto (4.10, Debian 12) in network namespaces.

pluto runs here only as far as IKE goes: this kernel has no ESP (``real-peers.md`` §0, §2), libreswan has no
userspace IPsec stack, so its Quick Mode fails when it installs the IPsec SA ("netlink response for Add SA ...
Protocol not supported"), and it never arms DPD (it does so per IPsec SA). With ``--ike-only`` the battery says
so: every check that needs an IPsec SA pair is ``unsupported``, the rest (transport, phase 1, DPD answers on
the ISAKMP SA, robustness) are judged, nothing fails and nothing hangs. Without ``--ike-only`` exactly one check
fails, the one that says phase 2 never completed.

libreswan's package conflicts with strongSwan's, so ``.ci/system-deps.sh`` unpacks it into
``/opt/awsnetemu-libreswan`` (``apt-get download`` + ``dpkg -x``) and installs only its libraries; pluto
hard-codes ``/usr/libexec/ipsec``, so it runs with that tree bind-mounted there in its own mount namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.realpeer.harness import CHARON_IP, OUR_IP, PSK, REPO, Lab, require_tools, wait_until
from tests.tools import tool_missing

pytestmark = pytest.mark.realpeer

LIBRESWAN_ROOT = Path("/opt/awsnetemu-libreswan")
PLUTO = LIBRESWAN_ROOT / "usr/libexec/ipsec/pluto"

# AWS's template in libreswan terms (ike-dpd.md §1.6), IKEv1.
IPSEC_CONF = """config setup
    ikev1-policy=accept
conn vpn
    keyexchange=ike
    ikev2=no
    authby=secret
    left={me}
    leftid={me}
    leftsubnet=10.2.0.0/24
    right={peer}
    rightid={peer}
    rightsubnet=10.1.0.0/24
    ike=aes128-sha1;modp2048
    phase2alg=aes128-sha1;modp2048
    ikelifetime=8h
    salifetime=1h
    dpddelay=10
    dpdtimeout=30
    dpdaction=restart
    auto=start
"""


def require_pluto() -> None:
    require_tools()
    if not os.access(PLUTO, os.X_OK) or shutil.which("certutil") is None:
        tool_missing(f"libreswan's pluto ({PLUTO}) and certutil are needed (run `make system`)")


class Pluto:
    """pluto in the lab's device namespace, started and stopped by PID."""

    def __init__(self, lab: Lab, directory: Path) -> None:
        self.lab = lab
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Pluto:
        d = self.dir
        (d / "nss").mkdir(parents=True, exist_ok=True)
        (d / "run").mkdir(exist_ok=True)
        (d / "ipsec.conf").write_text(IPSEC_CONF.format(me=CHARON_IP, peer=OUR_IP))
        (d / "ipsec.secrets").write_text(f'{CHARON_IP} {OUR_IP} : PSK "{PSK}"\n')
        subprocess.run(
            ["certutil", "-N", "-d", f"sql:{d / 'nss'}", "--empty-password"], check=True, capture_output=True
        )
        inner = (
            f"mount --bind {LIBRESWAN_ROOT}/usr/libexec /usr/libexec && mount -t tmpfs tmpfs /run && exec {PLUTO} "
            f"--nofork --stderrlog --config {d}/ipsec.conf --secretsfile {d}/ipsec.secrets --nssdir {d}/nss "
            f"--rundir {d}/run --ipsecdir {d}"
        )
        log = open(d / "pluto.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.ns_charon, "sh", "-c", inner],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self.lab.procs.append(self.proc)
        wait_until(
            lambda: "listening for IKE messages" in self.log() or self.proc.poll() is not None,
            20,  # type: ignore[union-attr]
            "pluto listening",
        )
        assert self.proc.poll() is None, self.log()[-2000:]
        return self

    def log(self) -> str:
        p = self.dir / "pluto.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


def run(tmp: Path, name: str, extra: list[str]) -> tuple[int, dict[str, Any], float, str]:
    lab = Lab(tmp / name)
    try:
        lab.setup()
        Pluto(lab, tmp / name / "pluto").start()
        argv = [
            "ip", "netns", "exec", lab.ns_ours, sys.executable, "-m", "emulator", "conformance",
            "--cgw", CHARON_IP, "--local", OUR_IP, "--psk", PSK, "--ike-version", "1", "--fast", "--json",
            "--out", str(tmp / name / "out"), *extra,
        ]  # fmt: skip
        t0 = time.monotonic()
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=400, env={**os.environ, "PYTHONPATH": str(REPO)}
        )
        wall = time.monotonic() - t0
        assert res.stdout, res.stderr[-3000:]
        return res.returncode, json.loads(res.stdout), wall, res.stderr
    finally:
        lab.cleanup()


def test_pluto_ike_only_reports_what_it_could_check(tmp_path: Path) -> None:
    require_pluto()
    with ThreadPoolExecutor(2) as ex:
        ike_only = ex.submit(run, tmp_path, "ike-only", ["--ike-only"])
        plain = ex.submit(run, tmp_path, "plain", ["--only", "AWS-P1-01,AWS-CHD-0*,AWS-DPD-01,AWS-REK-01"])
        rc, report, wall, err = ike_only.result()
        rc2, report2, wall2, err2 = plain.result()
    res = {r["id"]: r for r in report["results"]}
    table = "\n".join(f"{k} {r['verdict']}: {r['summary']}" for k, r in res.items())
    # --ike-only: nothing fails, the IPsec-SA checks are unsupported, and IKE itself was really tested.
    assert rc == 0, table + err[-2000:]
    assert not [k for k, r in res.items() if r["verdict"] == "fail"], table
    for k in ("AWS-TRN-01", "AWS-P1-01", "AWS-P1-02", "AWS-P1-06", "AWS-RTX-01", "AWS-DPD-01", "AWS-ROB-03"):
        assert res[k]["verdict"] == "pass", table
    for k in ("AWS-CHD-01", "AWS-CHD-02", "AWS-DPD-04", "AWS-ACT-01", "AWS-REK-01", "AWS-LIF-01"):
        assert res[k]["verdict"] == "unsupported", table
        assert "IPsec SA pair" in res[k]["summary"], table
    assert report["duration"] < 180, report["duration"]
    # Without --ike-only: the one failure is phase 2 never completing; what needs it is unsupported.
    res2 = {r["id"]: r for r in report2["results"] if r["verdict"] != "skip"}
    table2 = "\n".join(f"{k} {r['verdict']}: {r['summary']}" for k, r in res2.items())
    assert {k for k, r in res2.items() if r["verdict"] == "fail"} == {"AWS-CHD-01"}, table2
    assert "never completed" in res2["AWS-CHD-01"]["summary"], table2
    assert res2["AWS-P1-01"]["verdict"] == "pass" and res2["AWS-DPD-01"]["verdict"] == "pass", table2
    assert res2["AWS-REK-01"]["verdict"] == "unsupported", table2
    assert rc2 == 1 and wall2 < 120, (rc2, wall2, err2[-1000:])
    del wall
