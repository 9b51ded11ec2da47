"""``awsnetemu conformance`` on loopback (no root) against our own CGW engine (``awsnetemu vpn --role cgw``): the
JUnit file it writes is read back by a JUnit parser (xunitparser, independent of the writer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conformance.test_cli import PSK, conformance, free_port, our_cgw


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
