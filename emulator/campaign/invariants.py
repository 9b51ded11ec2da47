"""Invariants every run must satisfy, whatever its faults, each checked by name over a finished trace.

A campaign checks the ones its file names on every run and reports each by name; the lifecycle tests check the
trace-level ones after every step of their state machine (``tests/lifecycle/pair.py``). The checks read the
trace once, record by record (:class:`TraceChecker.feed`), so a long run is never held in memory.

=============================== ==============================================================================
name                            what must hold
=============================== ==============================================================================
``events_match_declarations``   every event matches its declaration in :mod:`cgw_peer.events` (name, fields,
                                types, choices)
``up_down_alternate``           per node, ``tunnel_up`` and ``tunnel_down`` alternate, starting with
                                ``tunnel_up`` (a crash or revival starts the node DOWN again), and every
                                ``tunnel_down`` is followed at once, at the same instant, by
                                ``routes_withdrawn`` with the same reason
``status_agrees_with_events``   the final status (VgwTelemetry ``Status``) of each running node agrees with its
                                last UP/DOWN event (a crashed process reports nothing and is skipped)
``no_dpd_timeout_while_traffic`` a ``dpd_timeout`` never reports a ``last_inbound`` older than an authenticated
                                receipt before it, nor one in the future; with the AWS liveness model, it comes
                                no earlier than ``last_inbound + DPDTimeoutSeconds`` on the node's own clock
                                (``ike-dpd.md`` §1.2: dead at the last inbound message plus the timeout)
``tunnel_down_has_cause``       every ``tunnel_down`` falls inside the effect window of something in the fault
                                schedule (a fault, or a crash/close/blackhole of the base scenario):
                                ``[start, end + horizon]``, the horizon being the run's recovery bound
``no_datagram_crashes_a_node``  no exception escaped a node, no ``driver_error`` event, no
                                ``datagram_dropped`` whose reason is ``internal_error:*`` (a defensive catch of
                                a bug)
``flows_keep_their_appliance``  TGW runs: no flow's packets (either direction) pass through a different
                                appliance while appliance mode is on, unless a fault in the schedule failed
                                that flow's appliance (or its AZ) or toggled appliance mode since the flow began
=============================== ==============================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cgw_peer.events import check_event
from emulator.trace import TraceRecord

AUTHENTICATED_RECEIPT = frozenset(
    {
        "dpd_request_received",
        "dpd_ack_received",
        "delete_received",
        "ike_sa_established",
        "child_sa_established",
    }
)
"""Events a node emits only when a fresh authenticated message from its peer arrived at that instant. A
retransmitted request answered from the cache (``response_retransmitted``) is not one: it is bitwise what a
replay would be, and earns no liveness (RFC 7296 §2.4; issue 13)."""

INVARIANTS: dict[str, str] = {
    "events_match_declarations": "every event matches its declaration in cgw_peer/events.py",
    "up_down_alternate": "tunnel_up/tunnel_down alternate per node; each tunnel_down is followed by routes_withdrawn",
    "status_agrees_with_events": "each running node's final Status agrees with its last UP/DOWN event",
    "no_dpd_timeout_while_traffic": "no dpd_timeout while authenticated traffic is younger than the timeout",
    "tunnel_down_has_cause": "every tunnel_down has a cause in the fault schedule",
    "no_datagram_crashes_a_node": "no exception out of a node, no driver_error, no internal_error drop",
    "flows_keep_their_appliance": "no flow answered through a different appliance in appliance mode",
}
"""Every invariant, by name, with a one-line description (the campaign file's ``invariants:`` names these)."""

VPN_INVARIANTS = (
    "events_match_declarations",
    "up_down_alternate",
    "status_agrees_with_events",
    "no_dpd_timeout_while_traffic",
    "tunnel_down_has_cause",
    "no_datagram_crashes_a_node",
)
TGW_INVARIANTS = ("events_match_declarations", "flows_keep_their_appliance", "no_datagram_crashes_a_node")
SHOWN = 5
"""Problems quoted per invariant in a result's detail."""


@dataclass(frozen=True)
class CauseWindow:
    """Something in the schedule that may bring a tunnel down from ``start`` until ``end``."""

    start: float
    end: float
    label: str


@dataclass
class Outcome:
    """One named check of one run: ``ok`` (None: does not apply to this run) and a human-readable detail."""

    ok: bool | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass
class VpnContext:
    """What the trace checks need besides the trace (all optional; a missing part skips what needs it)."""

    aws_timeout: Mapping[str, float] = field(default_factory=dict)
    """Node -> DPDTimeoutSeconds, for nodes whose liveness model is AWS's."""
    clock_steps: Sequence[tuple[float, str, float]] = ()
    """(instant, node, seconds): the node's clock jumped (``clock_step``), so its own instants differ."""
    causes: Sequence[CauseWindow] | None = None
    """The windows in which a tunnel_down has a cause (None: ``tunnel_down_has_cause`` is not checked)."""


class TraceChecker:
    """Checks the trace-level invariants over records fed one at a time; :meth:`results` decides."""

    def __init__(self, ctx: VpnContext | None = None) -> None:
        self.ctx = ctx or VpnContext()
        self.problems: dict[str, list[str]] = {name: [] for name in VPN_INVARIANTS}
        self.counts: dict[str, int] = dict.fromkeys(VPN_INVARIANTS, 0)
        self.up: dict[str, bool] = {}
        self.crashed: set[str] = set()
        self.last_auth: dict[str, float] = {}
        self.pending_withdraw: dict[str, TraceRecord] = {}
        self.offset: dict[str, float] = {}
        self._steps = sorted(self.ctx.clock_steps)
        self._step_i = 0

    def _bad(self, name: str, text: str) -> None:
        self.counts[name] += 1
        if len(self.problems[name]) < SHOWN:
            self.problems[name].append(text)

    def feed(self, r: TraceRecord) -> None:
        """Look at the next record (in trace order)."""
        steps = self._steps
        while self._step_i < len(steps) and steps[self._step_i][0] <= r.t:
            _, node, by = steps[self._step_i]
            self.offset[node] = self.offset.get(node, 0.0) + by
            self._step_i += 1
        for p in check_event(r.event, r.fields):
            self._bad("events_match_declarations", f"t={r.t} {r.node}: {p}")
        pw = self.pending_withdraw.pop(r.node, None)
        if pw is not None and (r.event != "routes_withdrawn" or r.fields != pw.fields or r.t != pw.t):
            self._bad("up_down_alternate", f"t={pw.t} {pw.node}: tunnel_down not followed by routes_withdrawn")
        ev = r.event
        if ev in ("node_revived", "node_crashed"):
            self.up[r.node] = False
            self.last_auth.pop(r.node, None)
            if ev == "node_crashed":
                self.crashed.add(r.node)
            else:
                self.crashed.discard(r.node)
        elif ev == "tunnel_up":
            if self.up.get(r.node):
                self._bad("up_down_alternate", f"t={r.t} {r.node}: tunnel_up while UP")
            self.up[r.node] = True
        elif ev == "tunnel_down":
            if not self.up.get(r.node):
                self._bad("up_down_alternate", f"t={r.t} {r.node}: tunnel_down while DOWN")
            self.up[r.node] = False
            self.pending_withdraw[r.node] = r
            causes = self.ctx.causes
            if causes is not None and not any(c.start - 1e-9 <= r.t <= c.end + 1e-9 for c in causes):
                self._bad(
                    "tunnel_down_has_cause",
                    f"t={r.t} {r.node}: tunnel_down ({r.fields.get('reason')}) with no fault in the schedule "
                    f"that could cause it ({', '.join(c.label for c in causes) or 'no faults'})",
                )
        elif ev in AUTHENTICATED_RECEIPT:
            self.last_auth[r.node] = r.t + self.offset.get(r.node, 0.0)
        elif ev == "dpd_timeout":
            li = r.fields.get("last_inbound")
            now = r.t + self.offset.get(r.node, 0.0)  # the node's own clock, as its fields are
            seen = self.last_auth.get(r.node)
            if isinstance(li, int | float):
                if seen is not None and li < seen - 1e-6:
                    self._bad(
                        "no_dpd_timeout_while_traffic",
                        f"t={r.t} {r.node}: dpd_timeout last_inbound {li} older than a receipt at {seen}",
                    )
                if li > now + 1e-6:
                    self._bad("no_dpd_timeout_while_traffic", f"t={r.t} {r.node}: last_inbound {li} in the future")
                timeout = self.ctx.aws_timeout.get(r.node)
                if timeout is not None and r.fields.get("model") == "aws" and now - li < timeout - 1e-6:
                    self._bad(
                        "no_dpd_timeout_while_traffic",
                        f"t={r.t} {r.node}: declared dead {now - li:.3f} s after the last authenticated message "
                        f"(DPDTimeoutSeconds {timeout:g})",
                    )
        elif ev == "driver_error":
            self._bad("no_datagram_crashes_a_node", f"t={r.t} {r.node}: driver_error {r.fields.get('error')}")
        elif ev == "datagram_dropped":
            reason = str(r.fields.get("reason", ""))
            if reason.startswith("internal_error"):
                self._bad("no_datagram_crashes_a_node", f"t={r.t} {r.node}: datagram_dropped {reason}")

    def results(self, status: Mapping[str, str] | None = None, error: str | None = None) -> dict[str, Outcome]:
        """The verdict of each trace-level invariant. ``status``: node -> final ``Status`` (UP/DOWN) of the running
        process (None: not checked); ``error``: an exception that escaped a node during the run."""
        for node, pw in list(self.pending_withdraw.items()):
            self._bad("up_down_alternate", f"t={pw.t} {node}: tunnel_down not followed by routes_withdrawn")
        self.pending_withdraw.clear()
        if error is not None:
            self._bad("no_datagram_crashes_a_node", f"an exception escaped a node: {error}")
        out: dict[str, Outcome] = {}
        for name in VPN_INVARIANTS:
            if name == "status_agrees_with_events":
                continue
            if name == "tunnel_down_has_cause" and self.ctx.causes is None:
                out[name] = Outcome(None, "no fault schedule to check against")
                continue
            out[name] = self._outcome(name)
        if status is None:
            out["status_agrees_with_events"] = Outcome(None, "no final status")
        else:
            for node, have in status.items():
                if node in self.crashed:
                    continue  # a killed process reports nothing
                want = "UP" if self.up.get(node) else "DOWN"
                if have != want:
                    self._bad("status_agrees_with_events", f"{node}: status {have} but the last event says {want}")
            out["status_agrees_with_events"] = self._outcome("status_agrees_with_events")
        return out

    def _outcome(self, name: str) -> Outcome:
        n = self.counts[name]
        if not n:
            return Outcome(True, "holds")
        more = f" (and {n - SHOWN} more)" if n > SHOWN else ""
        return Outcome(False, "; ".join(self.problems[name]) + more)


def check_trace(records: Iterable[TraceRecord], status: Mapping[str, str] | None = None) -> list[str]:
    """The problems of a finished trace against the trace-level invariants that need nothing but the trace
    (events_match_declarations, up_down_alternate, status_agrees_with_events, the ``last_inbound`` rules of
    no_dpd_timeout_while_traffic, no_datagram_crashes_a_node); empty when all hold. ``status``: node -> final
    Status of the running process."""
    checker = TraceChecker()
    for r in records:
        checker.feed(r)
    res = checker.results(status)
    return [f"{name}: {o.detail}" for name, o in res.items() if o.ok is False]


# ============================================================================================= TGW flows


@dataclass
class ApplianceEvent:
    """A fault that may move a flow to another appliance legitimately: at ``t``, ``appliances`` failed (or
    recovered), or appliance mode was toggled (``toggle``)."""

    t: float
    appliances: frozenset[str] = frozenset()
    toggle: bool = False


class ApplianceChecker:
    """``flows_keep_their_appliance`` over a TGW run: fed (time, flow key, appliance or None, appliance mode on)."""

    def __init__(self, events: Sequence[ApplianceEvent]) -> None:
        self.events = sorted(events, key=lambda e: e.t)
        self.flows: dict[Any, tuple[str, float]] = {}
        """Flow -> (its appliance, since when)."""
        self.count = 0
        self.problems: list[str] = []

    def _excused(self, appliance: str, since: float, now: float) -> bool:
        for e in self.events:
            if e.t > now + 1e-9:
                break
            if e.t >= since - 1e-9 and (e.toggle or appliance in e.appliances):
                return True
        return False

    def feed(self, t: float, flow: Any, appliance: str | None, appliance_mode: bool) -> None:
        if appliance is None:
            return
        if not appliance_mode:
            self.flows.pop(flow, None)  # no symmetry promised: start again when it is on
            return
        have = self.flows.get(flow)
        if have is None:
            self.flows[flow] = (appliance, t)
            return
        if have[0] != appliance:
            if not self._excused(have[0], have[1], t):
                self.count += 1
                if len(self.problems) < SHOWN:
                    self.problems.append(f"t={t:g} flow {flow}: through {appliance}, before through {have[0]}")
            self.flows[flow] = (appliance, t)

    def result(self) -> Outcome:
        if not self.count:
            return Outcome(True, "holds")
        more = f" (and {self.count - SHOWN} more)" if self.count > SHOWN else ""
        return Outcome(False, "; ".join(self.problems) + more)
