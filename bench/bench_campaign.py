"""Campaign runs/s on 1 and 2 local worker processes and on a 2-worker Dask LocalCluster, and ``tgw replay
--dask`` of a 1,000,000-packet capture (packets/s, peak RSS).

Campaign rows are wall-clock rates (parallelism is the point), measured after each backend has run a warm-up
batch of other seeds (worker start-up and imports are not counted), in rounds that interleave the three
backends (best round of each). The runs are the example catalogue
(``emulator/campaign/examples/ci.yaml``): every fault, IKEv1 tunnels and the TGW inspection topology. Target:
2 workers >= 1.7x one. On a 2-core machine that other processes share, the ratio shows how much of the second
core was free: the load average is printed with it.

The replay rows run ``awsnetemu tgw replay --dask local --workers 2`` in a child process and sample the resident
memory of it and of every process below it (the Dask scheduler runs in it, the two workers under a nanny each)
every 50 ms: the peak of the largest process, and the peak of their sum. Target: <= 500 MB, and the same for a
capture four times shorter (memory independent of the capture's length).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_tgw import SEED, _write_capture
from bench.common import Row
from emulator.campaign import engine, spec
from emulator.campaign.backends import Backend, DaskBackend, ProcessBackend
from emulator.campaign.runner import RunTask

CI = Path(__file__).resolve().parent.parent / "emulator" / "campaign" / "examples" / "ci.yaml"


class _Quiet(engine.Progress):
    def __init__(self, total: int) -> None:
        super().__init__(total, open(os.devnull, "w"))  # noqa: SIM115 - a sink for the progress line


def _batch(backend: Backend, sp: spec.CampaignSpec, tasks: list[RunTask]) -> float:
    t0 = time.perf_counter()
    res = engine.run_campaign(sp, tasks, backend, progress=_Quiet(len(tasks)), do_shrink=False)
    dt = time.perf_counter() - t0
    if len(res.results) != len(tasks):
        raise RuntimeError("runs went missing")
    return len(tasks) / dt


def _campaign(quick: bool) -> list[Row]:
    sp = spec.load(str(CI))
    # Batches are whole blocks of 8 seeds, the Dask backend's chunks (seed // 8), so that it is measured as a
    # campaign of many seeds runs; the warm-up takes the seeds below the first block.
    rounds, seeds = (2, 8) if quick else (4, 8)
    tasks = engine.plan(sp, 8 + rounds * seeds - sp.first_seed)
    warm = [t for t in tasks if t.seed < 8]

    def batch(r: int) -> list[RunTask]:
        lo = 8 + r * seeds
        return [t for t in tasks if lo <= t.seed < lo + seeds]

    backends: dict[str, Backend] = {
        "1 local process": ProcessBackend(1),
        "2 local processes": ProcessBackend(2),
        "Dask LocalCluster, 2 workers": DaskBackend("local", 2),
    }
    rates: dict[str, float] = {}
    try:
        for b in backends.values():
            _batch(b, sp, warm)  # worker start-up and imports
        # Rounds interleave the backends, so that a change in the machine's load hits them alike; the best
        # round of each counts.
        for r in range(rounds):
            for name, b in backends.items():
                rates[name] = max(rates.get(name, 0.0), _batch(b, sp, batch(r)))
    finally:
        for b in backends.values():
            b.close()
    load = os.getloadavg()[0]
    one = rates["1 local process"]
    n = seeds * len(sp.entries)
    q = "QUICK: " if quick else ""
    rows = [
        Row(f"campaign runs/s, {name}", r, "runs/s", "", None, f"{q}best of {rounds} rounds of {n} runs, wall clock")
        for name, r in rates.items()
    ]
    for name in ("2 local processes", "Dask LocalCluster, 2 workers"):
        ratio = rates[name] / one
        rows.append(
            Row(
                f"campaign speed-up, {name} / 1 process",
                ratio,
                "x",
                ">= 1.7",
                ratio >= 1.7,
                f"{q}load average {load:.2f} on {os.cpu_count()} CPUs",
            )
        )
    return rows


def _tree_rss(pid: int) -> tuple[int, int]:
    """(largest RSS, sum of RSS) of a process and its descendants, bytes."""
    import psutil  # type: ignore[import-untyped]

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    sizes = []
    for q in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            sizes.append(q.memory_info().rss)
    return (max(sizes), sum(sizes)) if sizes else (0, 0)


def _replay_dask(pcap: Path, out: Path) -> tuple[float, int, int]:
    """Wall seconds, peak largest-process RSS, peak total RSS of ``tgw replay --dask local --workers 2``."""
    cmd = [sys.executable, "-m", "emulator", "tgw", "replay", str(SEED), str(pcap), "--out", str(out)]
    cmd += ["--appliance-mode", "tgw-attach-c=on", "--dask", "local", "--workers", "2"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    big = total = 0
    while proc.poll() is None:
        b, t = _tree_rss(proc.pid)
        big, total = max(big, b), max(total, t)
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"tgw replay --dask exited with {proc.returncode}: {err[-500:]}")
    return dt, big, total


def _replay(quick: bool) -> list[Row]:
    lengths = (50_000, 200_000) if quick else (250_000, 1_000_000)
    res = {}
    with tempfile.TemporaryDirectory(prefix="bench-campaign-replay-") as tmp:
        for n in lengths:
            pcap = Path(tmp) / f"in-{n}.pcap"
            _write_capture(pcap, n)
            res[n] = _replay_dask(pcap, Path(tmp) / f"out-{n}")
            pcap.unlink()
    short, long_ = lengths
    dt, big, total = res[long_]
    q = "QUICK: " if quick else ""
    return [
        Row(
            f"tgw replay --dask {long_:,} packets",
            long_ / dt,
            "packets/s",
            "",
            None,
            f"{q}wall clock: partition, 2 workers, merge (LocalCluster start-up included)",
        ),
        Row(f"tgw replay --dask peak RSS, largest process, {long_:,}", big / 1e6, "MB", "<= 500", big <= 500e6, q),
        Row(f"tgw replay --dask peak RSS, all processes, {long_:,}", total / 1e6, "MB", "", None, q),
        Row(
            f"tgw replay --dask peak RSS, largest process, {short:,}",
            res[short][1] / 1e6,
            "MB",
            "<= 500",
            res[short][1] <= 500e6,
            f"{q}{long_ // short}x fewer packets, same flows",
        ),
    ]


def run(quick: bool) -> list[Row]:
    return _campaign(quick) + _replay(quick)
