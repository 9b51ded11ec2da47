"""One campaign run: a base (a VPN scenario or a TGW topology), a fault schedule (parts), a seed -> an outcome.

:func:`execute` is what a worker runs (a local process or a Dask worker): it takes a :class:`RunTask` and
returns a plain JSON-able dict (:func:`run_parts` does the work and is also what a replay and the shrinker
call). Everything a run does comes from its seed: the links' and peers' random numbers, the TGW traffic, the
faults' parameters (drawn before the run, :mod:`emulator.campaign.spec`). The trace hash (:func:`trace_hash`)
is a SHA-256 over the trace's JSON lines, whose instants are virtual seconds rounded to the microsecond and
whose fields hold no wall-clock time, process id or address of an object: the same run gives the same hash in
any process, on any machine, at any time.

A run's ``status`` is ``pass`` (every check that applies holds), ``fail`` (an expected outcome, an invariant or
one of the base scenario's own expectations does not), ``error`` (the run could not be carried out: its event
budget ran out) or, set by the backend, ``worker_died``. An exception escaping a node is a ``fail`` of
``no_datagram_crashes_a_node``, with the traceback in the detail.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from emulator.campaign.catalogue import FAULTS, Part, VpnEnv, link_items
from emulator.campaign.invariants import (
    INVARIANTS,
    TGW_INVARIANTS,
    CauseWindow,
    Outcome,
    TraceChecker,
    VpnContext,
)
from emulator.errors import ConfigError
from emulator.link import FaultPlan
from emulator.trace import TraceRecord

VERSION = "1"
"""Part of every task key: bump it when what a run does changes, so cached results are not reused."""

_BLACKHOLE_LIKE = ("blackhole", "faults", "crash", "revive", "close", "pause", "clock_step", "nat_rebind")


# ================================================================================================= bases


@dataclass(frozen=True)
class VpnBase:
    """A campaign's base VPN scenario: the file's mapping (shipped to workers; no file access there)."""

    raw: Mapping[str, Any]
    base_dir: str
    name: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()

    def scenario(self, tunnel: Mapping[str, Any] | None = None) -> Any:
        """The validated :class:`~emulator.scenario.Scenario` (with ``tunnel`` overrides), built once per
        process."""
        key = (self.digest(), json.dumps(dict(tunnel or {}), sort_keys=True))
        sc = _SCENARIOS.get(key)
        if sc is None:
            from emulator.scenario import Scenario

            raw = copy.deepcopy(dict(self.raw))
            if tunnel:
                raw["tunnel"] = {**(raw.get("tunnel") or {}), **tunnel}
                for side in ("aws", "cgw"):  # a collision needs both sides to start rekeys
                    s = raw[side] = dict(raw.get(side) or {})
                    s["behaviour"] = {**(s.get("behaviour") or {}), "rekey_initiator": True}
            sc = Scenario.from_mapping(raw, self.name, self.base_dir)
            if len(_SCENARIOS) > 64:
                _SCENARIOS.clear()
            _SCENARIOS[key] = sc
        return sc


_SCENARIOS: dict[tuple[str, str], Any] = {}


def vpn_env(sc: Any) -> VpnEnv:
    """The recovery bound, the tolerance and the wired link plans of a scenario (catalogue docstring)."""
    cfgs = sc.peer_configs()
    aws, cgw = cfgs["aws"], cfgs["cgw"]
    opts = aws.options
    timeout = float(opts.dpd_timeout_seconds)
    # The longest a negotiation can stay stuck: the whole retransmission budget of one attempt (its responder may
    # have forgotten the exchange, so no retransmission completes it; only giving up and restarting does).
    budget = max(c.behaviour.retransmit.budget or sum(c.behaviour.retransmit.waits()) for c in (aws, cgw))
    links: dict[str, FaultPlan] = dict(sc.links)
    for item in sc.schedule:
        if item.do == "blackhole":
            for d in item.directions:
                cur = links[d]
                links[d] = FaultPlan(**{**_plan_fields(cur), "blackholes": (*cur.blackholes, (item.at, item.until))})
    max_delay = max((p.delay + p.jitter + p.reorder_delay * (p.reorder > 0) for p in links.values()), default=0.0)
    dpd_delay = max(aws.behaviour.dpd_delay, cgw.behaviour.dpd_delay if cgw.behaviour.dpd_enabled else 0.0)
    bound = timeout + aws.behaviour.dpd_interval + aws.behaviour.restart_backoff_max + budget + 2 * max_delay + 2.0
    tolerance = timeout - dpd_delay - aws.behaviour.dpd_interval - 2 * max_delay - 1.0
    return VpnEnv(
        duration=float(sc.duration),
        timeout=timeout,
        restart=str(opts.dpd_timeout_action) in ("restart", "DpdTimeoutAction.RESTART"),
        bound=bound,
        tolerance=tolerance,
        cgw_probes=bool(cgw.behaviour.dpd_enabled),
        links=links,
        addresses=sc.addresses(),
    )


def _plan_fields(p: FaultPlan) -> dict[str, Any]:
    return {k: getattr(p, k) for k in FaultPlan.FIELDS}


# ================================================================================================== runs


@dataclass(frozen=True)
class RunTask:
    """One run of a campaign, as it travels to a worker (picklable; no open files)."""

    key: str
    kind: str
    """``vpn`` or ``tgw``."""
    base: Any
    """:class:`VpnBase` or :class:`~emulator.campaign.tgwrun.TgwBase`."""
    parts: tuple[Part, ...]
    seed: int
    invariants: tuple[str, ...]
    entry: int
    fault: str
    params: Mapping[str, Any]
    band: str
    replay: str
    """The command that replays this run."""
    function: str = "emulator.campaign.runner:execute"
    """The worker function, ``module:name`` (a test may name another)."""


def task_key(base_digest: str, parts: Iterable[Part], seed: int, invariants: Iterable[str]) -> str:
    """A task key from (scenario, faults, seed, version): the same run always gets the same key, so a Dask
    scheduler (and the local cache) hands back a finished run instead of running it again."""
    doc = json.dumps([VERSION, base_digest, [p.text() for p in parts], seed, sorted(invariants)], separators=(",", ":"))
    return "awsnetemu-run-" + hashlib.sha256(doc.encode()).hexdigest()[:32]


def trace_hash(records: Iterable[TraceRecord]) -> tuple[str, int]:
    """(SHA-256 of the trace's JSON lines, number of records)."""
    h = hashlib.sha256()
    n = 0
    for r in records:
        h.update(r.to_json().encode())
        h.update(b"\n")
        n += 1
    return h.hexdigest(), n


@dataclass
class RunOutcome:
    """What :func:`run_parts` found."""

    checks: dict[str, Outcome] = field(default_factory=dict)
    trace_hash: str = ""
    events: int = 0
    error: str | None = None
    """The run could not be carried out (e.g. its event budget ran out)."""

    @property
    def failed(self) -> list[str]:
        return [k for k, o in self.checks.items() if o.ok is False]

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "fail" if self.failed else "pass"


def run_parts(
    kind: str, base: Any, parts: Sequence[Part], seed: int, invariants: Sequence[str], out_dir: str | None = None
) -> RunOutcome:
    """Run ``parts`` on ``base`` with ``seed``; check the faults' expected outcomes and ``invariants``.
    ``out_dir``: also write the run's files there (VPN: the scenario's capture, trace, timeline and key tables;
    TGW: the trace as ``tgw-run.jsonl``)."""
    if kind == "tgw":
        return _run_tgw(base, parts, seed, invariants, out_dir)
    return _run_vpn(base, parts, seed, invariants, out_dir)


def _run_tgw(
    base: Any, parts: Sequence[Part], seed: int, invariants: Sequence[str], out_dir: str | None = None
) -> RunOutcome:
    from emulator.campaign.tgwrun import run_tgw

    out = RunOutcome()
    error: str | None = None
    try:
        res = run_tgw(base, parts, seed)
    except ConfigError as e:
        out.error = str(e)
        return out
    except Exception:  # a bug in the dataplane: bad input must never raise out of it
        error = traceback.format_exc(limit=8)
        out.checks["no_datagram_crashes_a_node"] = Outcome(False, f"an exception escaped the dataplane: {error}")
        out.trace_hash = hashlib.sha256(error.encode()).hexdigest()
        return out
    checker = TraceChecker()
    for r in res.trace:
        checker.feed(r)
    out.trace_hash, out.events = trace_hash(res.trace)
    if out_dir is not None:
        import os

        os.makedirs(out_dir, exist_ok=True)
        res.trace.write_jsonl(os.path.join(out_dir, "tgw-run.jsonl"))
    trace_checks = checker.results(None, error)
    for name in invariants:
        if name == "flows_keep_their_appliance":
            out.checks[name] = res.appliance
        elif name in TGW_INVARIANTS:
            out.checks[name] = trace_checks[name]
        else:
            out.checks[name] = Outcome(None, "not a TGW invariant")
    out.checks.update(res.outcomes)
    return out


def _run_vpn(
    base: VpnBase, parts: Sequence[Part], seed: int, invariants: Sequence[str], out_dir: str | None = None
) -> RunOutcome:
    out = RunOutcome()
    tunnel: dict[str, Any] = {}
    for p in parts:
        fd = FAULTS[p.fault]
        if fd.tunnel is not None:
            tunnel.update(fd.tunnel(p.params))
    sc = base.scenario(tunnel or None)
    env = vpn_env(sc)
    items = link_items(parts, env)  # the link faults together, so that they compose
    for p in parts:
        fd = FAULTS[p.fault]
        if fd.items is not None:
            items += fd.items(p.params, env)
    # The run lasts at least until the last part's effects are over (its recovery bound), so a fault drawn
    # late in a short base scenario is still judged.
    last = max((FAULTS[p.fault].window(p.params)[1] for p in parts), default=0.0)
    duration = max(float(sc.duration), last + env.bound + 5.0) if parts else float(sc.duration)
    run = sc.variant(seed=seed, schedule=items, duration=duration)
    env = replace(env, duration=float(run.duration))
    causes = _causes(sc, parts, env)
    steps = [(it.at, str(it.node), float(it.by)) for it in run.schedule if it.do == "clock_step"]
    aws_model = {"aws": env.timeout} if str(sc.peer_configs()["aws"].behaviour.liveness_model.value) == "aws" else {}
    checker = TraceChecker(VpnContext(aws_timeout=aws_model, clock_steps=steps, causes=causes))
    error: str | None = None
    res = None
    try:
        res = run.run(out_dir)
    except ConfigError as e:  # the event budget ran out
        out.error = str(e)
        return out
    except Exception:  # an exception escaped a node: exactly what no_datagram_crashes_a_node forbids
        error = traceback.format_exc(limit=8)
    aws_events: list[tuple[float, str]] = []
    downs: list[tuple[float, str, str]] = []
    if res is not None:
        h = hashlib.sha256()
        n = 0
        for r in res.trace:
            checker.feed(r)
            h.update(r.to_json().encode())
            h.update(b"\n")
            n += 1
            if r.event in ("tunnel_up", "tunnel_down", "node_crashed", "node_revived"):
                if r.node == "aws":
                    aws_events.append((r.t, r.event))
                if r.event == "tunnel_down":
                    downs.append((r.t, r.node, str(r.fields.get("reason"))))
        out.trace_hash, out.events = h.hexdigest(), n
        close = getattr(res.trace, "close", None)
        if callable(close):
            close()
        status = {node: str(d.get("Status")) for node, d in res.status.items() if d}
        for x in res.results:
            if not x.ok:
                out.checks[f"expect: {_expect_text(x.expectation)}"] = Outcome(False, x.detail)
    else:
        assert error is not None
        out.trace_hash = hashlib.sha256(error.encode()).hexdigest()
        status = None
    inv = checker.results(status, error)
    for name in invariants:
        out.checks[name] = inv.get(name, Outcome(None, "not a VPN invariant"))
    if error is not None and "no_datagram_crashes_a_node" not in invariants:
        out.checks["no_datagram_crashes_a_node"] = inv["no_datagram_crashes_a_node"]
    if res is not None:
        out.checks.update(_vpn_outcomes(parts, env, aws_events, downs, status or {}))
    return out


def _expect_text(e: Mapping[str, Any]) -> str:
    return json.dumps(dict(e), sort_keys=True, default=str)


def _causes(sc: Any, parts: Sequence[Part], env: VpnEnv) -> list[CauseWindow]:
    out = []
    for p in parts:
        b, e = FAULTS[p.fault].window(p.params)
        out.append(CauseWindow(b, e + env.bound, p.text()))
    for it in sc.schedule:
        if it.do in _BLACKHOLE_LIKE:
            end = it.until if it.do in ("blackhole", "pause") else (math.inf if it.do == "faults" else it.at)
            out.append(CauseWindow(it.at, end + env.bound, f"scenario {it.do} at {it.at:g}"))
    if any(not p.perfect for p in sc.links.values()):
        out.append(CauseWindow(0.0, math.inf, "the scenario's links"))
    return out


def _vpn_outcomes(
    parts: Sequence[Part],
    env: VpnEnv,
    aws_events: Sequence[tuple[float, str]],
    downs: Sequence[tuple[float, str, str]],
    status: Mapping[str, str],
) -> dict[str, Outcome]:
    names = {n for p in parts for n in FAULTS[p.fault].outcomes}
    out: dict[str, Outcome] = {}
    if not parts:
        return out
    last = max(FAULTS[p.fault].window(p.params)[1] for p in parts)
    if "recovers" in names:
        if not env.restart:
            out["recovers"] = Outcome(None, "DPDTimeoutAction is not restart: AWS waits for the CGW")
        elif last + env.bound > env.duration + 1e-9:
            out["recovers"] = Outcome(None, f"the run ends before {last:g} + {env.bound:g} s")
        else:
            up = False
            first_up: float | None = None
            for t, e in aws_events:
                if t > last + 1e-9 and first_up is None and e == "tunnel_up" and not up:
                    first_up = t
                if t <= last + 1e-9:
                    up = e == "tunnel_up"
            if up:
                first_up = last
            final = status.get("aws")
            if first_up is not None and first_up <= last + env.bound + 1e-9 and final == "UP":
                out["recovers"] = Outcome(True, f"UP {first_up - last:.3f} s after the heal at {last:g}")
            else:
                when = "never" if first_up is None else f"{first_up - last:.3f} s after the heal at {last:g}"
                out["recovers"] = Outcome(
                    False, f"AWS tunnel UP again: {when} (bound {env.bound:g} s); final Status {final}"
                )
    if "stays_up" in names:
        windows: list[tuple[float, float, Part]] = []
        others: list[tuple[float, float]] = []
        for p in parts:
            fd = FAULTS[p.fault]
            b, end = fd.window(p.params)
            if fd.stays_up is not None and "stays_up" in fd.outcomes and fd.stays_up(p.params, env):
                windows.append((b, end + env.bound, p))
            else:
                others.append((b, end + env.bound))
        # In a combined schedule, a window that a fault without that promise overlaps is not judged: the tunnel
        # may go down because of the other fault.
        judged = [w for w in windows if not any(b <= w[1] and w[0] <= e for b, e in others)]
        if not judged:
            why = (
                "another fault of the run overlaps it"
                if windows
                else f"the fault may outlast the liveness check (tolerance {env.tolerance:g} s)"
            )
            out["stays_up"] = Outcome(None, why)
        else:
            bad = [(t, n, r) for t, n, r in downs if any(b - 1e-9 <= t <= e for b, e, _ in judged)]
            out["stays_up"] = (
                Outcome(True, f"no tunnel_down in {len(judged)} window(s)")
                if not bad
                else Outcome(False, f"tunnel_down at t={bad[0][0]:g} on {bad[0][1]} ({bad[0][2]})")
            )
    return out


# ================================================================================================ worker


def execute(task: RunTask) -> dict[str, Any]:
    """Run one task (in a worker) and return its result as a JSON-able dict."""
    t0 = time.perf_counter()
    out = run_parts(task.kind, task.base, task.parts, task.seed, task.invariants)
    return result_dict(task, out, time.perf_counter() - t0)


def result_dict(task: RunTask, out: RunOutcome, seconds: float) -> dict[str, Any]:
    """The JSON document of one run (``seconds`` is wall time: reported, never hashed)."""
    return {
        "key": task.key,
        "kind": task.kind,
        "entry": task.entry,
        "fault": task.fault,
        "band": task.band,
        "seed": task.seed,
        "params": dict(task.params),
        "parts": [p.text() for p in task.parts],
        "status": out.status,
        "failed": out.failed,
        "checks": {k: o.to_json() for k, o in out.checks.items()},
        "trace_hash": out.trace_hash,
        "events": out.events,
        "error": out.error,
        "seconds": round(seconds, 6),
        "replay": task.replay,
    }


def worker_died(task: RunTask, why: str) -> dict[str, Any]:
    """The result of a run whose worker process died under it."""
    out = RunOutcome()
    d = result_dict(task, out, 0.0)
    d["status"] = "worker_died"
    d["error"] = why
    return d


def resolve_function(name: str) -> Callable[[RunTask], dict[str, Any]]:
    """``module:function`` -> the callable (how a worker finds what to run)."""
    import importlib

    mod, _, fn = name.partition(":")
    f: Callable[[RunTask], dict[str, Any]] = getattr(importlib.import_module(mod), fn)
    return f


def call(task: RunTask) -> dict[str, Any]:
    """What a backend submits: ``task.function`` applied to the task."""
    return resolve_function(task.function)(task)


# ================================================================================================ shrink


def shrink(task: RunTask, signature: Sequence[str], budget: int = 64) -> tuple[list[Part], int]:
    """Delta debugging (Zeller's ddmin, as hypothesis shrinks): the smallest sub-schedule of ``task.parts`` that
    still fails with the same checks (``signature``), and how many runs it took. Runs locally, in order."""
    want = set(signature)
    parts = list(task.parts)
    runs = 0

    def fails(sub: list[Part]) -> bool:
        nonlocal runs
        runs += 1
        out = run_parts(task.kind, task.base, sub, task.seed, task.invariants)
        return bool(want & set(out.failed))

    n = 2
    while len(parts) >= 2 and runs < budget:
        size = math.ceil(len(parts) / n)
        chunks = [parts[i : i + size] for i in range(0, len(parts), size)]
        reduced = False
        for c in chunks:
            if runs >= budget:
                break
            if len(c) < len(parts) and fails(c):
                parts, n, reduced = c, 2, True
                break
        if not reduced:
            for i in range(len(chunks)):
                if runs >= budget:
                    break
                rest = [p for j, c in enumerate(chunks) if j != i for p in c]
                if rest and len(rest) < len(parts) and fails(rest):
                    parts, n, reduced = rest, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(parts):
                break
            n = min(len(parts), n * 2)
    return parts, runs


__all__ = [
    "INVARIANTS",
    "VERSION",
    "RunOutcome",
    "RunTask",
    "VpnBase",
    "call",
    "execute",
    "result_dict",
    "run_parts",
    "shrink",
    "task_key",
    "trace_hash",
    "vpn_env",
    "worker_died",
]
