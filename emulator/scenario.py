"""Scenario files: a VPN tunnel pair in virtual time, a fault schedule, and expectations to check.

The format (YAML; every key is optional unless marked *required*)::

    name: dpd-timeout-clear          # names the output files (default: the file's stem, see "Names" below)
    description: free text
    seed: 1                          # an integer; seeds every link and both peers' RNGs
    duration: 300                    # virtual seconds to run, finite, > 0 (default 600)
    max_events: 1000000              # event budget (default emulator.validate.DEFAULT_MAX_EVENTS); see below
    ike_version: 1                   # 1 | 2
    psk: examplePSK.123              # shared by both sides; AWS's PreSharedKey rule (8-64 of A-Za-z0-9._,
                                     #   not starting with 0). Default: TunnelOptions.PreSharedKey or a fixed key
    tunnel:                          # AWS tunnel options, AWS spelling (VpnTunnelOptionsSpecification)
      DPDTimeoutSeconds: 30          #   without IKEVersions, they default to [ikev<ike_version>], so
      DPDTimeoutAction: clear        #   StartupAction: start works with ike_version 2 alone
    aws:                             # the AWS tunnel endpoint
      address: 203.0.113.10          # default 203.0.113.10 (the two addresses differ, same family)
      profile: aws                   # behaviour profile: aws | strongswan | libreswan | device
      behaviour: {dpd_delay: 10}     # overrides (cgw_peer.config.Behaviour field names)
      proposals: []                  # strongSwan-style IKE proposals (empty: derived from `tunnel`)
      esp_proposals: []
      initiate: null                 # true | false | null: override who initiates at start-up
      force_encap: false             # true | false
      nat_t: true                    # true | false
      local_ts: 0.0.0.0/0            # traffic selectors (CIDR)
      remote_ts: 0.0.0.0/0
    cgw:                             # the customer gateway; same keys, default address 198.51.100.20,
      profile: strongswan            #   default profile strongswan
    links:                           # fault plans per direction (emulator.link.FaultPlan fields)
      cgw->aws: {delay: 0.01}
      aws->cgw: {delay: 0.01, drop_kinds: [dpd_ack], drop_kinds_window: [100, 200]}
    schedule:                        # timed actions; `at` is a finite number >= 0
      - {at: 100, do: blackhole, direction: both, until: 200}   # direction: both | cgw->aws | aws->cgw
      - {at: 100, do: faults, direction: cgw->aws, plan: {loss: 0.5}}   # replace a direction's fault plan
      - {at: 100, do: crash, node: cgw}
      - {at: 160, do: revive, node: cgw}       # a fresh process: new SAs, new cookies
      - {at: 160, do: revive, node: cgw, initiate: false}   # ... that waits for the other side
      - {at: 50, do: initiate, node: aws}
      - {at: 50, do: close, node: cgw}         # clean shutdown (Deletes)
      - {at: 70, do: esp, node: aws, every: 1, until: 90}      # inbound ESP seen (liveness traffic)
      - {at: 80, do: pause, node: cgw, until: 95}   # SIGSTOP: no timers; inputs wait (queue: 256) until
                                                  #   `until`; resume: datagrams-first | timers-first
      - {at: 80, do: clock_step, node: aws, by: 45}   # the node's clock jumps (negative: backwards)
      - {at: 80, do: nat_rebind, node: cgw, port: 40000}   # its NAT's mappings change: new source port
                                                  #   (counted up from `port`; `address`: a new public IP too)
    tgw:                             # optional: a TGW whose VPN attachment follows the AWS side's tunnel state
      topology: topologies/vpn-tgw.yaml   # tgw_dataplane YAML (relative to this file) or AWS API JSON
      attachment: tgw-attach-vpn     # the VPN attachment this tunnel belongs to
      tunnel: tunnel1                # tunnel_up -> routes installed; tunnel_down/routes_withdrawn -> removed
      probes:                        # flows sent through the dataplane at given times
        - {at: 50, name: before, flow: "tcp 10.0.1.10:40000 > 192.168.10.5:443"}
        - {at: 150, name: after, flow: "tcp 10.0.1.10:40000 > 192.168.10.5:443", from: i-app}
    expect:                          # checked while the run goes; all must hold
      - event: dpd_timeout           # *required* in an event expectation: an event of cgw_peer.events
        node: aws                    # aws | cgw | tgw (default: any)
        fields: {action: clear}      # every given field must match (fields the event declares; null: absent)
        at: 130                      # exact virtual time (tolerance `tolerance`, default 1e-6)
        within: [120, 140]           # or a window
        nth: 1                       # which occurrence `at`/`within` apply to (1-based; default 1)
        count: 1                     # exact number of matching events (or min / max)
      - event: tunnel_up
        node: aws
        min: 2
      - status: {node: aws, Status: DOWN}      # the tunnel status at the end of the run (VgwTelemetry keys)
      - absent: {event: dpd_timeout, node: cgw}
      - tgw_flow: {name: after, verdict: dropped, reason: no_route}   # a TGW probe's verdict

A file with a ``connection:`` section instead describes a Site-to-Site VPN connection with two tunnels on a TGW
and traffic through it: :mod:`emulator.connection` has its format.

Validation. Everything is checked when the file is loaded, before anything runs (:mod:`emulator.validate`):
unknown keys, types (booleans are YAML booleans: ``initiate: 'no'`` is an error, not "yes"), ranges,
finiteness (NaN and infinity are refused, except an open-ended window's end: ``until: .inf``), AWS's rules for
the tunnel options and the PSK, the peers' proposals (both engines are built once), expectations (an
``event``/``absent`` naming an event or a field that :mod:`cgw_peer.events` does not declare, a ``fields``
value of the wrong type, ``nth`` without ``at``/``within``, ``min`` > ``max``...). Each error is one line naming
the field (``expect[3].absent.event``) and the allowed values.

Bounded runs. Every period the run repeats must be at least :data:`emulator.validate.MIN_PERIOD` (10 ms):
DPD delay/interval/timeout, each retransmission wait, restart backoff, NAT keepalive, the ``esp`` action's
``every`` (the reasons are in :mod:`emulator.validate`). The trace streams to disk (``--out``'s ``NAME.jsonl``, or
an anonymous temporary file) instead of memory, and the run stops with a configuration error (exit 2) once it
records more than ``max_events`` events or runs more than ``max_events`` scheduled callbacks (``awsnetemu run
--max-events N`` overrides the file's value).

Names. ``name`` names the output files inside ``--out``, so it must be
:data:`emulator.validate.NAME_RULE`; a name such as ``../x`` or ``a/b`` is refused. The default, the file's
stem, is made safe instead (other characters become ``_``).

`awsnetemu run FILE` exits 0 when every expectation holds, 1 when one does not, 2 on a bad file or a run past its
budget (the message names the field). ``--json`` prints machine-readable results; ``--out DIR`` writes
``NAME.pcap``, ``NAME.jsonl`` (the event trace), ``NAME-timeline.txt`` and ``NAME-keys/`` (Wireshark decryption
tables: IKEv1, IKEv2 and ``esp_sa`` for the IPsec SAs).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import math
import os
import random
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any

from cgw_peer import events as ev
from cgw_peer.lifecycle.status import PhaseState, Status
from emulator import validate as v
from emulator.errors import ConfigError
from emulator.keytables import KeyTables
from emulator.link import FaultPlan
from emulator.pcap import LINKTYPE_RAW, PcapWriter
from emulator.scheduler import BudgetExceeded
from emulator.simnet import SimNetwork
from emulator.trace import BaseTrace, StreamingTrace, Trace, TraceRecord

TOP_KEYS = {
    "name",
    "description",
    "seed",
    "duration",
    "max_events",
    "ike_version",
    "psk",
    "tunnel",
    "aws",
    "cgw",
    "links",
    "schedule",
    "expect",
    "tgw",
}
TGW_KEYS = {"topology", "attachment", "tunnel", "probes"}
PROBE_KEYS = {"at", "name", "flow", "from"}
SIDE_KEYS = {
    "address",
    "profile",
    "behaviour",
    "proposals",
    "esp_proposals",
    "initiate",
    "force_encap",
    "nat_t",
    "local_ts",
    "remote_ts",
}
NODES = ("aws", "cgw")
DIRECTIONS = ("both", "cgw->aws", "aws->cgw")
LINK_DIRECTIONS = ("cgw->aws", "aws->cgw")
ACTION_KEYS: dict[str, frozenset[str]] = {
    "blackhole": frozenset({"direction", "until"}),
    "faults": frozenset({"direction", "plan"}),
    "crash": frozenset({"node"}),
    "revive": frozenset({"node", "initiate"}),
    "initiate": frozenset({"node"}),
    "close": frozenset({"node"}),
    "esp": frozenset({"node", "every", "until"}),
    "pause": frozenset({"node", "until", "queue", "resume"}),
    "clock_step": frozenset({"node", "by"}),
    "nat_rebind": frozenset({"node", "port", "address"}),
}
"""Each schedule action and the keys it takes besides ``at`` and ``do``."""
ACTIONS = set(ACTION_KEYS)
EXPECT_NODES = ("aws", "cgw", "tgw")
EVENT_EXPECT_KEYS = {"event", "node", "fields", "at", "within", "nth", "count", "min", "max", "tolerance"}
STATUS_KEYS: dict[str, tuple[str, ...] | None] = {
    "Status": tuple(s.value for s in Status),
    "StatusMessage": None,
    "LastStatusChange": None,
    "TunnelIKEPhase1State": tuple(p.value for p in PhaseState),
    "TunnelIKEPhase2State": tuple(p.value for p in PhaseState),
}
"""The keys of a ``status`` expectation (VgwTelemetry and the tunnel log,
:class:`cgw_peer.lifecycle.status.TunnelStatus`) and their allowed values (None: free text / a number)."""
DEFAULT_ADDRESSES = {"aws": "203.0.113.10", "cgw": "198.51.100.20"}
DEFAULT_PROFILES = {"aws": "aws", "cgw": "strongswan"}
PCAP_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: virtual t=0 in captures
HIT_TIMES_SHOWN = 20
"""An expectation keeps the instants of its first matches for its message, no more (memory stays bounded)."""

TIMELINE_SKIP: frozenset[str] = frozenset(f.__name__ for f in (ev.datagram_sent, ev.sa_keys))
"""Events the timeline leaves out by default: one line per datagram and key material are noise to a reader.
Named by their builders in :mod:`cgw_peer.events`, so a rename there cannot leave a stale name here."""


# ============================================================================================== results


@dataclass
class ExpectResult:
    expectation: dict[str, Any]
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "ok": self.ok, "detail": self.detail}


@dataclass
class ScenarioResult:
    name: str
    ok: bool
    results: list[ExpectResult]
    trace: BaseTrace
    """The run's events; a :class:`StreamingTrace` (iterating it reads the trace file back)."""
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "expectations": [r.to_json() for r in self.results],
            "status": self.status,
            "outputs": self.outputs,
            "events": len(self.trace),
        }


# ========================================================================================= expectations


class Expectation:
    """One ``expect:`` item, checked as records arrive (:meth:`feed`) and decided at the end (:meth:`result`).
    Its state is a few counters, whatever the length of the run."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def feed(self, rec: TraceRecord) -> None:
        """Look at one record."""

    def result(self, status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
        raise NotImplementedError


def _event_filter(m: Mapping[Any, Any], where: str) -> tuple[str, str | None, dict[str, Any]]:
    """(event, node, fields) of an ``event`` or ``absent`` expectation, checked against :mod:`cgw_peer.events`."""
    name = m.get("event")
    if name is None:
        v.fail(f"{where}.event", "required")
    problem = ev.check_reference(name)
    if problem is not None:
        v.fail(f"{where}.event", problem)
    node = None if m.get("node") is None else v.choice(m["node"], f"{where}.node", EXPECT_NODES)
    fields = dict(v.mapping(m.get("fields"), f"{where}.fields"))
    problem = ev.check_reference(name, fields)
    if problem is not None:
        v.fail(f"{where}.fields", problem)
    spec = ev.EVENTS[name]
    for k, val in fields.items():
        fs = spec.fields.get(k)
        # None matches a record without the field (optional fields are left out, never null).
        if fs is not None and val is not None and not fs.accepts(val):
            v.fail(f"{where}.fields.{k}", f"{val!r} can never match: {name}.{k} is {fs.type_text}")
    return name, node, fields


def _matches(rec: TraceRecord, event: str, node: str | None, fields: Mapping[str, Any]) -> bool:
    if rec.event != event or (node is not None and rec.node != node):
        return False
    return all(rec.fields.get(k) == want for k, want in fields.items())


class EventExpectation(Expectation):
    """``event:`` with ``at`` / ``within`` / ``nth`` / ``count`` / ``min`` / ``max``."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        super().__init__(raw)
        v.keys(raw, where, EVENT_EXPECT_KEYS)
        self.event, self.node, self.fields = _event_filter(raw, where)
        self.at = None if "at" not in raw else v.number(raw["at"], f"{where}.at")
        self.within = None if "within" not in raw else v.window(raw["within"], f"{where}.within")
        if self.within is not None and math.isinf(self.within[1]):
            v.fail(f"{where}.within", f"the end must be finite, got {raw['within']!r}")
        has_time = self.at is not None or self.within is not None
        if "nth" in raw and not has_time:
            v.fail(f"{where}.nth", "only with at or within (it says which occurrence they apply to)")
        self.nth = v.integer(raw.get("nth", 1), f"{where}.nth", minimum=1)
        self.count = None if "count" not in raw else v.integer(raw["count"], f"{where}.count", minimum=0)
        self.min = None if "min" not in raw else v.integer(raw["min"], f"{where}.min", minimum=0)
        self.max = None if "max" not in raw else v.integer(raw["max"], f"{where}.max", minimum=0)
        if self.min is not None and self.max is not None and self.min > self.max:
            v.fail(f"{where}.min", f"must be <= max ({self.max}), got {self.min}")
        self.tol = v.number(raw.get("tolerance", 1e-6), f"{where}.tolerance", minimum=0.0)
        self.n = 0
        self.times: list[float] = []
        self.nth_t: float | None = None

    def feed(self, rec: TraceRecord) -> None:
        if _matches(rec, self.event, self.node, self.fields):
            self.n += 1
            if len(self.times) < HIT_TIMES_SHOWN:
                self.times.append(rec.t)
            if self.n == self.nth:
                self.nth_t = rec.t

    def _times(self) -> str:
        shown = [round(t, 6) for t in self.times]
        return f"{shown}{' ...' if self.n > len(self.times) else ''}"

    def result(self, status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
        e, n = self.raw, self.n
        if self.count is not None and n != self.count:
            return ExpectResult(e, False, f"expected {self.count}, found {n} at {self._times()}")
        if self.min is not None and n < self.min:
            return ExpectResult(e, False, f"expected at least {self.min}, found {n}")
        if self.max is not None and n > self.max:
            return ExpectResult(e, False, f"expected at most {self.max}, found {n}")
        has_time = self.at is not None or self.within is not None
        if not n and (has_time or (self.count is None and self.min is None and self.max is None)):
            return ExpectResult(e, False, "no matching event")
        if has_time:
            if self.nth_t is None:
                return ExpectResult(e, False, f"only {n} matching events, wanted occurrence {self.nth}")
            t, tol = self.nth_t, self.tol
            if self.at is not None and abs(t - self.at) > tol:
                return ExpectResult(e, False, f"at t={t:.6f}, expected {self.at:.6f}")
            if self.within is not None:
                lo, hi = self.within
                if not lo - tol <= t <= hi + tol:
                    return ExpectResult(e, False, f"at t={t:.6f}, expected within [{lo:g}, {hi:g}]")
            return ExpectResult(e, True, f"at t={t:.6f}")
        return ExpectResult(e, True, f"found {n}")


class AbsentExpectation(Expectation):
    """``absent: {event, node, fields}``: no matching record."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        super().__init__(raw)
        v.keys(raw, where, {"absent"})
        m = v.mapping(raw["absent"], f"{where}.absent", none_is_empty=False)
        v.keys(m, f"{where}.absent", {"event", "node", "fields"})
        self.event, self.node, self.fields = _event_filter(m, f"{where}.absent")
        self.n = 0
        self.first_t: float | None = None

    def feed(self, rec: TraceRecord) -> None:
        if _matches(rec, self.event, self.node, self.fields):
            self.n += 1
            if self.first_t is None:
                self.first_t = rec.t

    def result(self, status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
        if self.n:
            return ExpectResult(self.raw, False, f"found {self.n}, first at t={self.first_t:.6f}")
        return ExpectResult(self.raw, True, "none found")


class StatusExpectation(Expectation):
    """``status: {node, Status, ...}``: the tunnel status at the end of the run."""

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        super().__init__(raw)
        v.keys(raw, where, {"status"})
        w = f"{where}.status"
        want = dict(v.mapping(raw["status"], w, none_is_empty=False))
        v.keys(want, w, {"node", *STATUS_KEYS})
        self.node = v.choice(want.pop("node", "aws"), f"{w}.node", NODES)
        if not want:
            v.fail(w, f"names nothing to check (keys: {v.allowed(STATUS_KEYS)})")
        for k, val in want.items():
            options = STATUS_KEYS[k]
            if options is not None:
                v.choice(val, f"{w}.{k}", options)
            elif k == "LastStatusChange":
                v.number(val, f"{w}.{k}")
            else:
                v.string(val, f"{w}.{k}", empty=True)
        self.want = want

    def result(self, status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
        have = status.get(self.node, {})
        bad = {k: have.get(k) for k, val in self.want.items() if have.get(k) != val}
        detail = f"{self.node} status {dict(have)}" if bad else f"{self.node} status matches"
        return ExpectResult(self.raw, not bad, detail)


class TgwFlowExpectation(Expectation):
    """``tgw_flow: {name, verdict, reason, ...}``: the verdict of the last TGW probe of that name."""

    def __init__(self, raw: dict[str, Any], where: str, probe_names: Iterable[str] | None) -> None:
        super().__init__(raw)
        v.keys(raw, where, {"tgw_flow"})
        w = f"{where}.tgw_flow"
        want = dict(v.mapping(raw["tgw_flow"], w, none_is_empty=False))
        declared = ev.EVENTS[ev.tgw_flow.__name__].fields
        v.keys(want, w, declared, required=("name",))
        self.name = v.string(want["name"], f"{w}.name")
        if probe_names is not None:
            names = sorted(set(probe_names))
            if self.name not in names:
                v.fail(f"{w}.name", f"no TGW probe is named {self.name!r} (probes: {v.allowed(names) or 'none'})")
        if "verdict" in want:
            v.choice(want["verdict"], f"{w}.verdict", ("delivered", "dropped"))
        for k, val in want.items():
            if not declared[k].accepts(val):
                v.fail(f"{w}.{k}", f"{val!r} can never match: tgw_flow.{k} is {declared[k].type_text}")
        self.want = want
        self.last: dict[str, Any] | None = None

    def feed(self, rec: TraceRecord) -> None:
        if rec.event == "tgw_flow" and rec.fields.get("name") == self.name:
            self.last = rec.fields

    def result(self, status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
        e, name, got = self.raw, self.name, self.last
        if got is None:
            return ExpectResult(e, False, f"no TGW probe named {name!r}")
        bad = {k: got.get(k) for k, val in self.want.items() if k != "name" and got.get(k) != val}
        if bad:
            return ExpectResult(e, False, f"probe {name!r}: {got.get('verdict')} {got.get('reason')}")
        return ExpectResult(e, True, f"probe {name!r}: {got.get('verdict')} via {got.get('hops')}")


def parse_expectation(e: Any, where: str, probe_names: Iterable[str] | None = None) -> Expectation:
    """One ``expect:`` item as a checker; a bad item is a :class:`ConfigError` naming ``where`` and the field.
    ``probe_names``: the scenario's TGW probe names (None: not checked; ``[]``: there is no TGW)."""
    m = v.mapping(e, where, none_is_empty=False)
    kinds = [k for k in ("event", "status", "absent", "tgw_flow") if k in m]
    if len(kinds) != 1:
        v.fail(where, "needs exactly one of event, status, absent, tgw_flow")
    raw = dict(m)
    if kinds[0] == "event":
        return EventExpectation(raw, where)
    if kinds[0] == "absent":
        return AbsentExpectation(raw, where)
    if kinds[0] == "status":
        return StatusExpectation(raw, where)
    if probe_names is not None and not list(probe_names):
        v.fail(f"{where}.tgw_flow", "the scenario has no tgw section with probes")
    return TgwFlowExpectation(raw, where, probe_names)


def check(e: dict[str, Any], trace: Iterable[TraceRecord], status: Mapping[str, Mapping[str, Any]]) -> ExpectResult:
    """Check one expectation against the records of a finished run (a bad expectation raises ConfigError)."""
    m = parse_expectation(e, "expect")
    for rec in trace:
        m.feed(rec)
    return m.result(status)


# =========================================================================================== scenarios


@dataclass(frozen=True)
class ScheduleItem:
    """One validated ``schedule:`` entry."""

    at: float
    do: str
    node: str | None = None
    directions: tuple[str, ...] = ()
    until: float = math.inf
    every: float = 1.0
    plan: FaultPlan | None = None
    initiate: bool | None = None
    by: float = 0.0
    """``clock_step``: seconds the node's clock jumps."""
    port: int = 0
    """``nat_rebind``: the first new public port."""
    address: str | None = None
    """``nat_rebind``: a new public address (None: the node's own)."""
    queue: int = 256
    """``pause``: inputs held while paused (emulator.simnet.DEFAULT_PAUSE_QUEUE)."""
    datagrams_first: bool = True
    """``pause``: on resume, waiting inputs before overdue timers (``resume: datagrams-first``)."""


@dataclass(frozen=True)
class Probe:
    """One validated TGW probe."""

    at: float
    name: str
    flow: str
    source: str | None


class Scenario:
    """A loaded and validated scenario file. Build with :meth:`load` or :meth:`from_mapping`; :meth:`run` it."""

    def __init__(self, raw: dict[str, Any], default_name: str = "scenario", base_dir: str = ".") -> None:
        """Validate ``raw`` completely (see the module docstring); raises :class:`ConfigError`."""
        self.raw = raw
        self.base_dir = base_dir
        v.keys(raw, "", TOP_KEYS)
        self.name = v.safe_name(raw["name"], "name") if "name" in raw else v.sanitise_name(default_name)
        if "description" in raw and raw["description"] is not None:
            v.string(raw["description"], "description", empty=True, single_line=False)
        self.seed = v.integer(raw.get("seed", 0), "seed")
        self.duration = v.number(raw.get("duration", 600), "duration", above=0.0)
        self.max_events = v.integer(raw.get("max_events", v.DEFAULT_MAX_EVENTS), "max_events", minimum=1)
        self.ike_version = v.choice(raw.get("ike_version", 1), "ike_version", (1, 2))
        self.psk: str | None = None
        if "psk" in raw:
            from cgw_peer.config import check_pre_shared_key
            from cgw_peer.errors import ConfigError as PeerConfigError

            try:
                self.psk = check_pre_shared_key(raw["psk"], "psk")
            except PeerConfigError as e:
                raise ConfigError(str(e)) from None
        self.address = self._addresses()
        self.configs = self._peer_configs()
        self.links = {
            d: FaultPlan.from_mapping(v.mapping(raw.get("links"), "links").get(d), f"links.{d}")
            for d in LINK_DIRECTIONS
        }
        for d in v.mapping(raw.get("links"), "links"):
            if d not in LINK_DIRECTIONS:
                v.fail(f"links.{d}", f"unknown direction (allowed: {v.allowed(LINK_DIRECTIONS)})")
        items = v.sequence(raw.get("schedule"), "schedule")
        self.schedule = [self._schedule_item(item, f"schedule[{i}]") for i, item in enumerate(items)]
        self.tgw: tuple[str, str, str, list[Probe]] | None = None
        self.tgw = self._tgw()
        names = [p.name for p in self.tgw[3]] if self.tgw else []
        self._expect_raw = v.sequence(raw.get("expect"), "expect")
        for i, item in enumerate(self._expect_raw):
            parse_expectation(item, f"expect[{i}]", names)
        # Build both engines once: proposals and engine-level settings fail here, naming the side.
        for side in NODES:
            self.make_peer(side)

    def variant(
        self,
        *,
        seed: int | None = None,
        schedule: Iterable[ScheduleItem] = (),
        links: Mapping[str, FaultPlan] | None = None,
        duration: float | None = None,
    ) -> Scenario:
        """A copy of this validated scenario with another ``seed``, extra ``schedule`` items (already validated
        :class:`ScheduleItem` s, e.g. a campaign's faults), other ``links`` plans or ``duration``; nothing is
        validated or built again (the peer configurations are shared, read-only)."""
        other = copy.copy(self)
        if seed is not None:
            other.seed = seed
        extra = list(schedule)
        if extra:
            other.schedule = [*self.schedule, *extra]  # wired in order: the base's items first at a tie
        if links is not None:
            other.links = {**self.links, **links}
        if duration is not None:
            other.duration = duration
        return other

    @classmethod
    def load(cls, path: str) -> Scenario:
        raw = v.load_yaml(path, "scenario")
        if not isinstance(raw, dict):
            v.fail("scenario", f"{path}: the top level must be a mapping")
        default_name = os.path.splitext(os.path.basename(path))[0]
        return cls.from_mapping(raw, default_name, os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_mapping(cls, raw: Any, default_name: str = "scenario", base_dir: str = ".") -> Scenario:
        """A validated scenario; a document with a ``connection:`` section is a two-tunnel VPN connection with
        traffic (:class:`emulator.connection.ConnectionScenario`)."""
        if not isinstance(raw, dict):
            v.fail("scenario", "the top level must be a mapping")
        if "connection" in raw and cls is Scenario:
            from emulator.connection import ConnectionScenario

            return ConnectionScenario(raw, default_name, base_dir)
        return cls(raw, default_name, base_dir)

    # -- validation ----------------------------------------------------------------------------------------

    def _side(self, side: str) -> Mapping[Any, Any]:
        s = v.mapping(self.raw.get(side), side)
        v.keys(s, side, SIDE_KEYS)
        return s

    def _addresses(self) -> dict[str, str]:
        out = {}
        for side in NODES:
            s = self._side(side)
            out[side] = v.ip_address(s.get("address", DEFAULT_ADDRESSES[side]), f"{side}.address")
        if out["aws"] == out["cgw"]:
            v.fail("cgw.address", f"must differ from aws.address ({out['aws']})")
        if ipaddress.ip_address(out["aws"]).version != ipaddress.ip_address(out["cgw"]).version:
            v.fail("cgw.address", f"must be the same address family as aws.address ({out['aws']})")
        return out

    def _peer_configs(self) -> dict[str, Any]:
        from cgw_peer.config import PROFILES, Behaviour, IkeVersion, PeerConfig, Role, TrafficSelector, TunnelOptions
        from cgw_peer.errors import ConfigError as PeerConfigError

        raw = self.raw
        version = IkeVersion.IKEV1 if self.ike_version == 1 else IkeVersion.IKEV2
        try:
            opts = TunnelOptions.from_mapping(v.mapping(raw.get("tunnel"), "tunnel"), "tunnel.", ike_version=version)
        except PeerConfigError as e:
            raise ConfigError(str(e) if str(e).startswith("tunnel") else f"tunnel.{e}") from None
        out: dict[str, Any] = {}
        for side, role in (("aws", Role.AWS), ("cgw", Role.CGW)):
            s = self._side(side)
            profile = v.choice(s.get("profile", DEFAULT_PROFILES[side]), f"{side}.profile", tuple(PROFILES))
            beh: Behaviour = PROFILES[profile]
            overrides = v.mapping(s.get("behaviour"), f"{side}.behaviour")
            kw: dict[str, Any] = {}
            try:
                if overrides:
                    merged = Behaviour.from_mapping(overrides, f"{side}.behaviour.")
                    names = [str(k).replace("-", "_") for k in overrides]
                    beh = replace(beh, **{n: getattr(merged, n) for n in names})
                if self.psk is not None:
                    kw["psk"] = self.psk.encode()
                for key in ("proposals", "esp_proposals"):
                    if s.get(key):
                        kw[key] = v.string_list(s[key], f"{side}.{key}")
                for flag in ("force_encap", "nat_t"):
                    if flag in s:
                        kw[flag] = v.boolean(s[flag], f"{side}.{flag}")
                if s.get("initiate") is not None:
                    kw["initiate"] = v.boolean(s["initiate"], f"{side}.initiate")
                for key in ("local_ts", "remote_ts"):
                    if key in s:
                        kw[key] = TrafficSelector(cidr=v.cidr(s[key], f"{side}.{key}"))
                out[side] = PeerConfig(role=role, ike_version=version, options=opts, behaviour=beh, name=side, **kw)
            except PeerConfigError as e:
                msg = str(e)
                raise ConfigError(msg if msg.startswith(side) else f"{side}.{msg}") from None
            v.check_timer_floors(beh, f"{side}.behaviour.")
        return out

    def _schedule_item(self, item: Any, where: str) -> ScheduleItem:
        m = v.mapping(item, where, none_is_empty=False)
        if "at" not in m:
            v.fail(f"{where}.at", "required")
        do = v.choice(m.get("do"), f"{where}.do", sorted(ACTIONS))
        v.keys(m, where, {"at", "do", *ACTION_KEYS[do]})
        at = v.number(m["at"], f"{where}.at", minimum=0.0)
        node = None
        if "node" in ACTION_KEYS[do]:
            node = v.choice(m.get("node"), f"{where}.node", NODES)
        directions: tuple[str, ...] = ()
        if "direction" in ACTION_KEYS[do]:
            d = v.choice(m.get("direction", "both"), f"{where}.direction", DIRECTIONS)
            directions = LINK_DIRECTIONS if d == "both" else (d,)
        if do == "blackhole":
            until = v.number(m.get("until", math.inf), f"{where}.until", allow_inf=True)
            if not until >= at:
                v.fail(f"{where}.until", f"must be >= at ({at:g}), got {m.get('until')!r}")
            return ScheduleItem(at, do, directions=directions, until=until)
        if do == "faults":
            plan = FaultPlan.from_mapping(m.get("plan"), f"{where}.plan")
            return ScheduleItem(at, do, directions=directions, plan=plan)
        if do == "revive":
            init = None if m.get("initiate") is None else v.boolean(m["initiate"], f"{where}.initiate")
            return ScheduleItem(at, do, node=node, initiate=init)
        if do == "esp":
            every = v.seconds(m.get("every", 1.0), f"{where}.every")
            until = v.number(m.get("until", at), f"{where}.until")
            if not until >= at:
                v.fail(f"{where}.until", f"must be >= at ({at:g}), got {m.get('until')!r}")
            return ScheduleItem(at, do, node=node, until=until, every=every)
        if do == "pause":
            if "until" not in m:
                v.fail(f"{where}.until", "required (when the node resumes)")
            until = v.number(m["until"], f"{where}.until")
            if not until >= at:
                v.fail(f"{where}.until", f"must be >= at ({at:g}), got {m.get('until')!r}")
            queue = v.integer(m.get("queue", 256), f"{where}.queue", minimum=0, maximum=1_000_000)
            order = v.choice(m.get("resume", "datagrams-first"), f"{where}.resume", ("datagrams-first", "timers-first"))
            return ScheduleItem(at, do, node=node, until=until, queue=queue, datagrams_first=order == "datagrams-first")
        if do == "clock_step":
            if "by" not in m:
                v.fail(f"{where}.by", "required (seconds; negative steps back)")
            return ScheduleItem(at, do, node=node, by=v.number(m["by"], f"{where}.by", minimum=-1e6, maximum=1e6))
        if do == "nat_rebind":
            port = v.integer(m.get("port", 40000), f"{where}.port", minimum=1024, maximum=65535)
            address = None
            if m.get("address") is not None:
                address = v.ip_address(m["address"], f"{where}.address")
                other = "aws" if node == "cgw" else "cgw"
                if address == self.address[other]:
                    v.fail(f"{where}.address", f"must not be the {other} side's address ({address})")
                if ipaddress.ip_address(address).version != ipaddress.ip_address(self.address[other]).version:
                    v.fail(f"{where}.address", "must be the same address family as the peers")
            return ScheduleItem(at, do, node=node, port=port, address=address)
        return ScheduleItem(at, do, node=node)

    def _tgw(self) -> tuple[str, str, str, list[Probe]] | None:
        t = self.raw.get("tgw")
        if t is None:
            return None
        t = v.mapping(t, "tgw", none_is_empty=False)
        v.keys(t, "tgw", TGW_KEYS, required=("topology", "attachment"))
        topology = v.string(t["topology"], "tgw.topology")
        attachment = v.string(t["attachment"], "tgw.attachment")
        tunnel = v.string(t.get("tunnel", "tunnel1"), "tgw.tunnel")
        probes = []
        for i, pr in enumerate(v.sequence(t.get("probes"), "tgw.probes")):
            w = f"tgw.probes[{i}]"
            pm = v.mapping(pr, w, none_is_empty=False)
            v.keys(pm, w, PROBE_KEYS, required=("at", "flow"))
            flow = v.string(pm["flow"], f"{w}.flow")
            name = v.string(pm.get("name", flow), f"{w}.name")
            src = None if pm.get("from") is None else v.string(pm["from"], f"{w}.from")
            probes.append(Probe(v.number(pm["at"], f"{w}.at", minimum=0.0), name, flow, src))
        self.tgw = (topology, attachment, tunnel, probes)
        dp = self.make_dataplane()
        try:
            dp.set_tunnel_state(attachment, tunnel, False)
        except ConfigError as e:
            raise ConfigError(f"tgw.attachment: {e}") from None
        from tgw_dataplane.craft import parse_flow

        for i, pr in enumerate(probes):
            w = f"tgw.probes[{i}]"
            try:
                spec = parse_flow(pr.flow)
                data = spec.request()
            except (ValueError, struct.error, OverflowError) as e:
                raise ConfigError(f"{w}.flow: {e}") from None
            try:
                src = pr.source or dp.source_for_ip(spec.src)
                dp.send(data, src, 0.0, trace=True)  # a dry run on this validation copy of the dataplane
            except ConfigError as e:
                raise ConfigError(f"{w}.{'from' if pr.source else 'flow'}: {e}") from None
        return self.tgw

    def make_dataplane(self) -> Any:
        from tgw_dataplane.dataplane import Dataplane
        from tgw_dataplane.loader import load_any

        assert self.tgw is not None
        path = self.tgw[0]
        if not os.path.isabs(path):
            path = os.path.join(self.base_dir, path)
        try:
            return Dataplane(load_any(path))
        except ConfigError as e:
            raise ConfigError(f"tgw.topology: {e}") from None

    # -- building ------------------------------------------------------------------------------------------

    def peer_configs(self) -> dict[str, Any]:
        """The two validated :class:`~cgw_peer.config.PeerConfig` s, by side."""
        return dict(self.configs)

    def addresses(self) -> dict[str, str]:
        return dict(self.address)

    def make_peer(self, side: str, incarnation: int = 0, initiate: bool | None = None) -> Any:
        from cgw_peer.errors import ConfigError as PeerConfigError
        from cgw_peer.peer import create_peer

        cfg = self.configs[side]
        if initiate is not None:
            cfg = replace(cfg, initiate=initiate)
        other = "cgw" if side == "aws" else "aws"
        rng = random.Random(f"{self.seed}:{side}:{incarnation}")
        try:
            return create_peer(cfg, local=(self.address[side], 500), remote=(self.address[other], 500), rng=rng)
        except PeerConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(side) else f"{side}.{msg}") from None

    # -- running -------------------------------------------------------------------------------------------

    def run(self, out_dir: str | None = None, *, max_events: int | None = None) -> ScenarioResult:
        """Run in virtual time and check the expectations as events arrive.

        ``out_dir``: write ``NAME.pcap``, ``NAME.jsonl``, ``NAME-timeline.txt`` and ``NAME-keys/`` there; without
        it the trace goes to a temporary file and no capture is written. ``max_events`` overrides the scenario's
        budget. Past the budget, :class:`~emulator.scheduler.BudgetExceeded` (a ConfigError) is raised.
        """
        budget = self.max_events if max_events is None else max_events
        outputs: dict[str, str] = {}
        pcap: PcapWriter | None = None
        if out_dir is not None:
            v.output_dir(out_dir, "--out")
            os.makedirs(out_dir, exist_ok=True)
            outputs["pcap"] = os.path.join(out_dir, f"{self.name}.pcap")
            outputs["trace"] = os.path.join(out_dir, f"{self.name}.jsonl")
            pcap = PcapWriter.open(outputs["pcap"], LINKTYPE_RAW, ts_origin=PCAP_EPOCH)
        trace = StreamingTrace(outputs.get("trace"), max_events=budget)
        checks = [parse_expectation(e, f"expect[{i}]") for i, e in enumerate(self._expect_raw)]

        def feed(rec: TraceRecord) -> None:
            for c in checks:
                c.feed(rec)

        trace.subscribe(feed)
        keys = KeyTables()
        net = SimNetwork(self.seed, pcap=pcap, trace=trace)

        def on_keys(rec: TraceRecord) -> None:
            if rec.event == "sa_keys":
                keys.add(rec.fields)
            elif rec.event == "child_sa_established" and rec.node in self.address:
                # Wireshark's esp_sa table too (both directions), for captures that carry the tunnel's ESP.
                other = "cgw" if rec.node == "aws" else "aws"
                keys.add_child_sa(rec.fields, self.address[rec.node], self.address[other])

        net.on_event(on_keys)
        try:
            self._wire(net)
            net.start_all(at=0.0)
            net.run_until(self.duration, max_events=budget)
        except BudgetExceeded as e:
            where = f"; the trace so far is in {outputs['trace']}" if "trace" in outputs else ""
            raise BudgetExceeded(f"{e} [scenario {self.name}{where}]") from None
        finally:
            trace.flush()
            if pcap is not None:
                pcap.close()
        status = {side: _status_dict(net.node(side)) for side in NODES}
        results = [c.result(status) for c in checks]
        res = ScenarioResult(self.name, all(r.ok for r in results), results, trace, status, outputs)
        if out_dir is not None:
            keys_dir = os.path.join(out_dir, f"{self.name}-keys")
            keys.write(keys_dir)
            outputs["keys"] = keys_dir
            outputs["timeline"] = tl_path = os.path.join(out_dir, f"{self.name}-timeline.txt")
            with open(tl_path, "w") as ft:
                write_timeline(trace, ft)
        return res

    def _wire(self, net: SimNetwork) -> None:
        """Nodes, links and the schedule on ``net``."""
        addrs = self.address
        incarnations = {"aws": 0, "cgw": 0}
        for side in NODES:
            net.add_node(side, self.make_peer(side), [addrs[side]])
        plans = dict(self.links)

        def set_plan(d: str, plan: FaultPlan) -> None:
            src, dst = d.split("->")
            net.set_faults(addrs[src], addrs[dst], plan)

        for d, plan in plans.items():
            set_plan(d, plan)

        def revive(node: str, initiate: bool | None) -> None:
            incarnations[node] += 1
            net.revive(node, self.make_peer(node, incarnations[node], initiate))

        def api_call(node: str, method: str, now: float) -> list[Any]:
            result = getattr(net.node(node), method)(now)
            return list(result) if result else []

        def esp(item: ScheduleItem, t: float) -> None:
            # One call now, the next one scheduled from here: O(1) entries however long the window.
            assert item.node is not None
            net.call(item.node, functools.partial(api_call, item.node, "note_esp_inbound"))
            nxt = t + item.every
            if nxt <= item.until + 1e-9:
                net.at(nxt, functools.partial(esp, item, nxt))

        for item in self.schedule:
            at, do, node = item.at, item.do, item.node
            if do == "blackhole":
                for d in item.directions:
                    cur = plans[d]
                    plans[d] = replace(cur, blackholes=(*cur.blackholes, (at, item.until)))
                    set_plan(d, plans[d])
            elif do == "faults":
                assert item.plan is not None
                for d in item.directions:
                    net.at(at, functools.partial(set_plan, d, item.plan))
            elif do == "crash":
                assert node is not None
                net.at(at, functools.partial(net.crash, node))
            elif do == "revive":
                assert node is not None
                net.at(at, functools.partial(revive, node, item.initiate))
            elif do in ("initiate", "close"):
                assert node is not None
                net.call(node, functools.partial(api_call, node, do), at=at)
            elif do == "esp":
                net.at(at, functools.partial(esp, item, at))
            elif do == "pause":
                assert node is not None
                net.at(at, functools.partial(net.pause, node, item.queue))
                net.at(item.until, functools.partial(net.resume, node, item.datagrams_first))
            elif do == "clock_step":
                assert node is not None
                net.at(at, functools.partial(net.clock_step, node, item.by))
            elif do == "nat_rebind":
                assert node is not None
                net.at(at, functools.partial(net.nat_rebind, node, item.port, item.address))
        if self.tgw:
            self._bind_tgw(net)

    def _bind_tgw(self, net: SimNetwork) -> None:
        """The AWS side's tunnel state drives the VPN attachment's routes; probes record their verdicts."""
        from tgw_dataplane.craft import parse_flow

        assert self.tgw is not None
        _, att, tunnel, probes = self.tgw
        dp = self.make_dataplane()
        dp.set_tunnel_state(att, tunnel, False)
        state = {"up": False}

        def on_event(rec: TraceRecord) -> None:
            if rec.node != "aws":
                return
            if rec.event == "tunnel_up":
                up = True
            elif rec.event in ("tunnel_down", "routes_withdrawn"):
                up = False
            else:
                return
            if up != state["up"]:
                state["up"] = up
                dp.set_tunnel_state(att, tunnel, up)
                e = ev.tgw_routes_changed(attachment=att, tunnel=tunnel, up=up)
                net.trace.add(net.now, "tgw", e.name, dict(e.fields))

        net.on_event(on_event)

        def probe(pr: Probe) -> None:
            flow = parse_flow(pr.flow)
            src = pr.source or dp.source_for_ip(flow.src)
            res = dp.send(flow.request(), src, net.now, trace=True)
            e = ev.tgw_flow(
                name=pr.name,
                flow=pr.flow,
                verdict=str(res.verdict),
                reason=str(res.reason or ""),
                hops=[h.get("node") for h in res.hops or []],
            )
            net.trace.add(net.now, "tgw", e.name, dict(e.fields))

        for pr in probes:
            net.at(pr.at, functools.partial(probe, pr))


def _status_dict(peer: Any) -> dict[str, Any]:
    st = getattr(peer, "status", None)
    if st is None:
        return {}
    if hasattr(st, "to_aws"):
        d: dict[str, Any] = st.to_aws()
        return d
    return {
        "Status": getattr(st, "status", None),
        "StatusMessage": getattr(st, "status_message", None),
        "LastStatusChange": getattr(st, "last_status_change", None),
    }


def _timeline_line(r: TraceRecord) -> str:
    extra = " ".join(f"{k}={val}" for k, val in r.fields.items())
    return f"{r.t:12.6f}  {r.node:<4} {r.event:<22} {extra}".rstrip()


def write_timeline(records: Iterable[TraceRecord], out: IO[str], skip: frozenset[str] = TIMELINE_SKIP) -> None:
    """Write the human-readable timeline line by line (a long trace is never held in memory)."""
    for r in records:
        if r.event not in skip:
            out.write(_timeline_line(r) + "\n")


def timeline(trace: Iterable[TraceRecord], skip: frozenset[str] = TIMELINE_SKIP) -> str:
    """A human-readable timeline: one line per event, virtual time first (``skip``: :data:`TIMELINE_SKIP`)."""
    return "\n".join(_timeline_line(r) for r in trace if r.event not in skip) + "\n"


__all__ = [
    "TIMELINE_SKIP",
    "ExpectResult",
    "Expectation",
    "Scenario",
    "ScenarioResult",
    "Trace",
    "check",
    "parse_expectation",
    "timeline",
    "write_timeline",
]
