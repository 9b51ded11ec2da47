"""The fault catalogue: every fault a campaign can inject, its parameters, and what AWS's behaviour implies.

Names follow the tools people know: tc-netem (``loss``, ``loss gemodel``, ``delay``/``jitter``, ``duplicate``,
``reorder``, ``corrupt``), toxiproxy (``latency``, ``timeout``), Jepsen's nemeses (``partition``, ``pause``,
``kill``, clock ``bump``), FoundationDB's simulator and TigerBeetle's VOPR (crash and restart, one-way
partitions, clogged paths). Each fault is one :class:`FaultDef` in :data:`FAULTS`: its documented parameters
(:class:`Param`: type, range, default, unit) and how one occurrence becomes a schedule (VPN faults: validated
:class:`~emulator.scenario.ScheduleItem` s on the base scenario; TGW faults: dataplane calls at given instants,
:mod:`emulator.campaign.tgwrun`).

Expected outcomes. Where AWS's documented behaviour implies a result, the run checks it (by name, every run):

* ``recovers``: the AWS side's tunnel is UP again within the run's *recovery bound* after the last fault heals,
  and UP at the end. The bound is ``DPDTimeoutSeconds + dpd_interval + restart_backoff_max + the retransmission
  budget of one negotiation + twice the largest one-way link delay + 2 s`` of the base scenario: AWS declares the
  peer dead at most one timeout after the heal and restarts after at most the largest backoff
  (``DPDTimeoutAction: restart``, ``ike-dpd.md`` §1.2). The whole budget (strongSwan's schedule: about 165 s),
  not one wait, because a negotiation caught by the fault can be stuck: when its responder has dropped the
  half-open exchange (a corrupted Main Mode 5: ``decrypt_failed``, then ``unknown_spi``), no retransmission
  completes it, and AWS starts again only once it gives up (campaigns found this; ``docs/campaigns.md``).
  Checked when the base scenario's DPDTimeoutAction is ``restart`` (with ``clear`` AWS waits for the CGW).
* ``stays_up``: no ``tunnel_down`` on either side while the fault lasts and for one recovery bound after. Only
  where the fault cannot outlast the liveness check: an outage (partition, pause, a step of the clock) shorter
  than the run's *tolerance* ``DPDTimeoutSeconds - max(dpd_delay) - dpd_interval - 2 x link delay - 1 s``
  (AWS probes after ``dpd_delay`` of silence, repeats every ``dpd_interval``, and is dead at the last inbound
  message plus the timeout, so a silence shorter than this is always bridged); duplicates and reordering (RFC
  3706 sequence numbers and RFC 7296 message IDs absorb them); a NAT rebinding under NAT-T when the CGW sends
  authenticated traffic (RFC 3947 §5, RFC 7296 §2.23: the peer follows the new mapping); a simultaneous rekey
  (RFC 7296 §2.8.1: one SA survives, both sides agree). On other runs it is reported as not applicable.
* TGW faults have their own (``unaffected_flows_delivered``, ``new_flows_delivered_after_recovery``,
  ``new_flows_keep_one_appliance``, ``cross_az_replies_dropped``, ``delivered_iff_routes_up``); see
  :mod:`emulator.campaign.tgwrun`.

Every fault has ``start`` (when its first occurrence begins, virtual seconds), ``times`` (occurrences, 1-20) and
``every`` (seconds from one occurrence's start to the next). A run with several occurrences is a schedule of
several *parts*, each of which can be replayed (``--fault NAME:k=v,...`` once per part) and dropped when a
failing schedule is shrunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from emulator import validate as v
from emulator.link import FaultPlan

Kind = Literal["vpn", "tgw"]
ParamType = Literal["float", "int", "choice", "bool", "text"]


@dataclass(frozen=True)
class Param:
    """One parameter of a fault."""

    name: str
    type: ParamType
    doc: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    unit: str = ""

    def describe(self) -> str:
        if self.type == "choice":
            rng = " | ".join(str(c) for c in self.choices)
        elif self.type == "bool":
            rng = "true | false"
        elif self.type == "text":
            rng = "text"
        else:
            hi = "inf" if self.hi is None or math.isinf(self.hi) else f"{self.hi:g}"
            rng = f"{self.type} in [{self.lo:g}, {hi}]{' ' + self.unit if self.unit else ''}"
        return f"{self.name}: {rng} (default {self.default!r}): {self.doc}"

    def check(self, value: Any, where: str) -> Any:
        """``value`` as this parameter's type, in range; a bad one is a one-line ConfigError naming ``where``."""
        if self.type == "choice":
            if isinstance(value, str) and value not in self.choices:
                v.fail(where, f"must be one of {v.allowed(self.choices)}, got {value!r}")
            return v.choice(value, where, self.choices)
        if self.type == "bool":
            return v.boolean(value, where)
        if self.type == "text":
            return v.string(value, where)
        hi = None if self.hi is None or math.isinf(self.hi) else self.hi
        if self.type == "int":
            return v.integer(value, where, minimum=int(self.lo or 0), maximum=None if hi is None else int(hi))
        return v.number(value, where, minimum=self.lo, maximum=hi)

    def text(self, value: Any) -> str:
        """``value`` as a replay command writes it (floats exactly: ``repr``)."""
        if self.type == "bool":
            return "true" if value else "false"
        return repr(float(value)) if self.type == "float" else str(value)

    def parse(self, text: str, where: str) -> Any:
        """The value of ``text`` from a replay command."""
        if self.type == "bool":
            return v.boolean(text, where, words=True)
        if self.type == "choice":
            for c in self.choices:
                if str(c) == text:
                    return c
            v.fail(where, f"must be one of {v.allowed(self.choices)}, got {text!r}")
        if self.type == "text":
            return v.string(text, where)
        return self.check(text, where)


# -------------------------------------------------------------------------------------------------- common

MAX_SECONDS = 86_400.0
"""The largest instant or length a fault parameter takes: one day of virtual time (a run lasts until its last
fault has healed plus the recovery bound, so this also bounds a run)."""

START = Param("start", "float", "when the first occurrence begins", 30.0, 0.0, MAX_SECONDS, unit="s")
TIMES = Param("times", "int", "how many occurrences", 1, 1, 20)
EVERY = Param("every", "float", "from one occurrence's start to the next", 120.0, 0.01, MAX_SECONDS, unit="s")
DURATION = Param("duration", "float", "how long one occurrence lasts", 20.0, 0.0, MAX_SECONDS, unit="s")
DIRECTION = Param(
    "direction", "choice", "which direction(s) of the path", "both", choices=("both", "cgw->aws", "aws->cgw")
)
NODE = Param("node", "choice", "which side", "cgw", choices=("cgw", "aws"))
PROB = "probability per datagram"

COMMON = (START, TIMES, EVERY)


@dataclass(frozen=True)
class VpnEnv:
    """What a fault needs to know about the base scenario (derived once per worker)."""

    duration: float
    timeout: float
    """DPDTimeoutSeconds."""
    restart: bool
    """DPDTimeoutAction is restart."""
    bound: float
    """The recovery bound (module docstring)."""
    tolerance: float
    """The longest outage the liveness check always bridges (module docstring)."""
    cgw_probes: bool
    """The CGW runs DPD itself (its authenticated probes reach AWS through a new NAT mapping)."""
    links: Mapping[str, FaultPlan] = field(default_factory=dict)
    """The base plans of each direction as wired (``links:`` plus the base schedule's blackholes)."""
    addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """One occurrence of one fault, with concrete parameters (``times`` is 1, ``start`` is this occurrence's)."""

    fault: str
    params: Mapping[str, Any]

    @property
    def start(self) -> float:
        return float(self.params["start"])

    def text(self) -> str:
        """``NAME:k=v,...`` as ``--fault`` takes it (parameters in catalogue order; common ones left out when
        they have their only possible value)."""
        fd = FAULTS[self.fault]
        items = [f"{p.name}={p.text(self.params[p.name])}" for p in fd.all_params() if p.name not in ("times", "every")]
        return f"{self.fault}:{','.join(items)}"


@dataclass(frozen=True)
class FaultDef:
    """One fault of the catalogue."""

    name: str
    kind: Kind
    known_as: str
    doc: str
    params: tuple[Param, ...]
    band: str
    """The parameter the summary splits into bands."""
    end: Callable[[Mapping[str, Any]], float]
    """When an occurrence with these parameters has healed (its last effect)."""
    outcomes: tuple[str, ...]
    items: Callable[[Mapping[str, Any], VpnEnv], list[Any]] | None = None
    """VPN faults: the schedule items of one occurrence."""
    stays_up: Callable[[Mapping[str, Any], VpnEnv], bool] | None = None
    """VPN faults: whether AWS's behaviour implies the tunnel never goes down under these parameters."""
    tunnel: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    """VPN faults that change the base scenario's tunnel options / behaviours (a rekey collision)."""
    begin: Callable[[Mapping[str, Any]], float] | None = None
    """When an occurrence begins to act, if not at ``start`` (a rekey collision: at the rekey instant)."""
    plan: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    """Link faults: the :class:`~emulator.link.FaultPlan` fields it sets while it lasts (:func:`link_items`)."""
    blackhole: bool = False
    """Partitions: a blackhole window of ``direction`` from ``start`` for ``duration`` (:func:`link_items`)."""

    def window(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """(begin, end) of one occurrence."""
        b = self.begin(params) if self.begin is not None else float(params["start"])
        return b, self.end(params)

    def all_params(self) -> tuple[Param, ...]:
        return (*COMMON, *self.params)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.all_params() if p.name == name), None)

    def expand(self, params: Mapping[str, Any]) -> list[Part]:
        """The occurrences of one drawn fault: ``times`` parts, ``every`` seconds apart."""
        n = int(params.get("times", 1))
        every = float(params.get("every", EVERY.default))
        start = float(params.get("start", START.default))
        out = []
        for i in range(n):
            p = dict(params)
            p["times"] = 1
            p["every"] = EVERY.default
            p["start"] = start + i * every
            out.append(Part(self.name, p))
        return out


# -------------------------------------------------------------------------------------------- VPN helpers


def _item(**kw: Any) -> Any:
    from emulator.scenario import ScheduleItem

    return ScheduleItem(**kw)


def _dirs(d: str) -> tuple[str, ...]:
    return ("cgw->aws", "aws->cgw") if d == "both" else (d,)


def link_items(parts: Sequence[Part], env: VpnEnv) -> list[Any]:
    """The schedule items of every link fault of a run at once, so that they compose: partitions are blackhole
    windows (kept in every plan of their direction), and each plan fault (loss, delay, ...) adds its fields to
    the base plan while it lasts. At every instant where a plan fault begins or ends, a direction's plan becomes
    its base plan (with every partition window) plus the fields of the plan faults active then, in the order the
    parts are listed (a later one wins a field both set). A run with one plan fault gets exactly the two plan
    changes it always had."""
    out: list[Any] = []
    for d in ("cgw->aws", "aws->cgw"):
        holes = []
        plans = []
        for p in parts:
            fd = FAULTS[p.fault]
            if not (fd.blackhole or fd.plan is not None) or d not in _dirs(p.params.get("direction", "both")):
                continue
            s, e = float(p.params["start"]), _dur_end(p.params)
            if fd.blackhole:
                holes.append((s, e))
                out.append(_item(at=s, do="blackhole", directions=(d,), until=e))
            elif fd.plan is not None:
                plans.append((s, e, fd.plan(p.params)))
        if not plans:
            continue
        base = env.links.get(d, FaultPlan())
        if holes:
            base = replace(base, blackholes=(*base.blackholes, *holes))
        for t in sorted({x for s, e, _ in plans for x in (s, e)}):
            fields: dict[str, Any] = {}
            for s, e, f in plans:
                if s <= t < e:
                    fields.update(f)
            out.append(_item(at=t, do="faults", directions=(d,), plan=replace(base, **fields)))
    return out


def _dur_end(p: Mapping[str, Any]) -> float:
    return float(p["start"]) + float(p["duration"])


def _outage_short(p: Mapping[str, Any], env: VpnEnv) -> bool:
    return float(p["duration"]) < env.tolerance


def _delay_ok(p: Mapping[str, Any], env: VpnEnv) -> bool:
    return 2 * (float(p["delay"]) + float(p["jitter"])) < min(4.0, env.tolerance)


def _pause(p: Mapping[str, Any], env: VpnEnv) -> list[Any]:
    return [
        _item(
            at=p["start"],
            do="pause",
            node=p["node"],
            until=_dur_end(p),
            queue=int(p["queue"]),
            datagrams_first=p["resume"] == "datagrams-first",
        )
    ]


def _crash(p: Mapping[str, Any], env: VpnEnv) -> list[Any]:
    return [_item(at=p["start"], do="crash", node=p["node"]), _item(at=_dur_end(p), do="revive", node=p["node"])]


def _nat(p: Mapping[str, Any], env: VpnEnv) -> list[Any]:
    # Behind a NAT from the start (so NAT-T floats to 4500), then the mapping changes at `start`.
    addr = None
    if p["new_address"]:
        own = env.addresses.get(p["node"], "198.51.100.20")
        addr = _next_address(own)
    return [
        _item(at=0.0, do="nat_rebind", node=p["node"], port=30000),
        _item(at=p["start"], do="nat_rebind", node=p["node"], port=int(p["port"]), address=addr),
    ]


def _next_address(own: str) -> str:
    import ipaddress

    a = ipaddress.ip_address(own)
    return str(a + 77) if (int(a) & 0xFF) < 150 else str(a - 77)


def _nat_stays(p: Mapping[str, Any], env: VpnEnv) -> bool:
    return env.cgw_probes and p["node"] == "cgw"


def _clock(p: Mapping[str, Any], env: VpnEnv) -> list[Any]:
    return [_item(at=p["start"], do="clock_step", node=p["node"], by=float(p["by"]))]


def _clock_stays(p: Mapping[str, Any], env: VpnEnv) -> bool:
    return abs(float(p["by"])) < env.tolerance


def _sa_lifetime(p: Mapping[str, Any]) -> int:
    """The lifetime of the SA that collides. AWS wants Phase2LifetimeSeconds (>= 900) below
    Phase1LifetimeSeconds, so an IKE SA lifetime of 900 becomes 901."""
    life = int(p["lifetime"])
    return max(life, 901) if p["sa"] == "ike" else life


def _rekey_tunnel(p: Mapping[str, Any]) -> dict[str, Any]:
    life = _sa_lifetime(p)
    sa = p["sa"]
    tunnel: dict[str, Any] = {
        "Phase1LifetimeSeconds": life + 900 if sa == "child" else life,
        "Phase2LifetimeSeconds": life if sa == "child" else 900,
        "RekeyMarginTimeSeconds": int(p["margin"]),
        "RekeyFuzzPercentage": 0,
    }
    return tunnel


def _rekey_start(p: Mapping[str, Any]) -> float:
    return float(_sa_lifetime(p)) - float(p["margin"])


# ---------------------------------------------------------------------------------------------- catalogue

_RECOVERS = ("recovers", "stays_up")

FAULTS: dict[str, FaultDef] = {}


def _add(fd: FaultDef) -> None:
    FAULTS[fd.name] = fd


_add(
    FaultDef(
        "loss",
        "vpn",
        "tc-netem loss random",
        "each datagram is lost with probability p while the fault lasts",
        (Param("p", "float", PROB, 0.2, 0.0, 1.0), DURATION, DIRECTION),
        "p",
        _dur_end,
        ("recovers",),
        plan=lambda p: {"loss": p["p"]},
    )
)
_add(
    FaultDef(
        "gilbert_elliott_loss",
        "vpn",
        "tc-netem loss gemodel p r 1-h 1-k",
        "bursty loss: a two-state Markov chain per datagram (good -> bad with p, bad -> good with r)",
        (
            Param("p", "float", "good -> bad transition " + PROB, 0.05, 0.0, 1.0),
            Param("r", "float", "bad -> good transition " + PROB, 0.3, 0.0, 1.0),
            Param("loss_bad", "float", "loss probability in the bad state (netem 1-h)", 1.0, 0.0, 1.0),
            Param("loss_good", "float", "loss probability in the good state (netem 1-k)", 0.0, 0.0, 1.0),
            DURATION,
            DIRECTION,
        ),
        "p",
        _dur_end,
        ("recovers",),
        plan=(
            lambda p: {
                "gilbert_p": p["p"],
                "gilbert_r": p["r"],
                "gilbert_loss_bad": p["loss_bad"],
                "gilbert_loss_good": p["loss_good"],
            }
        ),
    )
)
_add(
    FaultDef(
        "delay",
        "vpn",
        "tc-netem delay/jitter, toxiproxy latency",
        "every datagram is delayed by `delay` plus a uniform draw in [0, jitter]",
        (
            Param("delay", "float", "fixed one-way delay", 0.5, 0.0, 60.0, unit="s"),
            Param("jitter", "float", "extra uniform delay", 0.1, 0.0, 60.0, unit="s"),
            DURATION,
            DIRECTION,
        ),
        "delay",
        _dur_end,
        _RECOVERS,
        plan=lambda p: {"delay": p["delay"], "jitter": p["jitter"]},
        stays_up=_delay_ok,
    )
)
_add(
    FaultDef(
        "duplicate",
        "vpn",
        "tc-netem duplicate",
        "each datagram arrives twice with probability p",
        (Param("p", "float", PROB, 0.3, 0.0, 1.0), DURATION, DIRECTION),
        "p",
        _dur_end,
        _RECOVERS,
        plan=lambda p: {"duplicate": p["p"]},
        stays_up=lambda p, env: True,
    )
)
_add(
    FaultDef(
        "reorder",
        "vpn",
        "tc-netem reorder",
        "each datagram is held back by `gap` with probability p, so later ones overtake it",
        (
            Param("p", "float", PROB, 0.3, 0.0, 1.0),
            Param("gap", "float", "how long a reordered datagram is held", 0.05, 0.0, 1.0, unit="s"),
            DURATION,
            DIRECTION,
        ),
        "p",
        _dur_end,
        _RECOVERS,
        plan=lambda p: {"reorder": p["p"], "reorder_delay": p["gap"]},
        stays_up=lambda p, env: True,
    )
)
_add(
    FaultDef(
        "corrupt",
        "vpn",
        "tc-netem corrupt",
        "each delivered datagram has one bit flipped with probability p (the receiver drops it: bad hash/ICV)",
        (Param("p", "float", PROB, 0.2, 0.0, 1.0), DURATION, DIRECTION),
        "p",
        _dur_end,
        ("recovers",),
        plan=lambda p: {"corrupt": p["p"]},
    )
)
_add(
    FaultDef(
        "partition",
        "vpn",
        "Jepsen partition, toxiproxy timeout, VOPR partition",
        "nothing passes in either direction while it lasts",
        (DURATION,),
        "duration",
        _dur_end,
        _RECOVERS,
        blackhole=True,
        stays_up=_outage_short,
    )
)
_add(
    FaultDef(
        "one_way_partition",
        "vpn",
        "Jepsen one-way partition, VOPR asymmetric partition",
        "nothing passes in one direction while it lasts (the other still works: liveness needs a round trip)",
        (DURATION, Param("direction", "choice", "the blocked direction", "cgw->aws", choices=("cgw->aws", "aws->cgw"))),
        "duration",
        _dur_end,
        _RECOVERS,
        blackhole=True,
        stays_up=_outage_short,
    )
)
_add(
    FaultDef(
        "pause",
        "vpn",
        "Jepsen pause (SIGSTOP/SIGCONT), a clogged peer too busy to answer",
        "the node runs nothing: timers wait, datagrams wait in its receive queue (up to `queue`) until it resumes",
        (
            NODE,
            DURATION,
            Param("queue", "int", "datagrams held while paused (more are lost)", 256, 0, 1_000_000),
            Param(
                "resume",
                "choice",
                "what runs first on resume",
                "datagrams-first",
                choices=("datagrams-first", "timers-first"),
            ),
        ),
        "duration",
        _dur_end,
        _RECOVERS,
        items=_pause,
        stays_up=_outage_short,
    )
)
_add(
    FaultDef(
        "crash_restart",
        "vpn",
        "Jepsen kill, VOPR crash/restart, kill -9 then a fresh process",
        "the node's process dies at `start` and a fresh one (new SAs) starts `duration` later",
        (NODE, Param("duration", "float", "downtime", 20.0, 0.0, MAX_SECONDS, unit="s")),
        "duration",
        _dur_end,
        ("recovers",),
        items=_crash,
    )
)
_add(
    FaultDef(
        "nat_rebinding",
        "vpn",
        "NAT rebinding (a NAT's mapping expires and is re-created with another port)",
        "the node sits behind a NAT from the start (NAT-T); at `start` its public port (and optionally address) "
        "changes and datagrams sent to the old mapping are lost",
        (
            Param("node", "choice", "the side behind the NAT", "cgw", choices=("cgw",)),
            Param("port", "int", "the first new public port", 40000, 1024, 65000),
            Param("new_address", "bool", "the public address changes too", False),
        ),
        "port",
        lambda p: float(p["start"]),
        _RECOVERS,
        items=_nat,
        stays_up=_nat_stays,
    )
)
_add(
    FaultDef(
        "clock_step",
        "vpn",
        "Jepsen clock bump (strobe: many bumps)",
        "the node's clock jumps by `by` seconds (negative: backwards); the network's clock does not",
        (NODE, Param("by", "float", "the jump", 5.0, -3600.0, 3600.0, unit="s")),
        "by",
        lambda p: float(p["start"]) + max(0.0, float(p["by"])),
        _RECOVERS,
        items=_clock,
        stays_up=_clock_stays,
    )
)
_add(
    FaultDef(
        "rekey_collision",
        "vpn",
        "simultaneous rekey (RFC 7296 §2.8.1), both sides as rekey initiators with no fuzz",
        "both sides start the same rekey at the same instant, `lifetime - margin` seconds in (`start` is derived)",
        (
            Param("sa", "choice", "which SA collides", "child", choices=("child", "ike")),
            Param("lifetime", "int", "Phase2 (child) or Phase1 (ike) lifetime", 900, 900, 3600, unit="s"),
            Param("margin", "int", "RekeyMarginTimeSeconds", 60, 60, 450, unit="s"),
        ),
        "lifetime",
        _rekey_start,
        _RECOVERS,
        items=lambda p, env: [],
        stays_up=lambda p, env: True,
        tunnel=_rekey_tunnel,
        begin=_rekey_start,
    )
)

# TGW faults: their schedules and outcomes live in emulator.campaign.tgwrun (dataplane calls).
_TGW_COMMON = (DURATION,)
_add(
    FaultDef(
        "az_failure",
        "tgw",
        "AZ failure (tgw.md §1.4, §5 story 12)",
        "every TGW ENI and instance of one AZ stops forwarding while it lasts (Dataplane.set_az_health)",
        (Param("az", "text", "the AZ ID (any: drawn from the topology)", "any"), *_TGW_COMMON),
        "duration",
        _dur_end,
        ("unaffected_flows_delivered", "new_flows_delivered_after_recovery"),
    )
)
_add(
    FaultDef(
        "appliance_failure",
        "tgw",
        "appliance (firewall instance) failure",
        "one appliance instance stops forwarding while it lasts (Dataplane.set_eni_health)",
        (Param("appliance", "text", "the appliance instance id (any: drawn)", "any"), *_TGW_COMMON),
        "duration",
        _dur_end,
        ("unaffected_flows_delivered", "new_flows_delivered_after_recovery"),
    )
)
_add(
    FaultDef(
        "gwlb_target_failure",
        "tgw",
        "GWLB target failure (target_failover, tgw.md §1.9)",
        "one GWLB target stops forwarding while it lasts; flows on other targets must not notice",
        (Param("target", "text", "the GWLB target instance id (any: drawn)", "any"), *_TGW_COMMON),
        "duration",
        _dur_end,
        ("unaffected_flows_delivered", "new_flows_delivered_after_recovery"),
    )
)
_add(
    FaultDef(
        "appliance_mode_toggle",
        "tgw",
        "ApplianceModeSupport modified on a live attachment (APP: 'might affect that attachment's current route')",
        "appliance mode of the inspection attachment is switched at `start`",
        (Param("enable", "bool", "the new setting: true (ApplianceModeSupport enable) or false", True),),
        "enable",
        lambda p: float(p["start"]),
        ("new_flows_keep_one_appliance", "cross_az_replies_dropped"),
    )
)
_add(
    FaultDef(
        "route_flap",
        "tgw",
        "TGW route flap (a VPN attachment's tunnels go down and up: its BGP routes are withdrawn and return)",
        "every tunnel of the VPN attachment is down from `start` for `duration`",
        _TGW_COMMON,
        "duration",
        _dur_end,
        ("delivered_iff_routes_up",),
    )
)

OUTCOMES: dict[str, str] = {
    "recovers": "the AWS tunnel is UP again within the recovery bound after the last fault heals, and at the end",
    "stays_up": "no tunnel_down while the fault lasts and one recovery bound after (where AWS's behaviour implies it)",
    "unaffected_flows_delivered": "every packet of a flow that touches no failed node is delivered",
    "new_flows_delivered_after_recovery": "every packet of a flow that starts after the fault healed is delivered",
    "new_flows_keep_one_appliance": "after appliance mode is switched on, new flows are delivered both ways",
    "cross_az_replies_dropped": "after appliance mode is switched off, a new flow between AZs loses its reply "
    "(appliance_no_state, tgw.md §1.5) and a flow within one AZ does not",
    "delivered_iff_routes_up": "a packet to the VPN routes is delivered exactly when a tunnel is up (else no_route)",
}
"""Every expected outcome, by name."""


def catalogue_text() -> str:
    """The catalogue as the CLI lists it (``awsnetemu campaign --list-faults``)."""
    lines = []
    for fd in FAULTS.values():
        lines.append(f"{fd.name} [{fd.kind}] ({fd.known_as}): {fd.doc}")
        for p in fd.all_params():
            lines.append(f"    {p.describe()}")
        lines.append(f"    expected outcomes: {', '.join(fd.outcomes)}")
    return "\n".join(lines) + "\n"


def parse_fault(text: str, where: str = "--fault") -> Part:
    """``NAME:k=v,k=v`` (a replay command's ``--fault``) as one part; missing parameters take their defaults."""
    name, _, rest = text.partition(":")
    name = name.strip()
    fd = FAULTS.get(name)
    if fd is None:
        v.fail(where, f"unknown fault {name!r} (allowed: {v.allowed(FAULTS)})")
    params: dict[str, Any] = {p.name: p.default for p in fd.all_params()}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        k, eq, val = item.partition("=")
        p = fd.param(k.strip())
        if p is None or not eq:
            v.fail(
                f"{where} {name}",
                f"expected k=v with k one of {v.allowed(q.name for q in fd.all_params())}, got {item!r}",
            )
        params[p.name] = p.parse(val.strip(), f"{where} {name}.{p.name}")
    if params["times"] != 1:
        v.fail(f"{where} {name}.times", "a replayed part is one occurrence (repeat --fault for more)")
    return Part(name, params)
