"""Runs the battery: selection (``--only``), order, preconditions, bounds, captures, results.

Every run starts with the start-up scenario (the device brings the tunnel up, or AWS does), then runs the
selected checks in :data:`~emulator.conformance.checks.CHECKS` order. Before a check that needs a tunnel, a
missing one is brought back by an AWS-initiated negotiation. A check never runs longer than its
``hard_limit``; an exception inside a check is a ``fail`` naming it (the battery goes on), except the two
configuration errors (:class:`~emulator.conformance.probe.Unreachable`,
:class:`~emulator.conformance.scenarios.PskMismatch`), which stop the run.

Each result carries its own capture: the datagrams of the check's run and of the shared scenarios it read,
preceded by the first messages (Main Mode / IKE_SA_INIT) of every IKE SA those datagrams belong to, so tshark
can decrypt them with the session's key tables (IKEv1 needs Main Mode messages 3 and 4 for its IVs).
"""

from __future__ import annotations

import asyncio
import fnmatch
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.conformance.checks import CHECKS
from emulator.conformance.model import CheckResult, CheckSpec, Outcome, Verdict, packet_refs, render_packets
from emulator.conformance.probe import Probe, Unreachable
from emulator.conformance.scenarios import PskMismatch, prepare_startup, startup
from emulator.conformance.session import CheckContext, Datagram, EventRecord, Session, Settings, Window

Progress = Callable[[str, CheckSpec | None, CheckResult | None], None]
"""``(phase, spec, result)``: phase ``start`` (spec about to run), ``done`` (result), ``note`` (spec None)."""


@dataclass
class CheckRun:
    """A result plus the datagram sequence numbers of its capture."""

    result: CheckResult
    frames: list[int] = field(default_factory=list)


@dataclass
class Report:
    """A finished battery."""

    settings: Settings
    runs: list[CheckRun]
    started: float
    """Wall-clock start (Unix time)."""
    duration: float
    session: Session
    notes: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[CheckResult]:
        return [r.result for r in self.runs]

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for r in self.results:
            out[r.verdict.value] += 1
        return out

    @property
    def failed(self) -> bool:
        return any(r.verdict is Verdict.FAIL for r in self.results)


def select_checks(version: int, only: Sequence[str] | None) -> tuple[list[CheckSpec], list[CheckSpec]]:
    """``(to run, deselected)`` among the checks for IKE ``version``. ``only``: globs matched against the IDs,
    case-insensitively (``AWS-DPD-*``, ``aws-p1-0[12]``); a glob that matches nothing is an error."""
    mine = [c for c in CHECKS if version in c.versions]
    if not only:
        return mine, []
    pats = [p.strip().upper() for item in only for p in item.split(",") if p.strip()]
    for p in pats:
        if not any(fnmatch.fnmatchcase(c.id, p) for c in mine):
            from emulator.errors import ConfigError

            raise ConfigError(f"only: {p!r} matches no IKEv{version} check (IDs: {', '.join(c.id for c in mine)})")
    run = [c for c in mine if any(fnmatch.fnmatchcase(c.id, p) for p in pats)]
    return run, [c for c in mine if c not in run]


def check_reachable(settings: Settings) -> None:
    """Raise :class:`Unreachable` when the kernel already knows the device cannot be reached (no route, or the
    local address is not ours); silence is a matter for the checks, not an error."""
    fam = socket.AF_INET6 if ":" in settings.cgw[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            s.bind((settings.local[0], 0))
        except OSError as e:
            from emulator.errors import ConfigError

            raise ConfigError(
                f"local: cannot use {settings.local[0]}: {e.strerror} (not an address of this machine?)"
            ) from None
        try:
            s.connect(settings.cgw)
        except OSError as e:
            raise Unreachable(settings.cgw, e) from None


async def run_battery(
    settings: Settings,
    *,
    only: Sequence[str] | None = None,
    progress: Progress | None = None,
    trace: Callable[[EventRecord], None] | None = None,
    session: Session | None = None,
) -> Report:
    """Run the battery against ``settings.cgw`` (see the module docstring)."""
    to_run, skipped = select_checks(settings.ike_version, only)
    check_reachable(settings)
    s = session or Session(settings, trace=trace)
    wall0 = time.time()
    note = progress or (lambda phase, spec, result: None)
    await s.open()
    prepare_startup(s)
    runs: list[CheckRun] = []
    try:
        knock = await _knock(s)
        note("note", None, None)
        s.current_check = "startup"
        try:
            await s.scenario("startup", lambda: startup(s))
            _raise_unreachable(s)
            knock._check_error()  # an ICMP error that came later (ARP gives up after about 3 s)
        finally:
            knock.close()
        for spec in to_run:
            note("start", spec, None)
            run = await _run_one(s, spec)
            runs.append(run)
            note("done", spec, run.result)
        _recheck(s, runs)
    finally:
        s.current_check = "shutdown"
        await s.close()
    for spec in skipped:
        runs.append(CheckRun(_result(spec, Outcome(Verdict.SKIP, "not selected (--only)"), 0.0, 0.0)))
    order = {c.id: i for i, c in enumerate(CHECKS)}
    runs.sort(key=lambda r: order[r.result.id])
    return Report(settings, runs, wall0, time.time() - wall0, s)


async def _knock(s: Session) -> Probe:
    """Send the device one NAT keepalive (a single 0xFF octet, RFC 3948 §2.3: ignored by IKE implementations)
    from a connected socket, which then hears of the ICMP errors for it: port unreachable at once (checked
    here), host unreachable once ARP gives up (checked after start-up). Either means there is nothing to test."""
    p = await Probe.open(s, s.settings.cgw)
    try:
        await p.stream.send(b"\xff")
        await p.recv(0.5)
    except BaseException:
        p.close()
        raise
    return p


def _raise_unreachable(s: Session) -> None:
    """ICMP errors the driver's sockets got for every datagram to the device: nothing there at all."""
    errs = set(s.send_errors)
    if errs and not any(d.from_device for d in s.datagrams):
        raise Unreachable(s.settings.cgw, OSError(_errno(sorted(errs)[0]), sorted(errs)[0]))


def _errno(name: str) -> int:
    import errno

    return int(getattr(errno, name, 0))


async def _run_one(s: Session, spec: CheckSpec) -> CheckRun:
    s.current_check = spec.id
    t0 = s.now()
    ctx = CheckContext(s, spec, len(s.datagrams), len(s.events), t0)
    outcome = await _precondition(s, spec)
    if outcome is None:
        try:
            outcome = await asyncio.wait_for(spec.fn(ctx), spec.hard_limit)
        except (Unreachable, PskMismatch):
            raise
        except TimeoutError:
            outcome = Outcome(Verdict.FAIL, f"no decision within {spec.hard_limit:.0f} s (the check's hard limit)")
        except Exception as e:  # a bug in a check must not stop the battery
            tb = traceback.format_exc(limit=6)
            outcome = Outcome(Verdict.FAIL, f"internal error in the check: {e!r}", tb)
        finally:
            s.clear_impairments()
    if outcome.verdict is not Verdict.SKIP and not any(d.from_device for d in s.datagrams):
        # Nothing ever came back: whatever the check concluded, it concluded it from silence.
        if "no answer" not in outcome.summary:
            outcome = Outcome(
                Verdict.FAIL,
                f"no answer: the device has not sent a single datagram ({outcome.summary})",
                outcome.details,
                dict(outcome.measurements),
            )
        elif outcome.verdict is not Verdict.FAIL:
            outcome = Outcome(Verdict.FAIL, outcome.summary, outcome.details, dict(outcome.measurements))
    end = len(s.datagrams)
    ctx.windows.append(Window(ctx.start_dg, end))
    result = _result(spec, outcome, t0, s.now() - t0)
    frames = capture_frames(s, ctx.windows, outcome)
    _render(result, frames)
    return CheckRun(result, frames)


async def _precondition(s: Session, spec: CheckSpec) -> Outcome | None:
    """None when the check can run; otherwise the outcome to report without running it."""
    if spec.needs_child and (s.settings.ike_only or s.cache.get("child_broken")):
        why = (
            "--ike-only: the device cannot install IPsec SAs"
            if s.settings.ike_only
            else "the device never completed a Child SA (see AWS-CHD-01)"
        )
        return Outcome(Verdict.UNSUPPORTED, f"needs an IPsec SA pair: {why}")
    if not spec.needs_tunnel:
        return None
    ike_enough = s.settings.ike_only or (not spec.needs_child)
    up = s.ike_up() if ike_enough else s.tunnel_up()
    if up:
        return None
    if s.cache.get("aws_initiation_failed") and not any(d.from_device for d in s.datagrams):
        return Outcome(Verdict.FAIL, "no answer: the device has not sent a single datagram (no tunnel to test)")
    rec = await s.fresh_tunnel(ike_only=ike_enough or bool(s.cache.get("child_broken")))
    if rec is not None:
        return None
    if not any(d.from_device for d in s.datagrams):
        return Outcome(Verdict.FAIL, "no answer: the device has not sent a single datagram (no tunnel to test)")
    if s.ike_up() and not s.settings.ike_only:
        s.cache["child_broken"] = True
        return Outcome(Verdict.UNSUPPORTED, "needs an IPsec SA pair; the device completes IKE but no Child SA")
    return Outcome(Verdict.FAIL, "no tunnel: AWS's initiation was not answered or was refused (no answer)")


def _result(spec: CheckSpec, o: Outcome, started: float, duration: float) -> CheckResult:
    return CheckResult(
        id=spec.id,
        title=spec.title,
        group=spec.group,
        level=spec.level,
        verdict=o.verdict,
        summary=o.summary,
        details=o.details,
        cites=spec.cites,
        requirement=spec.requirement,
        bound=spec.bound,
        started=started,
        duration=duration,
        measurements=dict(o.measurements),
    )


def capture_frames(s: Session, windows: Sequence[Window], outcome: Outcome | None = None) -> list[int]:
    """The datagram numbers of a check's capture (see the module docstring), in order."""
    seqs: set[int] = set()
    for w in windows:
        seqs.update(range(w.start, min(w.end, len(s.datagrams))))
    if outcome is not None:
        seqs.update(q for q in packet_refs(outcome.summary + outcome.details) if q < len(s.datagrams))
    spis = {s.datagrams[q].info.spi_i for q in seqs if s.datagrams[q].info.kind == "ike"}
    first = min(seqs) if seqs else 0
    for d in s.datagrams[:first]:
        if d.info.kind == "ike" and d.info.spi_i in spis and _setup_message(d):
            seqs.add(d.seq)
    return sorted(seqs)


def _setup_message(d: Datagram) -> bool:
    """Main Mode (IKEv1) and IKE_SA_INIT / IKE_AUTH (IKEv2): what tshark needs to decrypt the rest."""
    return d.info.exchange in (2, 34, 35)


def _render(result: CheckResult, frames: list[int]) -> None:
    pos = {seq: i + 1 for i, seq in enumerate(frames)}
    result.summary = render_packets(result.summary, pos.get)
    result.details = render_packets(result.details, pos.get)
    result.frames = len(frames)


def _recheck(s: Session, runs: list[CheckRun]) -> None:
    """Checks that asked to look again at the end of the run (traffic on SAs that should be gone)."""
    fns: dict[str, Callable[[Session], Outcome | None]] = s.cache.get("rechecks", {})
    for run in runs:
        fn = fns.get(run.result.id)
        if fn is None:
            continue
        try:
            o = fn(s)
        except Exception as e:  # pragma: no cover - defensive
            o = Outcome(Verdict.FAIL, f"internal error in the end-of-run check: {e!r}")
        if o is None:
            continue
        run.result.verdict = o.verdict
        pos = {seq: i + 1 for i, seq in enumerate(run.frames)}
        run.result.summary = render_packets(o.summary, pos.get)
        run.result.details = render_packets(o.details, pos.get)


def results_json(report: Report) -> dict[str, Any]:
    """The whole report as JSON (``--json``)."""
    s = report.settings
    return {
        "tool": "awsnetemu conformance",
        "device": f"{s.cgw[0]}:{s.cgw[1]}",
        "local": f"{s.local[0]}:{s.local[1]}",
        "ike_version": s.ike_version,
        "ike_only": s.ike_only,
        "profile": s.profile.to_json(),
        "timers": s.timers.to_json(),
        "started": report.started,
        "duration": round(report.duration, 3),
        "counts": report.counts(),
        "notes": report.notes,
        "results": [r.to_json() for r in report.results],
    }
