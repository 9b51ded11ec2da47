"""Campaigns end to end: a planted failure replays with the same trace hash and shrinks; bad campaign files are
one-line errors naming the field; a worker that dies is that run's outcome; the result cache skips done runs."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from emulator.campaign import engine, spec
from emulator.campaign.backends import ProcessBackend
from emulator.campaign.catalogue import FAULTS, parse_fault
from emulator.campaign.runner import run_parts
from emulator.cli import main
from tests.campaign.conftest import write

# A base scenario with a deliberately wrong expectation: it says AWS never declares the CGW dead, which a
# partition longer than DPDTimeoutSeconds contradicts.
WRONG = """
name: planted
seed: 1
duration: 300
ike_version: 1
tunnel: {IKEVersions: [ikev1], DPDTimeoutSeconds: 30, DPDTimeoutAction: restart,
         Phase1DHGroupNumbers: [19], Phase2DHGroupNumbers: [19]}
aws: {behaviour: {restart_backoff_max: 8}}
expect:
  - absent: {event: dpd_timeout, node: aws}
"""
RIGHT = WRONG.split("expect:")[0]


def campaign(tmp_path: Path, body: str, base: str = WRONG) -> str:
    write(tmp_path / "base.yaml", base)
    return write(tmp_path / "c.yaml", body)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_planted_failure_replays_with_the_same_trace_hash_and_shrinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three partitions per run, one long enough to time AWS out (the others end before the timeout): the
    planted expectation fails, the failing run replays in this process with the hash its worker computed, and
    the schedule shrinks to the one partition that causes it."""
    path = campaign(
        tmp_path,
        """
name: planted
scenario: base.yaml
seeds: 3
faults:
  - fault: partition
    params: {start: 40, times: 3, every: 150, duration: {one_of: [45.5, 5.0]}}
""",
    )
    sp = spec.load(path)
    tasks = engine.plan(sp)
    backend = ProcessBackend(2)
    try:
        res = engine.run_campaign(sp, tasks, backend, str(tmp_path / "out"))
    finally:
        backend.close()
    failing = [r for r in res.results if r["status"] == "fail"]
    assert failing, res.results
    for r in failing:
        assert any(name.startswith("expect: ") for name in r["failed"])
        # replay: the printed command, run in this process
        argv = [*shlex.split(r["replay"])[1:], "--json"]
        rc, out, _ = run_cli(argv, capsys)
        doc = json.loads(out)
        assert rc == 1 and doc["status"] == "fail"
        assert doc["trace_hash"] == r["trace_hash"]
        assert doc["failed"] == r["failed"]
        # the same run as `awsnetemu run BASE --seed S --fault ...`: the same trace
        argv = ["run", str(tmp_path / "base.yaml"), "--seed", str(r["seed"]), "--json"]
        rc, out, _ = run_cli(argv + [x for p in r["parts"] for x in ("--fault", p)], capsys)
        assert rc == 1 and json.loads(out)["trace_hash"] == r["trace_hash"]
        # ... and again with its files written: the same hash, a capture and the trace it hashes
        rc, out, _ = run_cli([*shlex.split(r["replay"])[1:], "--json", "--out", str(tmp_path / "replay")], capsys)
        assert json.loads(out)["trace_hash"] == r["trace_hash"]
        lines = (tmp_path / "replay" / "planted.jsonl").read_bytes()
        assert hashlib.sha256(lines).hexdigest() == r["trace_hash"]
        assert (tmp_path / "replay" / "planted.pcap").stat().st_size > 24
        # shrunk: one part is enough (all three occurrences are 45.5 s long in this draw, or fewer)
        shrunk = r["shrunk"]
        assert 1 <= len(shrunk["parts"]) < len(r["parts"])
        rc, out, _ = run_cli([*shlex.split(shrunk["replay"])[1:], "--json"], capsys)
        assert rc == 1 and set(r["failed"]) & set(json.loads(out)["failed"])
    # every 5-second draw passes: partitions shorter than the liveness tolerance never time AWS out
    for r in res.results:
        if r["params"]["duration"] == 5.0:
            assert r["status"] == "pass", r
    text = (tmp_path / "out" / "failures.txt").read_text()
    assert "replay: awsnetemu campaign" in text and "shrunk from 3 to 1 parts" in text


def test_a_combined_schedule_shrinks_to_the_fault_that_fails(tmp_path: Path) -> None:
    """A combined nemesis (duplicates, a long partition, reordering): the planted expectation fails because of
    the partition alone, and shrinking finds it."""
    path = campaign(
        tmp_path,
        """
scenario: base.yaml
seeds: 2
faults:
  - combine:
      - {fault: duplicate, params: {start: 20, p: 0.5, duration: 60}}
      - {fault: partition, params: {start: 40, duration: 50}}
      - {fault: reorder, params: {start: 30, p: 0.5, duration: 60, times: 2, every: 70}}
""",
    )
    sp = spec.load(path)
    tasks = engine.plan(sp)
    assert [len(t.parts) for t in tasks] == [4, 4] and tasks[0].fault == "duplicate+partition+reorder"
    assert [c["fault"] for c in tasks[0].params["combine"]] == ["duplicate", "partition", "reorder"]
    backend = ProcessBackend(1)
    try:
        res = engine.run_campaign(sp, tasks, backend)
    finally:
        backend.close()
    for r in res.results:
        assert r["status"] == "fail"
        assert [p.split(":")[0] for p in r["shrunk"]["parts"]] == ["partition"]


def test_trace_hash_is_the_same_in_another_process_and_differs_with_the_seed(tmp_path: Path) -> None:
    path = campaign(
        tmp_path,
        "scenario: base.yaml\nfaults: [{fault: loss, params: {p: 0.3, duration: 40}}]\n",
        RIGHT,
    )
    sp = spec.load(path)
    tasks = engine.plan(sp, 2)
    backend = ProcessBackend(1)
    try:
        res = engine.run_campaign(sp, tasks, backend)
    finally:
        backend.close()
    assert [r["status"] for r in res.results] == ["pass", "pass"]
    here = [run_parts("vpn", t.base, t.parts, t.seed, t.invariants).trace_hash for t in tasks]
    assert here == [r["trace_hash"] for r in res.results]
    assert here[0] != here[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("faults: [{fault: partitoin}]", r"faults\[0\]\.fault: unknown fault 'partitoin' \(allowed: loss, "),
        ("faults: [{fault: loss, params: {p: [0.1, 1.5]}}]", r"faults\[0\]\.params\.p\[1\]: must be between 0 and 1"),
        ("faults: [{fault: loss, params: {p: [0.5, 0.1]}}]", r"faults\[0\]\.params\.p: must be \[lo, hi\]"),
        ("faults: [{fault: loss, params: {q: 1}}]", r"faults\[0\]\.params\.q: unknown key \(allowed: "),
        ("faults: [{fault: pause, params: {node: [cgw, tgw]}}]", r"faults\[0\]\.params\.node\[1\]: must be one of"),
        ("faults: [{fault: loss}]\ninvariants: [no_crash]", r"invariants\[0\]: unknown invariant 'no_crash'"),
        ("faults: []", r"faults: must list at least one fault"),
        ("faults: [{fault: loss}]\nseeds: 0", r"seeds: must be >= 1"),
        ("faults: [{fault: loss}]\nbogus: 1", r"bogus: unknown key"),
        ("faults: [{fault: loss, params: {times: 21}}]", r"faults\[0\]\.params\.times: must be <= 20"),
        ("faults: [{combine: [{fault: loss}]}]", r"faults\[0\]\.combine: must list at least two faults"),
        (
            "faults: [{combine: [{fault: loss}, {fault: az_failure}]}]",
            r"faults\[0\]\.combine\[1\]\.fault: a tgw fault cannot run with vpn faults",
        ),
        ("faults: [{combine: [{fault: loss}, {fault: lost}]}]", r"faults\[0\]\.combine\[1\]\.fault: unknown fault"),
        ("faults: [{fault: loss, combine: []}]", r"faults\[0\]\.fault: not with combine"),
        ("faults: [{seeds: 3}]", r"faults\[0\]\.fault: required"),
    ],
)
def test_bad_campaign_files_are_one_line_errors_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    path = campaign(tmp_path, "scenario: base.yaml\n" + body + "\n")
    rc, out, err = run_cli(["campaign", path], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1, err
    import re

    assert re.search(message, err), err


def test_campaign_file_errors_of_the_bases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "c1.yaml", "faults: [{fault: partition}]\n")
    rc, _, err = run_cli(["campaign", str(tmp_path / "c1.yaml")], capsys)
    assert rc == 2 and "scenario: required: faults[0] (partition) is a VPN fault" in err
    write(tmp_path / "c2.yaml", "scenario: nope.yaml\nfaults: [{fault: partition}]\n")
    rc, _, err = run_cli(["campaign", str(tmp_path / "c2.yaml")], capsys)
    assert rc == 2 and err.startswith("awsnetemu: configuration error: scenario ")
    # a TGW fault the topology cannot take: the seed topology has no VPN attachment
    seed_topo = Path(__file__).resolve().parents[2] / "fixtures" / "tgw" / "seed.yaml"
    write(tmp_path / "c3.yaml", f"tgw: {{topology: {seed_topo}}}\nfaults: [{{fault: route_flap}}]\n")
    rc, _, err = run_cli(["campaign", str(tmp_path / "c3.yaml")], capsys)
    assert rc == 2 and "faults[0]: the topology has no VPN attachment" in err
    write(tmp_path / "c4.yaml", "faults: [{fault: az_failure, params: {az: use9-az9}}]\n")
    rc, _, err = run_cli(["campaign", str(tmp_path / "c4.yaml")], capsys)
    assert rc == 2 and "faults[0].params.az: 'use9-az9' is not an AZ ID of the topology" in err
    rc, _, err = run_cli(["campaign", str(tmp_path / "c4.yaml"), "--seeds", "0"], capsys)
    assert rc == 2 and "--seeds: must be >= 1" in err
    rc, _, err = run_cli(["campaign", str(tmp_path / "c4.yaml"), "--seed", "1", "--fault", "nope:x=1"], capsys)
    assert rc == 2 and "--fault: unknown fault 'nope'" in err


def test_a_worker_that_dies_is_that_runs_outcome_and_the_campaign_goes_on(tmp_path: Path) -> None:
    path = campaign(tmp_path, "scenario: base.yaml\nfaults: [{fault: duplicate, params: {p: 0.5}}]\n", RIGHT)
    sp = spec.load(path)
    tasks = engine.plan(sp, 5, function="tests.campaign.helpers:die_on_seed_2")
    backend = ProcessBackend(2)
    try:
        res = engine.run_campaign(sp, tasks, backend, str(tmp_path / "out"))
    finally:
        backend.close()
    status = {r["seed"]: r["status"] for r in res.results}
    assert status == {1: "pass", 2: "worker_died", 3: "pass", 4: "pass", 5: "pass"}
    died = next(r for r in res.results if r["seed"] == 2)
    assert "died (exit code 7)" in died["error"]
    assert "worker_died" in engine.summary_table(res).splitlines()[0] or "died" in engine.summary_table(res)
    # the death is not cached: a rerun tries seed 2 again and takes the others from the cache
    backend = ProcessBackend(1)
    try:
        again = engine.run_campaign(sp, engine.plan(sp, 5), backend, str(tmp_path / "out"))
    finally:
        backend.close()
    assert again.cached == 4 and [r["status"] for r in again.results] == ["pass"] * 5


def test_cli_prints_the_summary_and_reruns_from_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = campaign(
        tmp_path,
        "scenario: base.yaml\nseeds: 3\nfaults:\n  - {fault: crash_restart, params: {duration: [5, 50]}}\n"
        "  - {fault: appliance_failure, params: {duration: [5, 20]}}\n",
        RIGHT,
    )
    out_dir = str(tmp_path / "out")
    rc, out, err = run_cli(["campaign", path, "--workers", "2", "--out", out_dir], capsys)
    assert rc == 0, out + err
    assert "fault" in out.splitlines()[0] and "crash_restart" in out and "appliance_failure" in out
    assert "6 runs (0 from the cache)" in out
    assert "runs/s" in err  # the progress line
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["runs"] == 6 and doc["counts"] == {"pass": 6}
    rc, out, _ = run_cli(["campaign", path, "--workers", "1", "--out", out_dir], capsys)
    assert rc == 0 and "6 runs (6 from the cache)" in out


def test_every_catalogue_parameter_is_documented_and_parses_back() -> None:
    for fd in FAULTS.values():
        params = {p.name: p.default for p in fd.all_params()}
        for part in fd.expand(params):
            again = parse_fault(part.text())
            assert again == part, fd.name
        for p in fd.all_params():
            assert p.doc and p.describe().startswith(p.name)


def test_list_faults(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(["campaign", "--list-faults"], capsys)
    assert rc == 0
    for name in FAULTS:
        assert f"\n{name} [" in "\n" + out
    assert "flows_keep_their_appliance" in out and "recovers:" in out
