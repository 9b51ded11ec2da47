"""Comments for captures, written from the engine's own events: what each datagram is and why it was sent then.

A scenario run writes a classic pcap (one record per datagram, at send time) and an event trace in which the
virtual network adds one ``datagram_sent`` record per datagram, in the same order as the pcap records. The
engine's events about a datagram (``dpd_request_sent``, ``request_retransmitted``, ``rekey_started``,
``dpd_timeout`` ...) are reported by the same node at the same instant, in the same dispatch, so they sit next
to its ``datagram_sent`` record in the trace. :func:`annotate_vpn` walks the trace once and gives every
datagram an :class:`Annotation`; :func:`write_annotated_pcapng` pairs them with the pcap records (checking
that the UDP payload lengths agree) and writes a pcapng whose packets carry the comments.

Where an event the declarations in :mod:`cgw_peer.events` promise is missing from a trace (older engines: no
``attempt`` on ``dpd_request_sent``, no ``request_retransmitted`` for IKEv1), the fact is derived from the
``datagram_sent`` records themselves (a request sent again with no answer in between is a retransmission) and
the comment says so with "(inferred)". Nothing is guessed from the packet bytes.

The same module explains TGW hops (:func:`hop_comment`, :func:`drop_explanation`) for per-hop captures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.pcapng import PcapngWriter, read_pcap_us
from emulator.trace import TraceRecord

# --------------------------------------------------------------------------------------------- what kinds are

KIND_TEXT: dict[str, tuple[str, str]] = {
    # IKEv1 Main Mode (RFC 2409 §5, pre-shared key): three request/response pairs
    "main_mode_1": ("Main Mode 1/6", "offers its IKE (ISAKMP SA) proposals"),
    "main_mode_2": ("Main Mode 2/6", "accepts one proposal"),
    "main_mode_3": ("Main Mode 3/6", "Diffie-Hellman public value and nonce"),
    "main_mode_4": ("Main Mode 4/6", "Diffie-Hellman public value and nonce"),
    "main_mode_5": ("Main Mode 5/6", "encrypted identity and hash: proves the pre-shared key"),
    "main_mode_6": ("Main Mode 6/6", "encrypted identity and hash: the ISAKMP SA is established"),
    # IKEv1 Quick Mode (RFC 2409 §5.5)
    "quick_mode_1": ("Quick Mode 1/3", "proposes the IPsec SA pair and traffic selectors"),
    "quick_mode_2": ("Quick Mode 2/3", "accepts the IPsec SA proposal"),
    "quick_mode_3": ("Quick Mode 3/3", "confirms: the IPsec SAs are installed"),
    # IKEv1 informational exchanges (RFC 2408 §4.8, RFC 3706)
    "dpd_request": ("R-U-THERE", "encrypted DPD notify 36136 (RFC 3706)"),
    "dpd_ack": ("R-U-THERE-ACK", "encrypted DPD notify 36137 (RFC 3706)"),
    "informational": ("INFORMATIONAL", "an encrypted notification"),
    "delete": ("INFORMATIONAL Delete", "deletes an SA"),
    # IKEv2 (RFC 7296)
    "ike_sa_init_request": ("IKE_SA_INIT request", "proposals, Diffie-Hellman value and nonce"),
    "ike_sa_init_response": ("IKE_SA_INIT response", "chosen proposal, Diffie-Hellman value and nonce"),
    "ike_auth_request": ("IKE_AUTH request", "encrypted identity, AUTH and the Child SA proposal"),
    "ike_auth_response": ("IKE_AUTH response", "encrypted identity and AUTH: the IKE SA and Child SA are up"),
    "create_child_sa_request": ("CREATE_CHILD_SA request", "a rekey (new nonces, SPIs)"),
    "create_child_sa_response": ("CREATE_CHILD_SA response", "accepts the rekey"),
    "liveness_request": ("INFORMATIONAL request", "empty: a liveness check (RFC 7296 §1.4)"),
    "liveness_response": ("INFORMATIONAL response", "empty: the answer to a liveness check"),
    "delete_request": ("INFORMATIONAL Delete request", "deletes an SA"),
    "delete_response": ("INFORMATIONAL Delete response", "acknowledges the Delete"),
    "informational_response": ("INFORMATIONAL response", "answers an INFORMATIONAL request"),
    # both
    "nat_keepalive": ("NAT-T keepalive", "one 0xFF octet that keeps the NAT mapping open (RFC 3948 §2.3)"),
}

SHORT: dict[str, str] = {
    "main_mode_1": "MM1",
    "main_mode_2": "MM2",
    "main_mode_3": "MM3",
    "main_mode_4": "MM4",
    "main_mode_5": "MM5",
    "main_mode_6": "MM6",
    "quick_mode_1": "QM1",
    "quick_mode_2": "QM2",
    "quick_mode_3": "QM3",
    "dpd_request": "R-U-THERE",
    "dpd_ack": "R-U-THERE-ACK",
    "informational": "INFO",
    "delete": "Delete",
    "ike_sa_init_request": "IKE_SA_INIT req",
    "ike_sa_init_response": "IKE_SA_INIT resp",
    "ike_auth_request": "IKE_AUTH req",
    "ike_auth_response": "IKE_AUTH resp",
    "create_child_sa_request": "CREATE_CHILD_SA req",
    "create_child_sa_response": "CREATE_CHILD_SA resp",
    "liveness_request": "INFORMATIONAL req (liveness)",
    "liveness_response": "INFORMATIONAL resp (liveness)",
    "delete_request": "Delete req",
    "delete_response": "Delete resp",
    "informational_response": "INFORMATIONAL resp",
    "nat_keepalive": "NAT-T keepalive",
}

ANSWERS: dict[str, tuple[str, ...]] = {
    "main_mode_2": ("main_mode_1",),
    "main_mode_4": ("main_mode_3",),
    "main_mode_6": ("main_mode_5",),
    "quick_mode_2": ("quick_mode_1",),
    "quick_mode_3": ("quick_mode_2",),
    "dpd_ack": ("dpd_request",),
    "ike_sa_init_response": ("ike_sa_init_request",),
    "ike_auth_response": ("ike_auth_request",),
    "create_child_sa_response": ("create_child_sa_request",),
    "liveness_response": ("liveness_request",),
    "delete_response": ("delete_request",),
    "informational_response": ("delete_request", "liveness_request"),
}
"""Response kind -> the request kinds it can answer."""

REQUESTS = frozenset(
    {
        "main_mode_1",
        "main_mode_3",
        "main_mode_5",
        "quick_mode_1",
        "quick_mode_2",
        "ike_sa_init_request",
        "ike_auth_request",
        "create_child_sa_request",
        "liveness_request",
        "delete_request",
    }
)
"""Kinds that wait for an answer and are retransmitted bit for bit when none comes (RFC 7296 §2.1; IKEv1 Main
and Quick Mode). IKEv1 R-U-THERE is not among them: each probe is a new message (RFC 3706 §5.5)."""

INITIATIONS = frozenset({"main_mode_1", "ike_sa_init_request"})
PROBES = frozenset({"dpd_request", "liveness_request"})
NOT_LIVENESS = frozenset({"nat_keepalive"})
"""Kinds that do not count as authenticated inbound traffic for DPD."""


def kind_title(kind: str) -> str:
    return KIND_TEXT.get(kind, (kind.replace("_", " "), ""))[0]


# ----------------------------------------------------------------------------------------------- context


@dataclass
class LinkFaults:
    """The fault plan of one direction, as far as a comment needs it (``emulator.link.FaultPlan`` fields)."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    blackholes: list[tuple[float, float]] = field(default_factory=list)
    drop_kinds: list[str] = field(default_factory=list)
    drop_kinds_window: tuple[float, float] = (0.0, float("inf"))


@dataclass
class VpnContext:
    """What the comments need to know about a run besides its trace: who is where, the tunnel options in force,
    each side's DPD delay, the links' fault plans and the schedule. Built from a scenario
    (:meth:`from_scenario`) and stored with the run (:meth:`to_json`), so a report can be redone later."""

    ike_version: int = 1
    addresses: dict[str, str] = field(default_factory=lambda: {"aws": "203.0.113.10", "cgw": "198.51.100.20"})
    names: dict[str, str] = field(default_factory=lambda: {"aws": "AWS", "cgw": "CGW"})
    """Display names; a name other than ``AWS`` takes "the" in a sentence ("the CGW")."""
    startup_action: str = "add"
    dpd_timeout_action: str = "clear"
    dpd_timeout_seconds: float = 40.0
    dpd_delay: dict[str, float] = field(default_factory=lambda: {"aws": 10.0, "cgw": 10.0})
    dpd_enabled: dict[str, bool] = field(default_factory=lambda: {"aws": True, "cgw": True})
    links: dict[str, LinkFaults] = field(default_factory=dict)
    """``"cgw->aws"`` / ``"aws->cgw"`` -> fault plan in force from the start."""
    plan_changes: list[tuple[float, str, LinkFaults]] = field(default_factory=list)
    """``faults`` schedule items: (at, direction, new plan)."""

    @classmethod
    def from_scenario(cls, sc: Any) -> VpnContext:
        """From an :class:`emulator.scenario.Scenario` (its raw mapping and built peer configurations)."""
        raw = sc.raw
        cfgs = sc.peer_configs()
        opts = cfgs["aws"].options
        ctx = cls(
            ike_version=int(raw.get("ike_version", 1)),
            addresses=dict(sc.addresses()),
            startup_action=str(opts.startup_action),
            dpd_timeout_action=str(opts.dpd_timeout_action),
            dpd_timeout_seconds=float(opts.dpd_timeout_seconds),
            dpd_delay={s: float(cfgs[s].behaviour.dpd_delay) for s in ("aws", "cgw")},
            dpd_enabled={s: bool(cfgs[s].behaviour.dpd_enabled) for s in ("aws", "cgw")},
        )
        for d in ("cgw->aws", "aws->cgw"):
            ctx.links[d] = _faults((raw.get("links") or {}).get(d) or {})
        for item in raw.get("schedule") or []:
            dirs = ["cgw->aws", "aws->cgw"] if item.get("direction", "both") == "both" else [item["direction"]]
            if item.get("do") == "blackhole":
                for d in dirs:
                    ctx.links[d].blackholes.append((float(item["at"]), float(item.get("until", float("inf")))))
            elif item.get("do") == "faults":
                for d in dirs:
                    ctx.plan_changes.append((float(item["at"]), d, _faults(item.get("plan") or {})))
        ctx.plan_changes.sort(key=lambda x: x[0])
        return ctx

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        out: dict[str, Any] = json.loads(json.dumps(d, default=str).replace("Infinity", "1e308"))
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> VpnContext:
        ctx = cls(**{k: v for k, v in d.items() if k not in ("links", "plan_changes")})
        ctx.links = {k: _faults_json(v) for k, v in (d.get("links") or {}).items()}
        ctx.plan_changes = [(float(a), str(b), _faults_json(c)) for a, b, c in d.get("plan_changes") or []]
        return ctx

    def node_of(self, address: str) -> str | None:
        ip = address.rsplit(":", 1)[0]
        for node, a in self.addresses.items():
            if a == ip:
                return node
        return None

    def name(self, node: str | None) -> str:
        return self.names.get(node or "", node or "?")

    def the(self, node: str | None, capital: bool = False) -> str:
        """The name as it reads in a sentence: ``AWS``, ``the CGW`` (``The CGW`` at the start)."""
        n = self.name(node)
        if n == "AWS":
            return n
        return ("The " if capital else "the ") + n

    def plan(self, direction: str, t: float) -> LinkFaults:
        plan = self.links.get(direction, LinkFaults())
        for at, d, p in self.plan_changes:
            if d == direction and at <= t:
                plan = p
        return plan


def _faults(m: Mapping[str, Any]) -> LinkFaults:
    lf = LinkFaults(
        delay=float(m.get("delay", 0.0)),
        jitter=float(m.get("jitter", 0.0)),
        loss=float(m.get("loss", 0.0)),
        blackholes=[(float(a), float(b)) for a, b in m.get("blackholes") or []],
        drop_kinds=[str(k) for k in m.get("drop_kinds") or []],
    )
    if "drop_kinds_window" in m:
        w = m["drop_kinds_window"]
        lf.drop_kinds_window = (float(w[0]), float(w[1]))
    return lf


def _faults_json(m: Mapping[str, Any]) -> LinkFaults:
    lf = _faults(m)
    return lf


# ----------------------------------------------------------------------------------------------- annotation


@dataclass
class Annotation:
    """One datagram of a run, explained. ``index`` is its position among the ``datagram_sent`` records (and so
    among the pcap records); ``trace_index`` its position in the whole trace."""

    index: int
    trace_index: int
    t: float
    node: str
    peer: str | None
    kind: str
    src: str
    dst: str
    length: int
    lost: bool
    received: bool
    what: str
    """What it is: ``R-U-THERE seq 0x2b7f``, ``Main Mode 3/6 (CGW -> AWS): Diffie-Hellman ...``."""
    why: str
    """Why it was sent at that instant."""
    fate: str = ""
    """Empty when it arrived; otherwise why it did not."""
    label: str = ""
    """A short label for diagrams."""
    retransmit: int = 0
    seq: int | None = None
    message_id: int | None = None
    attempt: int | None = None
    answers: int | None = None
    """``index`` of the request this answers."""
    inferred: bool = False

    @property
    def comment(self) -> str:
        text = f"{self.what}: {self.why}" if self.why else self.what
        return f"{text}. {self.fate}" if self.fate else text

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["comment"] = self.comment
        return d


def load_trace(path: str) -> list[TraceRecord]:
    """A JSON-lines trace (``emulator.trace``) as records."""
    out = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            t = float(d.pop("t"))
            node = str(d.pop("node"))
            ev = str(d.pop("event"))
            out.append(TraceRecord(t, node, ev, d))
    return out


def _batches(records: Sequence[TraceRecord]) -> list[int]:
    """Batch id per record: consecutive records of one node at one instant (one dispatch of that node). TGW
    binding records (node ``tgw``) written from a hook inside the dispatch do not split a batch."""
    out = [0] * len(records)
    bid = 0
    last: tuple[str, float] | None = None
    for i, r in enumerate(records):
        if r.node == "tgw":
            out[i] = -1
            continue
        key = (r.node, r.t)
        if key != last:
            bid += 1
            last = key
        out[i] = bid
    return out


def _hex(v: int | None) -> str:
    return f"0x{v:08x}" if v is not None else "?"


def _secs(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") + " s"


def _at(x: float) -> str:
    return "t=" + (f"{x:.6f}".rstrip("0").rstrip("."))


def annotate_vpn(records: Sequence[TraceRecord], ctx: VpnContext | None = None) -> list[Annotation]:
    """One :class:`Annotation` per ``datagram_sent`` record of a VPN run's trace, in trace (= pcap) order."""
    ctx = ctx or VpnContext()
    batch = _batches(records)
    by_batch: dict[int, list[int]] = {}
    for i, b in enumerate(batch):
        if b >= 0:
            by_batch.setdefault(b, []).append(i)

    out: list[Annotation] = []
    alive = {"aws": True, "cgw": True}
    crashed_at: dict[str, float] = {}
    revived: dict[str, bool] = {}
    sent_any: dict[str, bool] = {}
    arrivals: dict[str, list[float]] = {"aws": [], "cgw": []}
    probe_times: dict[str, list[float]] = {}
    restart: dict[str, TraceRecord] = {}
    timeout: dict[str, TraceRecord] = {}
    rekeyed: dict[str, TraceRecord] = {}
    outstanding: dict[tuple[str, str], Annotation] = {}  # (node, request kind) -> original, unanswered
    last_request_of: dict[tuple[str, str], Annotation] = {}
    probe_by_seq: dict[tuple[str, int], Annotation] = {}
    last_response: dict[tuple[str, str], Annotation] = {}
    used: set[int] = set()
    # restart_scheduled.attempt is 1-based by declaration; an older IKEv1 engine counted from 0.
    restart_offset = 1 if any(r.event == "restart_scheduled" and r.get("attempt") == 0 for r in records) else 0

    def last_inbound(node: str, t: float) -> float | None:
        # Strictly before t: a datagram arriving at the very instant a timer fires is handled after it when the
        # timer was armed first (the scheduler is FIFO within an instant), so it cannot have caused the probe.
        xs = [a for a in arrivals.get(node, []) if a < t - 1e-9]
        return max(xs) if xs else None

    def take(bid: int, event: str, pred: Any = None) -> TraceRecord | None:
        for j in by_batch.get(bid, []):
            r = records[j]
            if j not in used and r.event == event and (pred is None or pred(r)):
                used.add(j)
                return r
        return None

    def peek(bid: int, event: str) -> TraceRecord | None:
        for j in by_batch.get(bid, []):
            if records[j].event == event:
                return records[j]
        return None

    for i, r in enumerate(records):
        ev = r.event
        if ev == "node_crashed":
            alive[r.node] = False
            crashed_at[r.node] = r.t
            continue
        if ev == "node_revived":
            alive[r.node] = True
            revived[r.node] = True
            probe_times[r.node] = []
            arrivals[r.node] = []
            outstanding = {k: v for k, v in outstanding.items() if k[0] != r.node}
            continue
        if ev == "restart_scheduled":
            restart[r.node] = r
            continue
        if ev == "dpd_timeout":
            timeout[r.node] = r
            continue
        if ev == "rekey_done":
            rekeyed[r.node] = r
            continue
        if ev != "datagram_sent":
            continue

        node = r.node
        kind = str(r.get("kind", "?"))
        src, dst = str(r.get("src", "")), str(r.get("dst", ""))
        peer = ctx.node_of(dst)
        me, them = ctx.name(node), ctx.name(peer)
        the_me, the_them, The_me = ctx.the(node), ctx.the(peer), ctx.the(node, True)
        lost = bool(r.get("lost", False))
        direction = f"{node}->{peer}"
        plan = ctx.plan(direction, r.t)
        received = not lost and peer is not None and alive.get(peer, True)
        bid = batch[i]
        title = kind_title(kind)
        a = Annotation(
            index=len(out),
            trace_index=i,
            t=r.t,
            node=node,
            peer=peer,
            kind=kind,
            src=src,
            dst=dst,
            length=int(r.get("len", 0)),
            lost=lost,
            received=received,
            what=f"{title} ({me} -> {them})",
            why="",
            label=SHORT.get(kind, kind),
        )

        # -- fate
        if lost:
            a.fate = "Lost: the link's fault plan dropped it" + _loss_detail(plan, direction, kind, r.t, ctx)
        elif not received and peer is not None:
            a.fate = f"Not received: {the_them} is down (crashed at {_at(crashed_at.get(peer, r.t))})"
        if received and peer is not None and kind not in NOT_LIVENESS:
            arrivals.setdefault(peer, []).append(r.t + plan.delay)

        rtx = take(bid, "request_retransmitted", lambda x, k=kind: x.get("kind") == k)
        first_send = not sent_any.get(node)
        sent_any[node] = True

        # -- DPD probes
        if kind in PROBES:
            probe = take(bid, "dpd_request_sent")
            seq = probe.get("seq") if probe is not None else None
            mid = probe.get("message_id") if probe is not None else None
            if mid is None and rtx is not None:
                mid = rtx.get("message_id")
            a.seq = int(seq) if seq is not None else None
            a.message_id = int(mid) if mid is not None else None
            li = last_inbound(node, r.t)
            probe_times.setdefault(node, []).append(r.t)
            attempt = probe.get("attempt") if probe is not None else None
            if attempt is None:
                # The declared field is missing (older engine): count the probes since the last inbound message.
                attempt = sum(1 for x in probe_times[node] if li is None or x > li + 1e-9)
            a.attempt = int(attempt)
            if kind == "dpd_request":
                a.what = f"R-U-THERE seq {_hex(a.seq)} ({me} -> {them})"
                a.label = f"R-U-THERE {_hex(a.seq)}"
                if a.seq is not None:
                    probe_by_seq[(node, a.seq)] = a
            else:
                a.what = f"INFORMATIONAL request, empty: liveness check, message ID {a.message_id} ({me} -> {them})"
                a.label = f"liveness req #{a.message_id}"
            if rtx is not None:
                a.retransmit = int(rtx.get("retransmit", 1))
                a.why = f"retransmission {a.retransmit} of the liveness check: no response yet" + (
                    f"; nothing heard from {the_them} since {_at(li)}" if li is not None else ""
                )
                a.label += f" (retransmit {a.retransmit})"
            elif a.attempt <= 1:
                idle = r.t - (li if li is not None else 0.0)
                a.why = f"{The_me} probes after {_secs(idle)} without inbound traffic from {the_them}" + (
                    f" (dpd_delay {_secs(ctx.dpd_delay.get(node, 10.0))})" if node in ctx.dpd_delay else ""
                )
            else:
                a.why = f"probe {a.attempt} since the last inbound message" + (
                    f" at {_at(li)}" if li is not None else ""
                )
                a.why += "; the earlier ones went unanswered"
                if node == "aws" and li is not None:
                    a.why += (
                        f"; {the_me} declares {the_them} dead at {_at(li + ctx.dpd_timeout_seconds)}"
                        f" (DPDTimeoutSeconds {ctx.dpd_timeout_seconds:g}) unless it answers"
                    )
            out.append(a)
            outstanding[(node, kind)] = a
            last_request_of[(node, kind)] = a
            continue

        if kind == "dpd_ack":
            ack = take(bid, "dpd_ack_sent")
            seq = ack.get("seq") if ack is not None else None
            a.seq = int(seq) if seq is not None else None
            a.what = f"R-U-THERE-ACK seq {_hex(a.seq)} ({me} -> {them})"
            a.label = f"ACK {_hex(a.seq)}"
            req = probe_by_seq.get((peer or "", a.seq)) if a.seq is not None else None
            if req is not None:
                a.answers = req.index
                a.why = f"ACK to R-U-THERE seq {_hex(a.seq)} sent at {_at(req.t)}: {the_me} is alive"
            else:
                a.why = f"ACK to R-U-THERE seq {_hex(a.seq)}: {the_me} is alive"
            out.append(a)
            continue

        # -- responses
        if kind in ANSWERS:
            req_a = None
            for rk in ANSWERS[kind]:
                cand = last_request_of.get((peer or "", rk))
                if cand is not None and (req_a is None or cand.index > req_a.index):
                    req_a = cand
            if req_a is not None:
                a.answers = req_a.index
                outstanding.pop((req_a.node, req_a.kind), None)
            prev = last_response.get((node, kind))
            declared = take(bid, "response_retransmitted") is not None
            # without the event: a second answer to a retransmitted request that was already answered once
            inferred_resent = (
                prev is not None
                and req_a is not None
                and req_a.retransmit > 0
                and prev.answers is not None
                and (out[prev.answers].node, out[prev.answers].kind) == (req_a.node, req_a.kind)
            )
            resent = declared or inferred_resent
            desc = KIND_TEXT.get(kind, ("", ""))[1]
            if kind == "liveness_response":
                a.message_id = req_a.message_id if req_a is not None else None
                a.label = "liveness resp" + (f" #{a.message_id}" if a.message_id is not None else "")
                a.why = f"answers the liveness check of {_at(req_a.t)}" if req_a else "answers a liveness check"
                a.why += f": {the_me} is alive"
            else:
                a.why = desc
                if req_a is not None:
                    a.why += f"; answers the {kind_title(req_a.kind)} of {_at(req_a.t)}"
            if resent:
                a.why += (
                    " (sent again, unchanged: the request was retransmitted, so the cached answer is repeated;"
                    " RFC 7296 §2.1" + ("" if declared else ", inferred") + ")"
                )
                a.label += " (again)"
            last_response[(node, kind)] = a
            if kind in REQUESTS:  # Quick Mode 2 answers QM1 and waits for QM3
                last_request_of[(node, kind)] = a
                outstanding[(node, kind)] = a
            out.append(a)
            continue

        # -- requests
        if kind in REQUESTS:
            orig = outstanding.get((node, kind))
            if rtx is not None:
                a.retransmit = int(rtx.get("retransmit", 1))
            elif orig is not None and orig.kind == kind and not (kind in INITIATIONS and node in restart):
                a.retransmit = (orig.retransmit if orig.index != a.index else 0) + 1
                a.inferred = True
            if a.retransmit:
                first = _first(node, kind, out)
                a.why = f"retransmission {a.retransmit} of the {kind_title(kind)}: no answer yet" + (
                    f" (first sent at {_at(first.t)})" if first is not None else ""
                )
                if a.inferred:
                    a.why += " (inferred: the same request again with no answer in between)"
                a.label += f" (retransmit {a.retransmit})"
                if orig is not None:
                    a.retransmit = max(a.retransmit, 1)
                outstanding[(node, kind)] = a
                last_request_of[(node, kind)] = a
                a.answers = None
                out.append(a)
                continue
            rekey = take(bid, "rekey_started")
            rs = restart.get(node)
            desc = KIND_TEXT.get(kind, ("", ""))[1]
            if kind in INITIATIONS and rs is not None and abs(float(rs.get("at", r.t)) - r.t) < 1e-3:
                attempt = int(rs.get("attempt", 1)) + restart_offset
                cause = timeout.get(node)
                action = cause.get("action") if cause is not None else ctx.dpd_timeout_action
                a.why = (
                    f"{The_me} restarts the tunnel (DPDTimeoutAction={action}, attempt {attempt}"
                    + (f", after a {_secs(float(rs.fields['delay']))} backoff" if "delay" in rs.fields else "")
                    + ")"
                )
                del restart[node]
            elif kind in INITIATIONS and revived.pop(node, False):
                a.why = f"{The_me} comes back as a fresh process (new SPIs) and initiates"
            elif kind in INITIATIONS and first_send:
                if node == "aws":
                    a.why = f"{The_me} initiates at start-up (StartupAction={ctx.startup_action})"
                else:
                    a.why = f"{the_me} initiates at start-up (StartupAction={ctx.startup_action}"
                    a.why += ": AWS waits for the CGW)" if ctx.startup_action == "add" else ")"
                a.why += f": {desc}"
            elif rekey is not None:
                what = "ISAKMP/IKE SA" if rekey.get("sa") == "ike" else "IPsec SA pair / Child SA"
                a.why = f"{The_me} rekeys the {what} before its lifetime ends (RekeyMarginTimeSeconds): {desc}"
            elif kind == "quick_mode_1":
                a.why = f"the ISAKMP SA is up; {desc}"
            elif kind == "ike_auth_request":
                a.why = f"after IKE_SA_INIT: {desc}"
            elif kind == "delete_request":
                a.why = _delete_why(take(bid, "delete_sent"), peek(bid, "dpd_timeout"), The_me, rekeyed.get(node))
            else:
                a.why = desc
            if rekey is not None and "rekeys" not in a.why:
                a.why += " (rekey)"
            outstanding[(node, kind)] = a
            last_request_of[(node, kind)] = a
            out.append(a)
            continue

        # -- everything else: IKEv1 informational / Delete, NAT-T keepalives, unknown kinds
        if kind == "delete":
            a.why = _delete_why(take(bid, "delete_sent"), peek(bid, "dpd_timeout"), The_me, rekeyed.get(node))
        else:
            a.why = KIND_TEXT.get(kind, ("", ""))[1]
        out.append(a)
    return out


def _first(node: str, kind: str, out: list[Annotation]) -> Annotation | None:
    """The original of the retransmitted request (the last non-retransmission of that kind by that node)."""
    for x in reversed(out):
        if x.node == node and x.kind == kind and x.retransmit == 0:
            return x
    return None


def _delete_why(ds: TraceRecord | None, to: TraceRecord | None, me: str, rekey: TraceRecord | None = None) -> str:
    what = ""
    if ds is not None:
        proto = ds.get("protocol")
        what = "the IKE SA" if proto in ("ike", "isakmp") else f"the IPsec SA with SPI 0x{ds.get('spi')}"
    if to is not None:
        return f"{me} deletes {what or 'its SAs'} after the DPD timeout (DPDTimeoutAction={to.get('action')})"
    text = f"{me} deletes {what or 'an SA'}"
    if rekey is not None:
        old = rekey.get("old_spi")
        if old is None or ds is None or old == ds.get("spi"):
            text += f": the one its rekey of t={rekey.t:g} replaced"
    return text


def _loss_detail(plan: LinkFaults, direction: str, kind: str, t: float, ctx: VpnContext) -> str:
    names = direction.split("->")
    d = f"{ctx.name(names[0])} -> {ctx.name(names[1]) if len(names) > 1 else '?'}"
    for a, b in plan.blackholes:
        if a <= t < b:
            until = "" if b >= 1e300 else f" until {_at(b)}"
            return f" (blackhole {d} from {_at(a)}{until})"
    w0, w1 = plan.drop_kinds_window
    if kind in plan.drop_kinds and w0 <= t < w1:
        span = f" between {_at(w0)} and {_at(w1)}" if w1 < 1e300 else ""
        return f" (it drops {', '.join(plan.drop_kinds)} datagrams {d}{span})"
    if plan.loss:
        return f" (random loss {d}, p={plan.loss:g})"
    return ""


# ------------------------------------------------------------------------------------------------- pcapng


class CaptureMismatch(ValueError):
    """The pcap and the trace do not describe the same datagrams (count or lengths differ)."""


def write_annotated_pcapng(
    pcap_path: str,
    annotations: Sequence[Annotation],
    out_path: str,
    *,
    title: str | None = None,
    interface: str = "the simulated network between the CGW and AWS (virtual time)",
) -> int:
    """Copy the classic pcap of a run to pcapng, each packet with its annotation's comment. The pcap records
    and the annotations must correspond one to one (same count, each UDP payload as long as the annotation
    says; ESP as IP protocol 50 is not UDP and is not measured); otherwise :class:`CaptureMismatch`. Returns the
    number of packets written. ``interface`` describes the capture point in the pcapng."""
    try:
        linktype, recs = read_pcap_us(pcap_path)
    except ValueError as e:
        raise CaptureMismatch(str(e)) from None
    if len(recs) != len(annotations):
        raise CaptureMismatch(f"{pcap_path}: {len(recs)} packets, but {len(annotations)} datagrams are explained")
    for (_ts, frame), a in zip(recs, annotations, strict=True):
        plen = _udp_payload_len(frame)
        if plen is not None and plen != a.length:
            raise CaptureMismatch(
                f"{pcap_path}: packet {a.index + 1} carries {plen} octets of UDP payload, the trace says {a.length}"
            )
    with open(out_path, "wb") as f:
        w = PcapngWriter(f, comment=title)
        w.add_interface(linktype, "simnet", interface)
        for (ts, frame), a in zip(recs, annotations, strict=True):
            w.write(frame, ts_us=ts, comment=a.comment)
    return len(recs)


def _udp_payload_len(frame: bytes) -> int | None:
    if not frame:
        return None
    v = frame[0] >> 4
    if v == 4:
        ihl = (frame[0] & 0xF) * 4
        if len(frame) >= ihl + 8 and frame[9] == 17:
            n = int.from_bytes(frame[ihl + 4 : ihl + 6], "big") - 8
            return n if len(frame) >= ihl + 8 + n else -1  # -1: the frame does not hold what its header says
    elif v == 6 and len(frame) >= 48 and frame[6] == 17:
        n = int.from_bytes(frame[44:46], "big") - 8
        return n if len(frame) >= 48 + n else -1
    return None


# ------------------------------------------------------------------------------------------------------ TGW

DROP_TEXT: dict[str, str] = {
    "no_route": "no route for the destination in {route_table}",
    "blackhole": "a blackhole route matches the destination",
    "mtu_exceeded": "the packet is larger than the attachment's MTU (8500 octets, 1500 on VPN); dropped silently",
    "ttl_expired": "its TTL ran out",
    "no_association": "the attachment has no route table associated",
    "no_tgw_attachment": "the VPC has no attachment to this transit gateway",
    "no_attachment_subnet_in_az": "the attachment has no subnet in the sender's AZ ({az}), so the TGW is unreachable",
    "appliance_no_state": "the stateful appliance {node} in {az} never saw this flow's first packet (no "
    "connection state), so it drops it",
    "az_failed": "the AZ {az} has failed",
    "eni_failed": "the attachment ENI has failed",
    "instance_failed": "the instance {node} is down",
    "no_healthy_eni": "the attachment has no healthy ENI left",
    "pinned_flow_blackholed": "appliance mode pinned the flow to an ENI that failed; the pin now blackholes it",
    "vpn_tunnel_down": "every tunnel of the VPN attachment is DOWN",
    "destination_unreachable": "nothing owns the destination address",
    "max_hops_exceeded": "the path loops",
    "unknown_source": "the sender is not known to the topology",
}


def drop_explanation(reason: str, hop: Mapping[str, Any] | None = None) -> str:
    """A sentence for a TGW drop reason, filled in from the hop where it happened."""
    h = dict(hop or {})
    text = DROP_TEXT.get(reason, reason.replace("_", " "))
    if not h.get("route_table"):
        text = text.replace(" in {route_table}", "")
    return text.format(
        node=h.get("node", "?"), az=h.get("az") or h.get("az_id") or "?", route_table=h.get("route_table") or "?"
    )


def hop_comment(
    hop: Mapping[str, Any],
    number: int,
    total: int,
    direction: str,
    *,
    drop: Mapping[str, Any] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> str:
    """The comment for the capture of one hop: which hop of which direction, where (AZ, attachment, ENI, the
    route used), and, at the last hop of a dropped packet, why it died there."""
    kind = str(hop.get("kind", ""))
    node = str(hop.get("node", "?"))
    where = []
    if hop.get("az"):
        where.append(str(hop["az"]))
    if hop.get("attachment"):
        where.append(f"attachment {hop['attachment']}")
    if hop.get("eni") and kind != "tgw-attachment-eni":
        where.append(f"ENI {hop['eni']}")
    head = f"{direction} hop {number}/{total}: {node} ({kind}"
    head += ", " + ", ".join(where) + ")" if where else ")"
    parts = [head]
    if kind == "tgw":
        if hop.get("az") is None and previous is not None and previous.get("kind") == "tgw":
            parts.append("arrived over the peering attachment (no ingress AZ)")
        if hop.get("route"):
            parts.append(f"route table {hop.get('route_table')}: {hop['route']}")
        if hop.get("egress_attachment"):
            eg = f"leaves through {hop['egress_attachment']}"
            if hop.get("egress_eni"):
                eg += f" ENI {hop['egress_eni']} in {hop.get('egress_az')}"
            if hop.get("appliance_mode"):
                eg += " (appliance mode: one ENI per flow, both directions)"
            elif hop.get("egress_eni") and hop.get("az") and hop.get("egress_az") == hop.get("az"):
                eg += " (AZ affinity: the same AZ it entered in)"
            parts.append(eg)
    elif hop.get("route"):
        parts.append(f"route table {hop.get('route_table')}: {hop['route']}")
    if hop.get("verdict") == "delivered":
        parts.append("delivered")
    if drop is not None:
        parts.append("DROPPED: " + drop_explanation(str(drop.get("reason", "")), hop))
    return "; ".join(parts)


@dataclass
class HopCapture:
    """One packet as captured at one hop, with its comment."""

    capture: str
    """The capture point (``i-a``, ``tgw-1.tgw-attach-a``, ``eni-c-use1-az1``)."""
    ts_us: int
    frame: bytes
    comment: str
    direction: str
    hop: int


def pair_hops(
    captures: Sequence[tuple[str, int, bytes]], hops: Sequence[Mapping[str, Any]], direction: str
) -> list[HopCapture]:
    """Pair one packet's captures (capture point, µs, frame; in the order the dataplane made them) with its
    traced hops. Each capture belongs to the next hop of the same node (a TGW captures per ingress attachment,
    ``<tgw>.<attachment>``); hops without a capture (an IGW, a VPN attachment, the ``drop`` record) are
    skipped. The drop's explanation goes on the last capture. Raises :class:`CaptureMismatch` when a capture
    matches no hop."""
    real = [h for h in hops if h.get("kind") != "drop"]
    drop = next((h for h in hops if h.get("kind") == "drop"), None)
    pairs: list[tuple[tuple[str, int, bytes], int]] = []
    k = 0
    for cap in captures:
        point = cap[0]
        while k < len(real) and not (point == real[k].get("node") or point.startswith(f"{real[k].get('node')}.")):
            k += 1
        if k == len(real):
            raise CaptureMismatch(f"{direction}: capture at {point} matches no remaining hop")
        pairs.append((cap, k))
        k += 1
    out = []
    for n, ((point, ts, frame), k) in enumerate(pairs, 1):
        h = real[k]
        last = n == len(pairs)
        prev = real[k - 1] if k > 0 else None
        c = hop_comment(h, k + 1, len(real), direction, drop=drop if last else None, previous=prev)
        out.append(HopCapture(point, ts, frame, c, direction, k + 1))
    return out


def write_hop_pcapngs(hop_caps: Iterable[HopCapture], directory: str, *, linktype: int = 101) -> dict[str, str]:
    """One annotated pcapng per capture point (``<point>.pcapng``) and ``path.pcapng`` with every hop of every
    packet in order, one named interface per capture point, and ``path.pcap``, the same without comments.
    Returns capture point -> path (``*`` for path.pcapng, ``pcap`` for path.pcap)."""
    import os

    os.makedirs(directory, exist_ok=True)
    items = list(hop_caps)
    per: dict[str, list[HopCapture]] = {}
    for hc in items:
        per.setdefault(hc.capture, []).append(hc)
    paths: dict[str, str] = {}
    for point, hcs in per.items():
        p = os.path.join(directory, _safe(point) + ".pcapng")
        with open(p, "wb") as f:
            w = PcapngWriter(f, comment=f"capture point {point}")
            w.add_interface(linktype, point)
            for hc in hcs:
                w.write(hc.frame, ts_us=hc.ts_us, comment=hc.comment)
        paths[point] = p
    allp = os.path.join(directory, "path.pcapng")
    with open(allp, "wb") as f:
        w = PcapngWriter(f, comment="every hop of every packet, in the order the dataplane forwarded them")
        ids = {point: w.add_interface(linktype, point) for point in per}
        for hc in items:
            w.write(hc.frame, ts_us=hc.ts_us, interface=ids[hc.capture], comment=hc.comment)
    paths["*"] = allp
    # the same packets as classic pcap, for tools that read only that (``awsnetemu tgw replay`` among them)
    import struct

    plain = os.path.join(directory, "path.pcap")
    with open(plain, "wb") as fb:
        fb.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for hc in items:
            sec, usec = divmod(hc.ts_us, 1_000_000)
            fb.write(struct.pack("<IIII", sec, usec, len(hc.frame), len(hc.frame)) + hc.frame)
    paths["pcap"] = plain
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
