"""Issue 13: a virtual-time run refuses periods below its floor, streams its trace to disk, and stops with a
clear message past its event budget. The expectations are still checked (as events arrive)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.cli import main
from emulator.errors import ConfigError
from emulator.scenario import Scenario, check
from emulator.scenario_cli import embedded_scenarios
from emulator.scheduler import BudgetExceeded
from emulator.trace import StreamingTrace
from emulator.validate import DEFAULT_MAX_EVENTS, MIN_PERIOD

# DPD every 10 ms (the floor) on both sides, for a virtual day: far more events than the budgets below.
TIGHT = {
    "name": "tight",
    "duration": 86_400,
    "tunnel": {"IKEVersions": ["ikev1"]},
    "aws": {"behaviour": {"dpd_delay": MIN_PERIOD, "dpd_interval": MIN_PERIOD}},
    "cgw": {"behaviour": {"dpd_delay": MIN_PERIOD, "dpd_interval": MIN_PERIOD}},
    "max_events": 3000,
}


@pytest.mark.parametrize(
    ("behaviour", "field"),
    [
        ({"dpd_delay": 0.001}, "aws.behaviour.dpd_delay"),  # DPD every millisecond: 3.4 GB in two minutes
        ({"dpd_interval": 0.005}, "aws.behaviour.dpd_interval"),
        ({"dpd_timeout": 0.001}, "aws.behaviour.dpd_timeout"),
        ({"retransmit": {"timeout": 0.001}}, "aws.behaviour.retransmit.timeout"),
        ({"retransmit": {"limit": 0.001}}, "aws.behaviour.retransmit.limit"),
        ({"retransmit": {"budget": 0.001}}, "aws.behaviour.retransmit.budget"),
        ({"retransmit": {"base": 0.1}}, "aws.behaviour.retransmit"),  # 4 s * 0.1**5: a shrinking schedule
        ({"retransmit": {"timeout": 0.011, "jitter": 0.5}}, "aws.behaviour.retransmit"),  # jitter halves it
        ({"restart_backoff_initial": 0.001}, "aws.behaviour.restart_backoff_initial"),
        ({"restart_backoff_max": 0.001}, "aws.behaviour.restart_backoff_max"),
        ({"nat_keepalive": 0.001}, "aws.behaviour.nat_keepalive"),  # 0 is allowed: it turns keepalives off
    ],
)
def test_periods_below_the_floor_are_refused(behaviour: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as ei:
        Scenario.from_mapping({"aws": {"behaviour": behaviour}})
    assert str(ei.value).startswith(f"{field}: ") and "timer floor" in str(ei.value)


def test_the_floor_itself_is_accepted_and_dpd_off_needs_none() -> None:
    Scenario.from_mapping({"name": "ok", "duration": 1, "max_events": 10**6, **{k: TIGHT[k] for k in ("aws", "cgw")}})
    Scenario.from_mapping({"cgw": {"behaviour": {"dpd_enabled": False, "dpd_delay": 0.001}}})
    with pytest.raises(ConfigError, match=r"schedule\[0\]\.every: must be a period of at least 0\.01 s"):
        Scenario.from_mapping({"schedule": [{"at": 1, "do": "esp", "node": "aws", "every": 0.001, "until": 2}]})


def test_budget_stops_the_run_with_a_clear_message(tmp_path: Path) -> None:
    sc = Scenario.from_mapping(TIGHT)
    with pytest.raises(BudgetExceeded) as ei:
        sc.run(str(tmp_path))
    msg = str(ei.value)
    assert msg.startswith("max_events: the run stopped at t=") and "more than 3,000 events" in msg
    assert "scenario tight" in msg and str(tmp_path / "tight.jsonl") in msg
    # The trace so far is on disk, exactly the budget.
    assert len((tmp_path / "tight.jsonl").read_text().splitlines()) == 3000


def test_cli_budget_exit_2_and_flag_overrides_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    f = tmp_path / "tight.yaml"
    f.write_text(yaml.safe_dump({**TIGHT, "duration": 1.0, "max_events": 10**6}))
    assert main(["run", str(f)]) == 0  # one virtual second at the floor fits the file's budget
    capsys.readouterr()
    assert main(["run", str(f), "--max-events", "500"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than 500 events" in err
    assert main(["run", str(f), "--max-events", "0"]) == 2
    assert "--max-events: must be >= 1" in capsys.readouterr().err


def test_scheduler_budget_stops_a_run_that_records_nothing() -> None:
    # ESP notes every 10 ms produce no events of their own: the scheduler's count stops them.
    sc = Scenario.from_mapping(
        {
            "duration": 10_000,
            "max_events": 2000,
            "cgw": {"behaviour": {"dpd_enabled": False}},
            "aws": {"behaviour": {"dpd_enabled": False}},
            "schedule": [{"at": 1, "do": "esp", "node": "aws", "every": 0.01, "until": 9000}],
        }
    )
    with pytest.raises(BudgetExceeded, match="more than 2,000 scheduled callbacks"):
        sc.run()


def test_trace_streams_to_disk_and_expectations_match_a_reread(tmp_path: Path) -> None:
    path = next(f for f in embedded_scenarios() if "04-" in f)
    res = Scenario.load(path).run(str(tmp_path))
    assert isinstance(res.trace, StreamingTrace)
    lines = (tmp_path / f"{res.name}.jsonl").read_text().splitlines()
    assert len(lines) == len(res.trace) > 100
    assert [json.loads(x) for x in lines] == [json.loads(r.to_json()) for r in res.trace]
    # Independent of the streaming matchers: check each expectation by re-reading the finished trace.
    status = res.status
    for r in res.results:
        assert check(r.expectation, res.trace, status).ok == r.ok
    assert res.ok


def test_without_out_the_trace_is_a_temporary_file() -> None:
    path = next(f for f in embedded_scenarios() if "02-" in f)
    res = Scenario.load(path).run()
    assert isinstance(res.trace, StreamingTrace) and res.trace.path is None and res.outputs == {}
    assert len(list(res.trace)) == len(res.trace) and res.ok
    res.trace.close()
    with pytest.raises(ValueError, match="closed"):
        list(res.trace)


def test_default_budget_covers_every_embedded_scenario() -> None:
    most = max(len(Scenario.load(f).run().trace) for f in embedded_scenarios())
    assert most * 100 <= DEFAULT_MAX_EVENTS, most
