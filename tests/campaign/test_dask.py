"""The same campaign on a Dask LocalCluster: the same results and trace hashes as local processes, finished
runs reused by key when the campaign is repeated, and a clean shutdown (pytest turns any warning into an
error)."""

from __future__ import annotations

from pathlib import Path

from emulator.campaign import engine, spec
from emulator.campaign.backends import DaskBackend, ProcessBackend
from tests.campaign import helpers
from tests.campaign.conftest import write

BASE = """
name: dask-base
seed: 1
duration: 300
ike_version: 2
tunnel: {IKEVersions: [ikev2], DPDTimeoutSeconds: 30, DPDTimeoutAction: restart,
         Phase1DHGroupNumbers: [19], Phase2DHGroupNumbers: [19]}
aws: {behaviour: {restart_backoff_max: 8}}
"""
CAMPAIGN = """
name: on-dask
scenario: base.yaml
seeds: 4
faults:
  - {fault: partition, params: {start: [20, 60], duration: [2, 60]}}
  - {fault: clock_step, params: {node: [aws, cgw], by: [-60, 60]}}
  - {fault: appliance_mode_toggle, params: {start: [5, 30], enable: [true, false]}}
"""


def test_campaign_on_a_local_dask_cluster_matches_local_processes_and_reuses_runs(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", BASE)
    sp = spec.load(write(tmp_path / "c.yaml", CAMPAIGN))
    tasks = engine.plan(sp, function="tests.campaign.helpers:counting_execute")
    local = ProcessBackend(2)
    try:
        want = engine.run_campaign(sp, engine.plan(sp), local)
    finally:
        local.close()
    helpers.EXECUTED.clear()
    backend = DaskBackend("local", 2, processes=False)
    try:
        got = engine.run_campaign(sp, tasks, backend)
        assert sorted(helpers.EXECUTED) == sorted(t.key for t in tasks)
        again = engine.run_campaign(sp, tasks, backend)
    finally:
        backend.close()
    assert len(helpers.EXECUTED) == len(tasks)  # the repeat ran nothing: every key was finished on the cluster
    strip = [{k: r[k] for k in ("key", "status", "trace_hash", "failed", "events")} for r in want.results]
    assert [{k: r[k] for k in strip[0]} for r in got.results] == strip
    assert [{k: r[k] for k in strip[0]} for r in again.results] == strip
    assert all(r["status"] == "pass" for r in got.results), engine.failure_text(got)
    assert got.backend.startswith("Dask LocalCluster")


def test_a_dask_worker_that_dies_is_that_runs_outcome(tmp_path: Path) -> None:
    """On a LocalCluster of worker processes, the run that kills its worker (os._exit) comes back as
    worker_died; the others of its chunk and of the campaign pass."""
    write(tmp_path / "base.yaml", BASE)
    sp = spec.load(write(tmp_path / "c.yaml", "scenario: base.yaml\nfaults: [{fault: duplicate, params: {p: 0.5}}]\n"))
    tasks = engine.plan(sp, 5, function="tests.campaign.helpers:die_on_seed_2")
    backend = DaskBackend("local", 2)
    try:
        res = engine.run_campaign(sp, tasks, backend)
    finally:
        backend.close()
    status = {r["seed"]: r["status"] for r in res.results}
    assert status == {1: "pass", 2: "worker_died", 3: "pass", 4: "pass", 5: "pass"}
    assert "KilledWorker" in next(r for r in res.results if r["seed"] == 2)["error"]
