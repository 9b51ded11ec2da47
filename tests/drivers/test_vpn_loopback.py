"""Two ``awsnetemu vpn`` processes (our AWS endpoint and our CGW) over loopback UDP on unprivileged ports:
the whole command end to end (engine, driver, events, pcap, key tables, signals), no root needed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.tools import require_tool

REPO = Path(__file__).resolve().parents[2]


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def events(path: Path, name: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec["event"] == name:
            out.append(rec)
    return out


def wait(cond: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_aws_and_cgw_processes_bring_a_tunnel_up_run_dpd_and_delete(tmp_path: Path) -> None:
    aws = ("127.0.0.1", free_port("127.0.0.1"))
    cgw = ("127.0.0.2", free_port("127.0.0.2"))
    common = ["--psk", "loop.psk.0123", "--proposal", "aes256-sha256-ecp256", "--esp-proposal", "aes256-sha256"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        for role, me, other, extra in (
            # The CGW probes every 1 s; the AWS side waits 5 s of silence, so it never probes: each side's
            # probes are the other's inbound traffic, and equal timers would race over who probes at all.
            ("aws", aws, cgw, ["--dpd-delay", "5", "--dpd-interval", "5", "--dpd-timeout-seconds", "30"]),
            ("cgw", cgw, aws, ["--dpd-delay", "1", "--dpd-interval", "1", "--pcap", str(tmp_path / "cgw.pcap"),
                               "--keys", str(tmp_path / "keys")]),
        ):  # fmt: skip
            argv = [
                sys.executable, "-m", "emulator", "vpn", "--role", role, "--local", f"{me[0]}:{me[1]}",
                "--remote", f"{other[0]}:{other[1]}", "--events", str(tmp_path / f"{role}.jsonl"), *common, *extra,
            ]  # fmt: skip
            err = open(tmp_path / f"{role}.err", "wb")  # noqa: SIM115 - handed to the child
            procs[role] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
            err.close()
            # the AWS endpoint must listen before the CGW's first Main Mode message goes out
            wait(lambda r=role: events(tmp_path / f"{r}.jsonl", "listening"), 10, f"{role} listening")
        for role in ("aws", "cgw"):
            wait(lambda r=role: events(tmp_path / f"{r}.jsonl", "tunnel_up"), 10, f"{role} tunnel_up")
        wait(lambda: len(events(tmp_path / "cgw.jsonl", "dpd_ack_received")) >= 2, 6, "two DPD ACKs at the CGW")
        procs["cgw"].send_signal(signal.SIGTERM)
        assert procs["cgw"].wait(10) == 0
        wait(lambda: events(tmp_path / "aws.jsonl", "tunnel_down"), 5, "AWS tunnel_down after the CGW's Deletes")
        procs["aws"].send_signal(signal.SIGTERM)
        assert procs["aws"].wait(10) == 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    aws_ev, cgw_ev = tmp_path / "aws.jsonl", tmp_path / "cgw.jsonl"
    # the SPIs both sides report are the same IKE SA
    a, c = events(aws_ev, "ike_sa_established")[0], events(cgw_ev, "ike_sa_established")[0]
    assert (a["spi_i"], a["spi_r"]) == (c["spi_i"], c["spi_r"])
    # every R-U-THERE the CGW sent that the AWS side saw was acknowledged with the same sequence number
    sent = [e["seq"] for e in events(cgw_ev, "dpd_request_sent")]
    seen = [e["seq"] for e in events(aws_ev, "dpd_request_received")]
    acked = [e["seq"] for e in events(cgw_ev, "dpd_ack_received")]
    assert acked and set(acked) <= set(seen) <= set(sent)
    assert events(aws_ev, "delete_received")
    assert events(aws_ev, "tunnel_down")[0]["reason"] != "dpd_timeout"
    err = (tmp_path / "cgw.err").read_text()
    assert "tunnel UP" in err and "tunnel DOWN" in err
    require_tool("tshark")  # the capture's decryption is checked below
    # non-500 ports carry the RFC 3948 non-ESP marker on every IKE message: decode them as udpencap
    res = subprocess.run(
        ["tshark", "-r", str(tmp_path / "cgw.pcap"), "-d", f"udp.port=={aws[1]},udpencap",
         "-d", f"udp.port=={cgw[1]},udpencap", "-Y", "isakmp.exchangetype==5", "-T", "fields",
         "-e", "isakmp.notify.data.dpd.are_you_there_ack"],
        capture_output=True, text=True, check=True, env={**os.environ, "WIRESHARK_CONFIG_DIR": str(tmp_path / "keys")},
    )  # fmt: skip
    decrypted_acks = {int(x) for x in res.stdout.split() if x}
    assert set(acked) <= decrypted_acks
