"""The campaign loop: plan the runs, skip the finished ones, run the rest on a backend, summarise, shrink.

:func:`plan` turns a :class:`~emulator.campaign.spec.CampaignSpec` into :class:`~emulator.campaign.runner.RunTask`
s (each entry x its seeds, parameters drawn from the seed). :func:`run_campaign` runs them on a backend with a
progress line, keeps a result cache in ``--out`` (``cache.jsonl``: one line per finished run, by task key, so a
rerun skips what is done, with or without Dask), shrinks each failing schedule of several parts, and writes
``results.json`` (every run), ``summary.txt`` (the table) and ``failures.txt`` (one replay command per failure).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from emulator.campaign.backends import Backend
from emulator.campaign.catalogue import Part
from emulator.campaign.runner import RunTask, shrink, task_key
from emulator.campaign.spec import CampaignSpec

CACHE = "cache.jsonl"


def replay_command(spec: CampaignSpec, entry: int, seed: int, parts: Iterable[Part]) -> str:
    """The one command that replays a run exactly."""
    args = ["awsnetemu", "campaign", spec.path, "--entry", str(entry), "--seed", str(seed)]
    for p in parts:
        args += ["--fault", p.text()]
    return shlex.join(args)


def plan(spec: CampaignSpec, seeds: int | None = None, *, function: str | None = None) -> list[RunTask]:
    """Every run of the campaign, in entry then seed order (``seeds`` overrides the file's counts)."""
    tasks = []
    for e in spec.entries:
        kind = e.fault.kind
        base = spec.vpn_base if kind == "vpn" else spec.tgw_base
        digest = base.digest() if kind == "vpn" else _tgw_digest(spec)
        invariants = spec.invariants_for(kind)
        n = seeds if seeds is not None else (e.seeds or spec.seeds)
        for seed in range(spec.first_seed, spec.first_seed + n):
            drawn = e.draw(spec.name, seed)
            if kind == "tgw":
                import random

                rng = random.Random(f"{spec.name}:{e.index}:resolve:{seed}")
                for m, params in zip(e.members, drawn, strict=True):
                    base.resolve(m.fault.name, params, rng)
            parts = tuple(p for m, params in zip(e.members, drawn, strict=True) for p in m.fault.expand(params))
            key = task_key(digest, parts, seed, invariants)
            kw = {} if function is None else {"function": function}
            tasks.append(
                RunTask(
                    key=key,
                    kind=kind,
                    base=base,
                    parts=parts,
                    seed=seed,
                    invariants=invariants,
                    entry=e.index,
                    fault=e.name,
                    params=e.params_doc(drawn),
                    band=e.band(drawn),
                    replay=replay_command(spec, e.index, seed, parts),
                    **kw,
                )
            )
    return tasks


def _tgw_digest(spec: CampaignSpec) -> str:
    with open(spec.tgw_topology, "rb") as f:
        data = f.read()
    doc = json.dumps(spec.tgw, sort_keys=True).encode()
    return hashlib.sha256(data + doc).hexdigest()


def spec_digest(spec: CampaignSpec) -> str:
    return hashlib.sha256(json.dumps(spec.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ============================================================================================== progress


class Progress:
    """A plain-text progress line on ``stream`` (stderr): redrawn in place on a terminal, every 10 % else."""

    def __init__(self, total: int, stream: IO[str] | None = None, every: float = 0.2) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.done = 0
        self.failed = 0
        self.t0 = time.monotonic()
        self._last = 0.0
        self._last_tenth = -1

    def update(self, status: str) -> None:
        self.done += 1
        if status != "pass":
            self.failed += 1
        now = time.monotonic()
        tenth = self.done * 10 // max(1, self.total)
        if self.tty and (now - self._last >= self.every or self.done == self.total):
            self._last = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()
        elif not self.tty and tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        width = 30
        fill = width * self.done // max(1, self.total)
        rate = self.done / max(1e-9, now - self.t0)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} runs, {self.failed} not passed, "
            f"{rate:.1f} runs/s, ETA {eta:.0f} s"
        )

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# =============================================================================================== campaign


@dataclass
class CampaignResult:
    """Every run's result (in plan order), how many came from the cache, the wall time."""

    results: list[dict[str, Any]]
    cached: int = 0
    seconds: float = 0.0
    backend: str = ""
    shrunk: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] != "pass"]

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for r in self.results:
            counts[r["status"]] += 1
        return {
            "runs": len(self.results),
            "counts": dict(counts),
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "backend": self.backend,
            "results": self.results,
        }


def load_cache(out: str | None) -> dict[str, dict[str, Any]]:
    if out is None:
        return {}
    path = os.path.join(out, CACHE)
    found: dict[str, dict[str, Any]] = {}
    if not os.path.exists(path):
        return found
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interrupted campaign
            if isinstance(r, dict) and isinstance(r.get("key"), str) and r.get("status") in ("pass", "fail"):
                found[r["key"]] = r
    return found


def run_campaign(
    spec: CampaignSpec,
    tasks: Sequence[RunTask],
    backend: Backend,
    out: str | None = None,
    *,
    progress: Progress | None = None,
    do_shrink: bool | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> CampaignResult:
    """Run ``tasks`` (skipping those in ``out``'s cache), shrink failures, write the outputs to ``out``."""
    t0 = time.monotonic()
    cache = load_cache(out)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for t in tasks:
        hit = cache.get(t.key)
        if hit is not None:
            hit = dict(hit, replay=t.replay)
            results[t.key] = hit
        else:
            todo.append(t)
    cached = len(results)
    cache_file: IO[str] | None = None
    if out is not None:
        os.makedirs(out, exist_ok=True)
        cache_file = open(os.path.join(out, CACHE), "a")  # noqa: SIM115 - closed in finally
    prog = progress if progress is not None else Progress(len(tasks))
    for _ in range(cached):
        prog.update("pass")
    prog.failed = sum(1 for r in results.values() if r["status"] != "pass")

    def got(res: dict[str, Any]) -> None:
        results[res["key"]] = res
        prog.update(res["status"])
        if cache_file is not None and res["status"] in ("pass", "fail"):
            cache_file.write(json.dumps(res, default=str) + "\n")
            cache_file.flush()
        if on_result is not None:
            on_result(res)

    try:
        if todo:
            backend.run(todo, got)
    finally:
        prog.close()
        if cache_file is not None:
            cache_file.close()
    ordered = [results[t.key] for t in tasks if t.key in results]
    res = CampaignResult(ordered, cached, time.monotonic() - t0, backend.name)
    want_shrink = spec.shrink if do_shrink is None else do_shrink
    if want_shrink:
        by_key = {t.key: t for t in tasks}
        for r in res.failures:
            task = by_key[r["key"]]
            if r["status"] == "fail" and len(task.parts) > 1 and "shrunk" not in r:
                parts, runs = shrink(task, r["failed"])
                r["shrunk"] = {
                    "parts": [p.text() for p in parts],
                    "runs": runs,
                    "replay": replay_command(spec, task.entry, task.seed, parts),
                }
    if out is not None:
        write_outputs(spec, res, out)
    return res


# ================================================================================================ summary


def summary_table(res: CampaignResult) -> str:
    """Outcomes per fault and parameter band, then each check's record per fault."""
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    checks: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in res.results:
        row = rows[(r["fault"], r["band"])]
        row["runs"] += 1
        row[r["status"]] += 1
        for name, c in (r.get("checks") or {}).items():
            if c.get("ok") is None:
                continue
            rec = checks[r["fault"]][name]
            rec[1] += 1
            rec[0] += 1 if c["ok"] else 0
    head = ("fault", "band", "runs", "pass", "fail", "error", "died")
    table = [head]
    order = {f: i for i, f in enumerate(dict.fromkeys(r["fault"] for r in res.results))}

    def sort_key(k: tuple[str, str]) -> tuple[int, float, str]:
        fault, band = k
        low = band.partition("[")[2].partition(",")[0]
        try:
            x = float(low)
        except ValueError:
            x = 0.0
        return order[fault], x, band

    for fault, band in sorted(rows, key=sort_key):
        row = rows[(fault, band)]
        table.append(
            (
                fault,
                band,
                str(row["runs"]),
                str(row["pass"]),
                str(row["fail"]),
                str(row["error"]),
                str(row["worker_died"]),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("checks held / checked, per fault:")
    for fault, recs in checks.items():
        parts = [f"{n} {ok}/{n_}" for n, (ok, n_) in recs.items()]
        lines.append(f"  {fault}: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def failure_text(res: CampaignResult) -> str:
    """Each run that did not pass: what failed and the command that replays it."""
    out = []
    for r in res.failures:
        what = ", ".join(r.get("failed") or []) or r.get("error") or r["status"]
        out.append(f"{r['status'].upper()} {r['fault']} seed {r['seed']} ({r['band']}): {what}")
        for name in r.get("failed") or []:
            out.append(f"    {name}: {r['checks'][name]['detail'][:300]}")
        out.append(f"    replay: {r['replay']}")
        if "shrunk" in r:
            s = r["shrunk"]
            if len(s["parts"]) < len(r["parts"]):
                out.append(
                    f"    shrunk from {len(r['parts'])} to {len(s['parts'])} parts in {s['runs']} runs: {s['replay']}"
                )
            else:
                out.append(f"    no smaller schedule fails the same way ({s['runs']} runs tried)")
        if r.get("trace_hash"):
            out.append(f"    trace hash: {r['trace_hash']}")
    return "\n".join(out) + ("\n" if out else "")


def write_outputs(spec: CampaignSpec, res: CampaignResult, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"campaign": spec.name, "spec": spec.path, **res.to_json()}, f, indent=1, default=str)
        f.write("\n")
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(summary_table(res))
    with open(os.path.join(out, "failures.txt"), "w") as f:
        f.write(failure_text(res))
