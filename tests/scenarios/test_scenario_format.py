"""Scenario-file validation: every error names the field (no engine needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from emulator.cli import ConfigError
from emulator.scenario import Scenario, check
from emulator.scenario_cli import embedded_scenarios
from emulator.trace import Trace


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"duration": "long"}, "duration: expected a number"),
        ({"duration": -1}, "duration: must be > 0"),
        ({"ike_version": 3}, "ike_version: must be one of 1, 2"),
        ({"aws": {"adress": "1.2.3.4"}}, "aws.adress: unknown key"),
        ({"aws": {"profile": "cisco"}}, "aws.profile: must be one of aws, strongswan, libreswan, device"),
        ({"cgw": {"behaviour": {"seq_on_retry": "x"}}}, "cgw.behaviour.seq_on_retry"),
        ({"tunnel": {"DPDTimeoutSeconds": 10}}, "tunnel.DPDTimeoutSeconds: must be an integer >= 30"),
        ({"tunnel": {"DPDTimeoutAction": "hold"}}, "tunnel.DPDTimeoutAction: invalid value 'hold'"),
        ({"links": {"a->b": {}}}, "links.a->b: unknown direction"),
        ({"links": {"cgw->aws": {"loss": 2}}}, "links.cgw->aws.loss: must be between 0 and 1"),
        ({"schedule": [{"do": "crash", "node": "aws"}]}, "schedule[0].at: required"),
        ({"schedule": [{"at": 1, "do": "explode"}]}, "schedule[0].do: must be one of"),
        ({"schedule": [{"at": 1, "do": "crash", "node": "x"}]}, "schedule[0].node: must be one of aws, cgw"),
        ({"schedule": [{"at": 1, "do": "blackhole", "direction": "up"}]}, "schedule[0].direction"),
        ({"expect": [{"node": "aws"}]}, "expect[0]: needs exactly one of event, status, absent, tgw_flow"),
        ({"expect": [{"event": "x", "when": 1}]}, "expect[0].when: unknown key"),
    ],
)
def test_bad_scenarios_name_the_field(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        Scenario.from_mapping(raw)
    assert needle in str(ei.value)


def test_embedded_scenarios_validate() -> None:
    files = embedded_scenarios()
    assert len(files) >= 7
    for f in files:
        sc = Scenario.load(f)
        assert sc.name == os.path.splitext(os.path.basename(f))[0]
        assert sc.raw.get("expect"), f"{f} has no expectations"


def test_expectation_checks() -> None:
    tr = Trace()
    tr.add(10.0, "aws", "dpd_request_sent", {"seq": 1})
    tr.add(20.0, "aws", "dpd_request_sent", {"seq": 2})
    tr.add(120.0, "aws", "dpd_timeout", {"action": "clear"})
    st = {"aws": {"Status": "DOWN"}}
    assert check({"event": "dpd_request_sent", "count": 2}, tr, st).ok
    assert not check({"event": "dpd_request_sent", "count": 3}, tr, st).ok
    assert check({"event": "dpd_request_sent", "nth": 2, "at": 20}, tr, st).ok
    assert not check({"event": "dpd_request_sent", "nth": 2, "at": 20.5}, tr, st).ok
    assert check({"event": "dpd_timeout", "fields": {"action": "clear"}, "within": [119, 121]}, tr, st).ok
    assert not check({"event": "dpd_timeout", "fields": {"action": "restart"}}, tr, st).ok
    assert check({"absent": {"event": "tunnel_up"}}, tr, st).ok
    assert not check({"absent": {"event": "dpd_timeout", "node": "aws"}}, tr, st).ok
    assert check({"status": {"node": "aws", "Status": "DOWN"}}, tr, st).ok
    assert not check({"status": {"node": "aws", "Status": "UP"}}, tr, st).ok
    assert check({"event": "dpd_request_sent", "node": "cgw", "count": 0}, tr, st).ok
    assert not check({"event": "dpd_request_sent", "node": "cgw"}, tr, st).ok


def test_cli_bad_file_exits_2(tmp_path: object) -> None:
    p = os.path.join(str(tmp_path), "bad.yaml")
    with open(p, "w") as f:
        yaml.safe_dump({"tunnel": {"DPDTimeoutAction": "explode"}}, f)
    r = subprocess.run([sys.executable, "-m", "emulator", "run", p], capture_output=True, text=True)
    assert r.returncode == 2
    assert "tunnel.DPDTimeoutAction" in r.stderr and "clear, restart, none" in r.stderr
