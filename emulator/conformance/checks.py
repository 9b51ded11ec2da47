"""The battery: every check, its ID, level, sources and bound, and the code that decides it.

Check IDs are stable (``AWS-<GROUP>-<NN>``); new checks get new numbers, a retired number is never reused.
Each check function gets a :class:`~emulator.conformance.session.CheckContext` and returns an
:class:`~emulator.conformance.model.Outcome`. The functions are importable building blocks
(:data:`CHECKS`, :func:`get_check`); the pytest plugin runs them against an endpoint of the user's own.

Sources cited (short names used in ``cites``):

* AWS-CGW: AWS Site-to-Site VPN User Guide, "Your customer gateway device" / "Requirements for your customer
  gateway device" (one SA pair per tunnel, Main Mode only with IKEv1, PFS, DPD, NAT-T on UDP 4500).
* AWS-GEN: the generic configuration file AWS issues for a connection ("DPD Interval : 10, DPD Retries : 3").
* AWS-KC: AWS knowledge-center article on tunnel instability and DPD (probes after 10 s without traffic,
  peer dead after three failed probes).
* AWS-OPT: the tunnel options (VpnTunnelOptionsSpecification: DPDTimeoutSeconds/Action, StartupAction,
  lifetimes, RekeyMarginTimeSeconds, algorithms).
* AWS-INIT: "AWS Site-to-Site VPN tunnel initiation options" (who initiates with add / start).
* AWS-REPL: tunnel endpoint replacement (the endpoint comes back as a new IKE peer on the same address).
* RFC 2408, RFC 2409 (IKEv1), RFC 3706 (DPD), RFC 3947 / RFC 3948 (NAT-T), RFC 7296 (IKEv2).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from cgw_peer.config import DpdTimeoutAction, IkeVersion, PeerConfig, Role, StartupAction, TrafficSelector
from cgw_peer.ikev1.proposals import GROUP_NAMES, P1Suite, aws_p1_candidates
from cgw_peer.ikev2 import codec as v2codec
from cgw_peer.ikev2.constants import Payload, TransformType
from cgw_peer.ikev2.proposals import ike_offer
from cgw_peer.wire.constants import NATT_RFC3947_VENDOR_ID
from cgw_peer.wire.payloads import Attribute, Transform
from emulator.actions import Action, Event, Transmit
from emulator.conformance.model import CheckFn, CheckSpec, Level, Outcome, Verdict
from emulator.conformance.probe import Probe, engine_exchange
from emulator.conformance.scenarios import (
    Outage,
    Startup,
    device_initiation,
    is_initiation,
    outage,
    outage_key,
    startup,
)
from emulator.conformance.session import CheckContext, Datagram, EventRecord, Session
from emulator.conformance.wire import (
    NATT_PORT,
    NON_ESP_MARKER,
    IkeInfo,
    SaInit,
    classify,
    v1_lifetime,
    v1_main_mode_1,
    v1_notifies,
    v1_offer,
    v1_transform_name,
    v1_vendor_ids,
    v2_parse,
    v2_proposal_name,
    v2_sa_init,
    v2_sa_init_answer,
)

PASS, FAIL, WARN, SKIP, UNSUPPORTED = Verdict.PASS, Verdict.FAIL, Verdict.WARN, Verdict.SKIP, Verdict.UNSUPPORTED

CHECKS: list[CheckSpec] = []
"""The battery, in run order."""


def check(
    id: str,
    title: str,
    group: str,
    level: Level,
    *,
    versions: Sequence[int] = (1, 2),
    cites: Sequence[str],
    requirement: str,
    bound: str,
    needs_tunnel: bool = True,
    needs_child: bool = True,
    hard_limit: float = 180.0,
) -> Callable[[CheckFn], CheckFn]:
    """Register a check function (see the module docstring)."""

    def deco(fn: CheckFn) -> CheckFn:
        if any(c.id == id for c in CHECKS):
            raise ValueError(f"check {id} declared twice")
        CHECKS.append(
            CheckSpec(
                id,
                title,
                group,
                level,
                frozenset(versions),
                tuple(cites),
                requirement,
                bound,
                fn,
                needs_tunnel,
                needs_child,
                hard_limit,
            )
        )
        return fn

    return deco


def get_check(check_id: str) -> CheckSpec:
    """The check with this ID (KeyError naming the known IDs otherwise)."""
    for c in CHECKS:
        if c.id == check_id:
            return c
    raise KeyError(f"no check {check_id!r} (known: {', '.join(c.id for c in CHECKS)})")


# ================================================================================================ helpers


async def get_startup(ctx: CheckContext) -> Startup:
    st: Startup = await ctx.session.scenario("startup", lambda: startup(ctx.session))
    ctx.use(st.start, st.end)
    return st


async def get_outage(ctx: CheckContext, sa: StartupAction, action: DpdTimeoutAction) -> Outage:
    s = ctx.session
    o: Outage = await s.scenario(outage_key(sa, action), lambda: outage(s, sa, action))
    ctx.use(o.start, o.end)
    return o


def _sa_of(d: Datagram, spis: set[bytes] | frozenset[bytes]) -> bool:
    return d.info.kind == "ike" and (d.info.spi_i in spis or d.info.spi_r in spis)


def _secs(x: float) -> str:
    return f"{x:.1f} s"


async def verify_alive(ctx: CheckContext, since_ev: int | None = None) -> EventRecord | None:
    """A DPD / liveness exchange on the running engine's IKE SA succeeds (after ``since_ev``): IKEv2 sends a
    liveness check now; IKEv1 waits for AWS's next R-U-THERE (after the AWS DPD delay) or the device's own."""
    s = ctx.session
    t = s.timers
    mark = len(s.events) if since_ev is None else since_ev
    if s.version == 2:
        s.call_engine(lambda e, now: e.check_liveness(now), "check_liveness")
        return await s.wait_event("dpd_ack_received", t.aws_request_budget + 1.0, since=mark)

    def ok(r: EventRecord) -> bool:
        return r.name == "dpd_request_received" or bool(r.get("valid", True))

    wait = t.aws_dpd_delay + t.aws_dpd_interval + 2.0
    rec = await s.wait_event("dpd_ack_received", wait, since=mark, pred=ok)
    if rec is None:
        rec = next((r for r in s.events_since(mark, "dpd_request_received", current=True)), None)
    return rec


def _lost_tunnel(s: Session, since_ev: int) -> EventRecord | None:
    """An event of the running engine since ``since_ev`` showing the tunnel was lost."""
    for r in s.events_since(since_ev, current=True):
        if r.name in ("tunnel_down", "delete_received", "ike_sa_replaced"):
            return r
    return None


def _transmit_kind(version: int, what: str) -> str:
    return {
        (1, "probe"): "dpd_request",
        (2, "probe"): "liveness_request",
        (1, "child_rekey"): "quick_mode_1",
        (2, "child_rekey"): "create_child_sa_request",
    }[(version, what)]


def _rekey_child(engine: Any, now: float) -> list[Action]:
    """Start a Child SA / IPsec SA rekey now. IKEv2: the engine's ``rekey_child``. IKEv1: the engine has no
    public equivalent yet, so its Quick Mode initiation is called directly (``_initiate_qm``)."""
    fn = getattr(engine, "rekey_child", None)
    if callable(fn):
        out: list[Action] = fn(now)
        return out
    children = [c for c in getattr(engine, "children", []) if not getattr(c, "replaced", False)]
    init = getattr(engine, "_initiate_qm", None)
    if init is None or not children:
        return []
    engine._out = []
    engine._sa_at_dirty = True
    init(now, children[-1])
    return list(engine._out)


def has_rekey_hooks(engine: Any) -> bool:
    """The engine can be told to rekey now (IKEv2 ``rekey_child`` / ``rekey_ike``; IKEv1 its Quick Mode and Main
    Mode initiations)."""
    return callable(getattr(engine, "rekey_child", None)) or callable(getattr(engine, "_initiate_qm", None))


def _rekey_ike(engine: Any, now: float) -> list[Action]:
    """Start an IKE SA rekey now (IKEv2 ``rekey_ike``; IKEv1: a new Main Mode, ``_initiate_mm(rekey=True)``)."""
    fn = getattr(engine, "rekey_ike", None)
    if callable(fn):
        out: list[Action] = fn(now)
        return out
    init = getattr(engine, "_initiate_mm", None)
    if init is None:
        return []
    engine._out = []
    engine._sa_at_dirty = True
    init(now, rekey=True)
    return list(engine._out)


def _live_children(engine: Any) -> list[Any]:
    if hasattr(engine, "child_sas"):
        return [c for c in engine.child_sas() if getattr(c, "replaced_by", None) is None]
    return [c for c in getattr(engine, "children", []) if not getattr(c, "replaced", False)]


def _aws_suites_v1(ctx: CheckContext) -> list[P1Suite]:
    return aws_p1_candidates(ctx.session.settings.profile.options)


def _v2_offer_config(ctx: CheckContext, **opts: Any) -> PeerConfig:
    o = replace(ctx.session.settings.profile.options, pre_shared_key=None, **opts)
    return PeerConfig(role=Role.CGW, ike_version=IkeVersion.IKEV2, options=o)


def _v2_proposals(cfg: PeerConfig) -> list[v2codec.Proposal]:
    return ike_offer(cfg).proposals(1, b"")


async def _sa_init_probe(
    ctx: CheckContext,
    proposals: list[v2codec.Proposal],
    group: int,
    *,
    extra: tuple[tuple[int, bytes, bool], ...] = (),
    port: int | None = None,
) -> tuple[Datagram | None, list[Datagram], SaInit]:
    """One IKE_SA_INIT request and the device's answer (a COOKIE request is honoured once, RFC 7296 §2.6)."""
    s = ctx.session
    dst = (s.settings.cgw[0], port or s.settings.cgw[1])
    msg = v2_sa_init(s.rng, proposals, group, extra=extra)
    async with await Probe.open(s, dst) as p:

        def match(info: IkeInfo) -> bool:
            return info.version == 2 and info.spi_i == msg.spi_i and info.response

        ans, sent = await p.request(msg.data, match)
        if ans is not None:
            m = v2_parse(ans.info)
            cookie = m.notify(16390) if m is not None else None
            if cookie is not None:
                body = msg.data[28:]
                np = msg.data[16]
                n = v2codec.NotifyPayload(16390, cookie.data).encode()
                chain = struct.pack("!BBH", np, 0, 4 + len(n)) + n + body
                hdr = v2codec.Header(msg.spi_i, bytes(8), Payload.NOTIFY, 34, 0x08, 0)
                data = hdr.encode(28 + len(chain)) + chain
                ans, more = await p.request(data, match)
                sent += more
    return ans, sent, msg


async def _mm1_probe(
    ctx: CheckContext,
    suites: list[P1Suite] | None = None,
    *,
    transforms: list[Transform] | None = None,
    extra_vids: tuple[bytes, ...] = (),
    port: int | None = None,
) -> tuple[Datagram | None, list[Datagram]]:
    """One Main Mode message 1 and the device's answer (MM2 or an unprotected notify)."""
    s = ctx.session
    dst = (s.settings.cgw[0], port or s.settings.cgw[1])
    icookie = s.rng.randbytes(8)
    msg = v1_main_mode_1(icookie, suites, transforms=transforms, extra_vids=extra_vids)
    async with await Probe.open(s, dst) as p:
        return await p.request(msg, lambda info: info.version == 1 and info.spi_i == icookie)


def _answer_text(outcome: str, detail: str) -> str:
    """A probe's answer in words."""
    return {
        "accepted": f"chose {detail}",
        "invalid_ke": f"INVALID_KE_PAYLOAD asking for {detail}, i.e. the request was processed",
        "refused": f"refused with {detail}",
        "critical": detail,
        "cookie": "asked for a COOKIE",
    }.get(outcome, detail)


def _mm_answer(d: Datagram | None) -> tuple[str, str]:
    """How a device answered MM1: ``accepted`` (its choice), ``refused`` (notify) or ``none``."""
    if d is None:
        return "none", "no answer"
    offer = v1_offer(d.info)
    if offer:
        return "accepted", v1_transform_name(offer[0])
    notes = v1_notifies(d.info)
    if notes:
        return "refused", ", ".join("NO_PROPOSAL_CHOSEN" if n == 14 else f"notify {n}" for n in notes)
    if d.info.encrypted:
        return "refused", "an encrypted answer"
    return "refused", "an answer without an SA payload"


# ============================================================================================= transport


@check(
    "AWS-TRN-01",
    "The device answers IKE on UDP 500",
    "transport",
    Level.BASIC,
    cites=("AWS-CGW: firewall rules I1/O1, UDP 500", "RFC 2408 §2.5.2 / RFC 7296 §2 (UDP port 500)"),
    requirement="An IKE request sent to the device's IKE port gets an IKE answer (any: a choice or a refusal).",
    bound="3 tries, 1 s apart (3 s)",
    needs_tunnel=False,
    needs_child=False,
    hard_limit=30,
)
async def trn_ike_port(ctx: CheckContext) -> Outcome:
    s = ctx.session
    if ctx.version == 1:
        ans, sent = await _mm1_probe(ctx, _aws_suites_v1(ctx))
        outcome, detail = _mm_answer(ans)
    else:
        cfg = _v2_offer_config(ctx)
        props = _v2_proposals(cfg)
        ans, sent, _ = await _sa_init_probe(ctx, props, ike_offer(cfg).dhs[0])
        parsed = v2_parse(ans.info) if ans is not None else None
        outcome, detail = v2_sa_init_answer(parsed) if parsed is not None else ("none", "")
    port = s.settings.cgw[1]
    if ans is None:
        return Outcome(
            FAIL,
            f"no answer from {s.settings.cgw[0]}:{port} to {len(sent)} IKE requests ({ctx.pkts(sent)})",
            "Nothing came back within the bound: UDP 500 is filtered, or the device ignores IKE from this address "
            "(its peer address must be the AWS endpoint's, here the battery's --local).",
        )
    return Outcome(PASS, f"answered on UDP {port} ({ctx.pkt(ans)}: {_answer_text(outcome, detail)})")


@check(
    "AWS-TRN-02",
    "NAT traversal offered and used consistently",
    "transport",
    Level.BASIC,
    cites=("AWS-CGW: NAT-T needs UDP 4500", "AWS-GEN: NAT-T on UDP 4500", "RFC 3947 §3-4", "RFC 3948 §2.2"),
    requirement="The device advertises NAT-T (IKEv1: the RFC 3947 vendor ID and NAT-D payloads; IKEv2: "
    "NAT_DETECTION notifies) and, once it uses UDP 4500, sends every IKE message there with the non-ESP marker.",
    bound="the start-up negotiation",
    needs_tunnel=False,
    needs_child=False,
)
async def trn_nat_t(ctx: CheckContext) -> Outcome:
    s = ctx.session
    st = await get_startup(ctx)
    window = s.datagrams[st.start : st.end]
    dev = [d for d in window if d.from_device and d.info.kind == "ike" and d.via == "endpoint"]
    if not dev:
        return Outcome(FAIL, "no answer: the device sent no IKE message during start-up")
    first = next((d for d in dev if is_initiation(d.info) or (not d.info.encrypted)), dev[0])
    advertised = False
    if ctx.version == 1:
        advertised = any(NATT_RFC3947_VENDOR_ID in v1_vendor_ids(d.info) for d in dev)
    else:
        for d in dev:
            m = v2_parse(d.info)
            if m is not None and (m.notify(16388) is not None or m.notify(16389) is not None):
                advertised = True
    on_natt = [d for d in dev if d.src[1] == NATT_PORT]
    bad = [d for d in on_natt if not d.info.marker]
    if bad:
        return Outcome(
            FAIL,
            f"IKE on UDP 4500 without the non-ESP marker ({ctx.pkts(bad)})",
            "RFC 3948 §2.2: IKE messages on the NAT-T port start with four zero octets; without them the "
            "receiver reads the IKE header as an ESP SPI and drops the message.",
        )
    floated = f"moved to UDP 4500 with the marker from {ctx.pkt(on_natt[0])}" if on_natt else "stayed on its IKE port"
    if not advertised:
        return Outcome(
            WARN,
            f"the device did not advertise NAT-T ({ctx.pkt(first)}); it {floated}",
            "Without NAT-T the tunnel cannot work through a NAT between the device and AWS (AWS-CGW). Fine only if "
            "the device's public address is its own.",
        )
    return Outcome(PASS, f"NAT-T advertised ({ctx.pkt(first)}); the device {floated}")


@check(
    "AWS-TRN-03",
    "The device answers IKE on UDP 4500 with the non-ESP marker",
    "transport",
    Level.ADVANCED,
    cites=("RFC 3947 §4 (IKE on port 4500)", "RFC 3948 §2.2 (non-ESP marker)", "AWS-CGW: UDP 4500 for NAT-T"),
    requirement="A NAT-T capable device answers an IKE request that arrives on UDP 4500 with the marker, on 4500.",
    bound="3 tries, 1 s apart (3 s)",
    needs_tunnel=False,
    needs_child=False,
    hard_limit=30,
)
async def trn_natt_port(ctx: CheckContext) -> Outcome:
    s = ctx.session
    if s.settings.cgw[1] != 500:
        return Outcome(UNSUPPORTED, f"the device's IKE port is {s.settings.cgw[1]}, not 500: no separate NAT-T port")
    if ctx.version == 1:
        ans, sent = await _mm1_probe(ctx, _aws_suites_v1(ctx), port=NATT_PORT)
    else:
        cfg = _v2_offer_config(ctx)
        ans, sent, _ = await _sa_init_probe(ctx, _v2_proposals(cfg), ike_offer(cfg).dhs[0], port=NATT_PORT)
    if ans is None:
        return Outcome(
            WARN,
            f"no answer on UDP 4500 ({ctx.pkts(sent)})",
            "The device does not take IKE on its NAT-T port: an AWS endpoint behind address translation, or a "
            "NAT on the device's side that maps 500 and 4500 differently, would break the tunnel.",
        )
    if not ans.info.marker:
        return Outcome(FAIL, f"answered on 4500 without the non-ESP marker ({ctx.pkt(ans)})")
    return Outcome(PASS, f"answered on UDP 4500 with the non-ESP marker ({ctx.pkt(ans)})")


# ================================================================================================ phase 1


@check(
    "AWS-P1-01",
    "The IKE SA comes up (the device initiates with StartupAction=add)",
    "phase1",
    Level.BASIC,
    cites=(
        "AWS-CGW: the customer gateway device must initiate the tunnels",
        "AWS-OPT: StartupAction",
        "RFC 2409 §5",
        "RFC 7296 §1.2",
    ),
    requirement="With StartupAction=add AWS never initiates: the device must start IKE itself and complete it "
    "with the IKE version and the proposals of the connection.",
    bound="the device's first initiation within 10 s (--fast) / 60 s, then the AWS retransmission budget",
    needs_tunnel=False,
    needs_child=False,
)
async def p1_up(ctx: CheckContext) -> Outcome:
    s = ctx.session
    st = await get_startup(ctx)
    aws_starts = s.settings.profile.options.startup_action is StartupAction.START
    other = [
        d
        for d in s.datagrams[st.start : st.end]
        if d.from_device and d.info.kind == "ike" and d.info.version != ctx.version
    ]
    if st.ike is None:
        if not any(d.from_device for d in s.datagrams[st.start : st.end]):
            return Outcome(FAIL, "no answer: the device sent nothing, and did not answer AWS's initiation")
        if other:
            return Outcome(
                FAIL,
                f"the device speaks IKEv{other[0].info.version} ({ctx.pkt(other[0])}), the battery IKEv{ctx.version}",
                "Run with --ike-version matching the device, or configure the device for the version AWS allows.",
            )
        why = "; ".join(f"{r.get('exchange')}: {r.get('reason')}" for r in st.failures) or "no IKE SA"
        return Outcome(FAIL, f"the IKE SA did not come up ({why})")
    detail = f"{st.ike.get('proposal')}"
    if st.aws_initiated and not aws_starts:
        return Outcome(
            FAIL,
            f"the device did not initiate within {_secs(s.timers.device_first_initiation)}; AWS had to ({detail})",
            "With StartupAction=add the AWS endpoint never initiates (AWS-CGW): this tunnel would stay DOWN "
            "until the device sends traffic or is told to start (strongSwan: start_action = start).",
        )
    who = "AWS (StartupAction=start)" if st.aws_initiated else f"the device ({ctx.pkt(st.first)})" if st.first else "?"
    return Outcome(
        PASS,
        f"IKEv{ctx.version} SA up, {detail}, initiated by {who}",
        measurements={"proposal": st.ike.get("proposal"), "initiator": "aws" if st.aws_initiated else "device"},
    )


def _p1_allowed_v1(ctx: CheckContext) -> set[str]:
    return {x.name for x in _aws_suites_v1(ctx)}


@check(
    "AWS-P1-02",
    "The device offers proposals AWS accepts",
    "phase1",
    Level.BASIC,
    cites=(
        "AWS-OPT: Phase1EncryptionAlgorithms, Phase1IntegrityAlgorithms, Phase1DHGroupNumbers",
        "AWS-CGW: complete agreement among the parameters",
        "RFC 2409 §5 / RFC 7296 §2.7",
    ),
    requirement="At least one of the device's phase-1 proposals lies within the connection's allowed algorithms; "
    "those outside are ignored by AWS.",
    bound="the device's first initiation",
    needs_tunnel=False,
    needs_child=False,
)
async def p1_offer(ctx: CheckContext) -> Outcome:
    st = await get_startup(ctx)
    opts = ctx.session.settings.profile.options
    allowed_text = (
        f"Phase1EncryptionAlgorithms={','.join(opts.phase1_encryption_algorithms)}, "
        f"Phase1IntegrityAlgorithms={','.join(opts.phase1_integrity_algorithms)}, "
        f"Phase1DHGroupNumbers={','.join(str(g) for g in opts.phase1_dh_group_numbers)}"
    )
    init = st.first
    if init is None:
        return Outcome(UNSUPPORTED, "the device did not initiate: its offer was not seen")
    if ctx.version == 1:
        offered = [v1_transform_name(t) for t in v1_offer(init.info)]
        allowed = _p1_allowed_v1(ctx)
        inside = [n for n in offered if n in allowed]
    else:
        m = v2_parse(init.info)
        props = m.proposals() if m else []
        offered = [v2_proposal_name(p) for p in props]
        aws = ike_offer(_v2_offer_config(ctx))
        inside = []
        for p, name in zip(props, offered, strict=True):
            if aws_choice_v2(aws, p) is not None:
                inside.append(name)
    if not offered:
        return Outcome(FAIL, f"no SA payload could be read in the device's first message ({ctx.pkt(init)})")
    if not inside:
        return Outcome(
            FAIL,
            f"the device offered only {', '.join(offered)} ({ctx.pkt(init)}): none is allowed by the connection",
            f"AWS accepts {allowed_text}; the negotiation fails with NO_PROPOSAL_CHOSEN.",
            {"offered": offered},
        )
    outside = [n for n in offered if n not in inside]
    extra = f"; ignored by AWS: {', '.join(outside)}" if outside else ""
    return Outcome(
        PASS,
        f"{len(inside)} of {len(offered)} offered proposals allowed ({ctx.pkt(init)}){extra}",
        measurements={"offered": offered, "allowed": inside},
    )


def aws_choice_v2(aws: Any, p: v2codec.Proposal) -> tuple[int, Any] | None:
    """Would the AWS endpoint accept this one proposal (any KE group it offers)?"""
    from cgw_peer.ikev2.proposals import select_ike

    return select_ike(aws, [p], None)


@check(
    "AWS-P1-03",
    "Which of AWS's phase-1 proposals the device accepts, and its preferred one",
    "phase1",
    Level.ADVANCED,
    cites=(
        "AWS-OPT: the phase-1 algorithm lists",
        "AWS-CGW: AES-128/256, SHA-1/SHA-2, DH groups",
        "RFC 2409 §5 / RFC 7296 §2.7 (the responder picks one)",
    ),
    requirement="Offered AWS's proposals, the device picks one (its preference); offered the rest, it says "
    "which others it would take. It must accept at least one.",
    bound="at most 6 probes of 3 tries, 1 s apart",
    needs_tunnel=False,
    needs_child=False,
    hard_limit=60,
)
async def p1_accepts(ctx: CheckContext) -> Outcome:
    accepted: list[str] = []
    answers: list[Datagram] = []
    refused_at: Datagram | None = None
    silent = False
    if ctx.version == 1:
        remaining = _aws_suites_v1(ctx)
        for _ in range(6):
            if not remaining:
                break
            ans, _sent = await _mm1_probe(ctx, remaining)
            outcome, detail = _mm_answer(ans)
            if ans is None:
                silent = True
                break
            answers.append(ans)
            if outcome != "accepted":
                refused_at = ans
                break
            accepted.append(detail)
            remaining = [x for x in remaining if x.name != detail]
    else:
        opts = ctx.session.settings.profile.options
        encs = list(opts.phase1_encryption_algorithms)
        for _ in range(6):
            if not encs:
                break
            cfg = _v2_offer_config(ctx, phase1_encryption_algorithms=tuple(encs))
            offer = ike_offer(cfg)
            ans, _sent, _msg = await _sa_init_probe(ctx, _v2_proposals(cfg), offer.dhs[0])
            if ans is None:
                silent = True
                break
            answers.append(ans)
            m = v2_parse(ans.info)
            outcome, detail = v2_sa_init_answer(m) if m is not None else ("error", "unreadable")
            if outcome == "invalid_ke":
                ans2, _s2, _m2 = await _sa_init_probe(ctx, _v2_proposals(cfg), _group_number(detail) or offer.dhs[0])
                if ans2 is not None and (m2 := v2_parse(ans2.info)) is not None:
                    answers.append(ans2)
                    outcome, detail = v2_sa_init_answer(m2)
            if outcome != "accepted":
                refused_at = ans
                break
            accepted.append(detail)
            enc_name = _aws_enc_of(detail)
            if enc_name not in encs:
                break
            encs.remove(enc_name)
    meas = {"accepted": accepted, "preferred": accepted[0] if accepted else None}
    if not accepted:
        if silent and not answers:
            return Outcome(FAIL, "no answer to a probe offering AWS's proposals", measurements=meas)
        return Outcome(
            FAIL,
            f"the device refused every AWS proposal ({ctx.pkt(refused_at) if refused_at else 'no answer'})",
            "Its policy has no algorithm combination in common with the connection's tunnel options: the tunnel "
            "can never come up.",
            meas,
        )
    tail = f", then refused the rest ({ctx.pkt(refused_at)})" if refused_at else ""
    if silent:
        tail = " (then stopped answering: a half-open SA limit?)"
    return Outcome(
        PASS,
        f"prefers {accepted[0]} ({ctx.pkt(answers[0])}); accepts {', '.join(accepted)}{tail}",
        measurements=meas,
    )


def _group_number(name: str) -> int | None:
    for num, n in GROUP_NAMES.items():
        if n == name:
            return num
    return None


def _aws_enc_of(name: str) -> str:
    """``aes256gcm16-prfsha384-ecp384`` -> ``AES256-GCM-16`` (the AWS spelling of its encryption)."""
    head = name.split("-")[0]
    if "gcm" in head:
        return f"AES{head[3:6]}-GCM-16"
    return head.upper()


@check(
    "AWS-P1-04",
    "A proposal AWS never offers is refused",
    "phase1",
    Level.ADVANCED,
    cites=("AWS-CGW: AES-128/256, SHA-1/SHA-2 only", "AWS-OPT: the phase-1 algorithm lists"),
    requirement="Offered only a suite outside AWS's algorithms (3DES / SHA-1 / MODP-1024 with IKEv1, 3DES with "
    "IKEv2), the device refuses it: its policy is limited to what the AWS tunnel uses.",
    bound="3 tries, 1 s apart (3 s)",
    needs_tunnel=False,
    needs_child=False,
    hard_limit=30,
)
async def p1_refuses_foreign(ctx: CheckContext) -> Outcome:
    if ctx.version == 1:
        t = Transform(
            1,
            1,
            (
                Attribute(1, 5),
                Attribute(2, 2),
                Attribute(3, 1),
                Attribute(4, 2),
                Attribute(11, 1),
                Attribute(12, 28800),
            ),
        )
        ans, sent = await _mm1_probe(ctx, transforms=[t])
        outcome, detail = _mm_answer(ans)
        what = "3des-sha1-modp1024"
    else:
        props = [
            v2codec.Proposal(
                1,
                1,
                b"",
                [
                    v2codec.Transform(TransformType.ENCR, 3),
                    v2codec.Transform(TransformType.PRF, 2),
                    v2codec.Transform(TransformType.INTEG, 2),
                    v2codec.Transform(TransformType.DH, 14),
                ],
            )
        ]
        ans, sent, _ = await _sa_init_probe(ctx, props, 14)
        m = v2_parse(ans.info) if ans else None
        outcome, detail = v2_sa_init_answer(m) if m is not None else ("none", "no answer")
        what = "3des-sha1-prfsha1-modp2048"
    if ans is None:
        return Outcome(PASS, f"no answer to an offer of only {what} ({ctx.pkts(sent)}): not accepted")
    if outcome in ("accepted", "invalid_ke"):
        return Outcome(
            WARN,
            f"the device accepted {what} ({ctx.pkt(ans)}), which AWS never offers",
            "Harmless for the AWS tunnel (AWS never proposes it), but the device's policy is wider than the "
            "connection needs; an attacker in the path cannot downgrade AWS, yet other peers of this policy could.",
        )
    return Outcome(PASS, f"refused {what} ({ctx.pkt(ans)}: {detail})")


@check(
    "AWS-P1-05",
    "A wrong pre-shared key is refused and the tunnel survives",
    "phase1",
    Level.BASIC,
    cites=(
        "RFC 2409 §5.4 (HASH_I with the pre-shared key)",
        "RFC 7296 §2.15, §2.21.2 (AUTHENTICATION_FAILED)",
        "RFC 7296 §2.4 / RFC 2407 §4.6.3.3 (INITIAL_CONTACT only when authenticated)",
    ),
    requirement="A negotiation authenticated with another key fails (IKEv2: with AUTHENTICATION_FAILED), and "
    "the unauthenticated INITIAL_CONTACT it carries does not tear down the working tunnel.",
    bound="the negotiation (AWS retransmission schedule), then one DPD exchange",
    hard_limit=90,
    needs_child=False,
)
async def p1_wrong_psk(ctx: CheckContext) -> Outcome:
    from cgw_peer.peer import create_peer

    s = ctx.session
    mark_ev = len(s.events)
    cfg = PeerConfig(
        role=Role.CGW,
        ike_version=IkeVersion.IKEV1 if ctx.version == 1 else IkeVersion.IKEV2,
        options=replace(s.settings.profile.options, pre_shared_key=None),
        behaviour=replace(
            s.config.behaviour if s.config else PeerConfig(role=Role.CGW).behaviour, retransmit=s.timers.aws_retransmit
        ),
        psk=b"not.the.right.key.0123",
        local_ts=TrafficSelector(cidr=s.settings.profile.customer_cidr),
        remote_ts=TrafficSelector(cidr=s.settings.profile.aws_cidr),
        name="wrong-psk",
    )
    engine = create_peer(cfg, local=(s.settings.local[0], 500), remote=s.settings.cgw, rng=s.rng)

    def done(ev: Event) -> bool:
        return ev.name in ("negotiation_failed", "ike_sa_established")

    events, seen = await engine_exchange(s, engine, until=done, timeout=min(6.0, s.timers.aws_request_budget))
    names = [e.name for e in events]
    if "ike_sa_established" in names:
        return Outcome(
            FAIL,
            f"the device accepted a negotiation authenticated with a wrong key ({ctx.pkts(seen)})",
            "Anyone who can reach it could impersonate the AWS endpoint.",
        )
    failed = next((e for e in events if e.name == "negotiation_failed"), None)
    how = f"refused ({failed.get('reason')})" if failed else "no answer to the authenticated message"
    lost = _lost_tunnel(s, mark_ev)
    if lost is not None:
        return Outcome(
            FAIL,
            f"the wrong-key negotiation was {how}, but the working tunnel was lost ({lost.name})",
            "The device acted on an unauthenticated INITIAL_CONTACT or tore the tunnel down for a failed "
            "negotiation (RFC 7296 §2.4: only an authenticated INITIAL_CONTACT may).",
        )
    alive = await verify_alive(ctx, mark_ev)
    if alive is None or _lost_tunnel(s, mark_ev) is not None:
        return Outcome(FAIL, f"the wrong-key negotiation was {how}, then the working tunnel stopped answering DPD")
    verdict = PASS
    detail = ""
    if ctx.version == 2 and (failed is None or failed.get("reason") != "authentication_failed"):
        verdict = WARN
        detail = (
            "RFC 7296 §2.21.2: a responder that fails the initiator's AUTH answers AUTHENTICATION_FAILED; "
            "silence makes the initiator retransmit until it gives up."
        )
    return Outcome(verdict, f"wrong key {how} ({ctx.pkts(seen)}); the tunnel kept working", detail)


@check(
    "AWS-P1-06",
    "IKEv1 Main Mode, never Aggressive Mode",
    "phase1",
    Level.BASIC,
    versions=(1,),
    cites=("AWS-CGW: Main mode only with IKEv1", "RFC 2409 §5"),
    requirement="The device initiates phase 1 with Main Mode (exchange type 2).",
    bound="the device's initiations during the run",
    needs_tunnel=False,
    needs_child=False,
)
async def p1_main_mode(ctx: CheckContext) -> Outcome:
    st = await get_startup(ctx)
    inits = [d for d in ctx.session.datagrams if device_initiation(d)]
    if not inits:
        return Outcome(UNSUPPORTED, "the device never initiated during start-up")
    agg = [d for d in inits if d.info.exchange == 4]
    if agg:
        return Outcome(
            FAIL,
            f"the device initiated Aggressive Mode ({ctx.pkts(agg)})",
            "AWS supports only Main Mode with IKEv1: the negotiation never completes.",
        )
    del st
    return Outcome(PASS, f"Main Mode ({ctx.pkt(inits[0])})")


# ============================================================================================== child SA


@check(
    "AWS-CHD-01",
    "The IPsec SA pair / Child SA comes up",
    "child",
    Level.BASIC,
    cites=(
        "AWS-CGW: establish IPsec security associations in tunnel mode (RFC 4301)",
        "RFC 2409 §5.5",
        "RFC 7296 §1.2",
    ),
    requirement="After the IKE SA, the IPsec SA pair (Quick Mode / the Child SA in IKE_AUTH) is established.",
    bound="the AWS retransmission budget after the IKE SA",
    needs_tunnel=False,
)
async def chd_up(ctx: CheckContext) -> Outcome:
    s = ctx.session
    st = await get_startup(ctx)
    if st.up is not None:
        ev = next((r for r in s.events_since(0, "child_sa_established") if r.seq >= st.up.seq - 20), None)
        prop = ev.get("proposal") if ev else "?"
        return Outcome(PASS, f"Child SA up ({prop})", measurements={"proposal": prop})
    if st.ike is None:
        return Outcome(FAIL, "no IKE SA, so no Child SA (see AWS-P1-01)")
    fails = [
        r
        for r in st.failures
        if r.get("exchange") in ("quick_mode", "ike_auth", "create_child_sa")
        and r.get("reason") != "peer_not_responding"
    ]
    if fails:
        reasons = ", ".join(str(r.get("reason")) for r in fails)
        return Outcome(
            FAIL,
            f"the IKE SA came up but the Child SA was refused ({reasons})",
            "Phase 2 proposals or traffic selectors do not match the connection's (see AWS-CHD-03/04).",
        )
    qm = [d for d in s.datagrams[st.start : st.end] if d.info.kind == "ike" and d.info.exchange in (32, 35)]
    last = qm[-1] if qm else None
    s.cache["child_broken"] = True
    return Outcome(
        FAIL,
        "the IKE SA came up but the Child SA never completed"
        + (f" (last phase-2 message: {last.describe()}, {ctx.pkt(last)})" if last else ""),
        "No error came back: the device stalled in phase 2 (e.g. it could not install the IPsec SA in its "
        "kernel). Checks that need the Child SA are reported unsupported.",
    )


@check(
    "AWS-CHD-02",
    "One SA pair per tunnel",
    "child",
    Level.BASIC,
    cites=("AWS-CGW: one unique SA pair per tunnel; policy-based devices must consolidate to a single SA",),
    requirement="The device creates one IPsec SA pair per tunnel (rekeys replace it); it never opens a second "
    "pair with other selectors or asks for an additional Child SA.",
    bound="from start-up until 5 s after this check starts",
)
async def chd_single(ctx: CheckContext) -> Outcome:
    s = ctx.session
    st = await get_startup(ctx)
    await asyncio.sleep(5.0)
    children = [r for r in s.events_since(0, "child_sa_established")]
    refusals = [o for o in s.cache.get("refused_children", [])]
    pairs: dict[tuple[str, str], EventRecord] = {}
    for r in children:
        key = (",".join(r.get("ts_local", []) or []), ",".join(r.get("ts_remote", []) or []))
        pairs.setdefault(key, r)
    ctx.use(st.start, len(s.datagrams))
    if refusals:
        return Outcome(
            FAIL,
            f"the device asked for {len(refusals)} additional Child SA(s) (refused with NO_ADDITIONAL_SAS: "
            f"{ctx.pkts(refusals)})",
            "AWS allows one SA pair per tunnel: every extra pair the device wants (a policy-based configuration "
            "with several subnet pairs) is refused, and the traffic it was for is not carried.",
        )
    if len(pairs) > 1:
        lines = "; ".join(f"{k[0]} <-> {k[1]}" for k in pairs)
        return Outcome(
            FAIL,
            f"{len(pairs)} SA pairs with different selectors: {lines}",
            "AWS allows one SA pair per tunnel; consolidate the selectors (or use 0.0.0.0/0 with routing).",
        )
    return Outcome(PASS, f"{len(children)} Child SA(s), all with the same selectors")


@check(
    "AWS-CHD-03",
    "Traffic selectors within the connection's networks",
    "child",
    Level.BASIC,
    cites=(
        "AWS-OPT / VpnConnectionOptions: LocalIpv4NetworkCidr, RemoteIpv4NetworkCidr (default 0.0.0.0/0)",
        "RFC 7296 §2.9 (narrowing)",
        "RFC 2409 §5.5 (client identities)",
    ),
    requirement="The device's selectors lie inside LocalIpv4NetworkCidr (its side) and RemoteIpv4NetworkCidr "
    "(AWS's side).",
    bound="the Child SAs negotiated so far",
)
async def chd_selectors(ctx: CheckContext) -> Outcome:
    s = ctx.session
    await get_startup(ctx)
    prof = s.settings.profile
    ev = [r for r in s.events_since(0, "child_sa_established")]
    if not ev:
        return Outcome(FAIL, "no Child SA to read selectors from")
    aws_net = ipaddress.ip_network(prof.aws_cidr)
    cust_net = ipaddress.ip_network(prof.customer_cidr)
    bad: list[str] = []
    seen: set[str] = set()
    for r in ev:
        for side, net, key in (("AWS", aws_net, "ts_local"), ("customer", cust_net, "ts_remote")):
            for ts in r.get(key, []) or []:
                seen.add(f"{side} {ts}")
                rng = _ts_range(str(ts))
                if rng is None:
                    continue
                lo, hi = rng
                if not (lo in net and hi in net):
                    bad.append(f"{side} side {ts} is outside {net}")
    if bad:
        return Outcome(
            FAIL,
            "; ".join(sorted(set(bad))),
            "AWS narrows to the connection's networks and refuses selectors outside them (TS_UNACCEPTABLE).",
        )
    return Outcome(PASS, f"selectors {', '.join(sorted(seen))} within {prof.customer_cidr} <-> {prof.aws_cidr}")


def _ts_range(ts: str) -> tuple[Any, Any] | None:
    """``10.2.0.0-10.2.0.255[0/0-65535]`` -> (first, last) addresses."""
    head = ts.split("[", 1)[0]
    if "-" not in head:
        try:
            n = ipaddress.ip_network(head, strict=False)
        except ValueError:
            return None
        return n.network_address, n.broadcast_address
    a, b = head.split("-", 1)
    try:
        return ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return None


@check(
    "AWS-CHD-04",
    "Perfect forward secrecy in phase 2",
    "child",
    Level.BASIC,
    cites=(
        "AWS-CGW: use Diffie-Hellman Perfect Forward Secrecy (RFC 2409)",
        "AWS-OPT: Phase2DHGroupNumbers",
        "RFC 2409 §5.5 (KE in Quick Mode)",
        "RFC 7296 §1.3.1 (KE in CREATE_CHILD_SA)",
    ),
    requirement="Phase 2 uses a Diffie-Hellman group from Phase2DHGroupNumbers (IKEv1: in every Quick Mode; "
    "IKEv2: the device accepts AWS's Child SA rekey with a KE payload).",
    bound="the Child SAs so far (IKEv2: one AWS-initiated Child SA rekey)",
)
async def chd_pfs(ctx: CheckContext) -> Outcome:
    s = ctx.session
    await get_startup(ctx)
    if ctx.version == 1:
        ev = [r for r in s.events_since(0, "child_sa_established")]
        if not ev:
            fails = [r for r in s.events_since(0, "negotiation_failed") if r.get("exchange") == "quick_mode"]
            if fails:
                return Outcome(
                    FAIL,
                    "Quick Mode was refused (no_proposal_chosen): AWS always uses PFS, a device "
                    "without PFS gets no IPsec SA",
                )
            return Outcome(FAIL, "no IPsec SA to read the phase-2 suite from")
        props = [str(r.get("proposal")) for r in ev]
        nopfs = [p for p in props if not any(g in p for g in GROUP_NAMES.values())]
        if nopfs:
            return Outcome(FAIL, f"phase 2 without a DH group: {', '.join(nopfs)}")
        return Outcome(PASS, f"phase 2 with PFS: {', '.join(sorted(set(props)))}")
    res = await _aws_child_rekey(ctx)
    if res.get("unsupported"):
        return Outcome(UNSUPPORTED, str(res["unsupported"]))
    if res.get("error"):
        return Outcome(FAIL, str(res["error"]), str(res.get("details", "")))
    prop = str(res.get("proposal", ""))
    if not any(g in prop for g in GROUP_NAMES.values()):
        return Outcome(FAIL, f"the rekeyed Child SA has no DH group ({prop})")
    return Outcome(PASS, f"AWS's Child SA rekey with PFS accepted ({prop})")


@check(
    "AWS-CHD-05",
    "Lifetimes leave room for AWS's rekey margin",
    "child",
    Level.BASIC,
    versions=(1,),
    cites=(
        "AWS-OPT: Phase1LifetimeSeconds 900-28800, Phase2LifetimeSeconds 900-3600, RekeyMarginTimeSeconds "
        "60 .. Phase2LifetimeSeconds/2",
        "RFC 2407 §4.5 (SA Life Duration)",
    ),
    requirement="The lifetimes the device proposes are at least twice AWS's RekeyMarginTimeSeconds (AWS rekeys "
    "between margin and 2 x margin before expiry) and not below AWS's minimum of 900 s.",
    bound="the device's proposals seen so far",
    needs_child=False,
)
async def chd_lifetimes(ctx: CheckContext) -> Outcome:
    s = ctx.session
    st = await get_startup(ctx)
    opts = s.settings.profile.options
    margin = opts.rekey_margin_time_seconds
    floor = 2 * margin
    problems: list[str] = []
    warns: list[str] = []
    seen: list[str] = []
    if st.first is not None:
        lives = {v1_lifetime(t) for t in v1_offer(st.first.info)} - {None}
        for life1 in sorted(x for x in lives if x is not None):
            life = float(life1)
            longer = life > opts.phase1_lifetime_seconds
            seen.append(
                f"phase 1 {life:.0f} s" + (f" (AWS's {opts.phase1_lifetime_seconds} s applies)" if longer else "")
            )
            if life < floor:
                problems.append(f"phase-1 lifetime {life:.0f} s ({ctx.pkt(st.first)}) is under 2 x {margin} s")
            elif life < 900:
                warns.append(f"phase-1 lifetime {life:.0f} s is under AWS's minimum of 900 s")
    assert s.peer is not None
    for c in getattr(s.peer.inner, "children", []):
        life = float(getattr(c, "lifetime", 0) or 0)
        if 0 < life < opts.phase2_lifetime_seconds:
            seen.append(f"phase 2 {life:.0f} s")
            if life < floor:
                problems.append(f"phase-2 lifetime {life:.0f} s is under 2 x RekeyMarginTimeSeconds ({floor} s)")
            elif life < 900:
                warns.append(f"phase-2 lifetime {life:.0f} s is under AWS's minimum of 900 s")
    if problems:
        return Outcome(
            FAIL,
            "; ".join(problems),
            f"AWS rekeys {margin}-{floor} s before expiry: with a shorter lifetime every new SA is due for a "
            "rekey at once, and the two sides' rekeys collide.",
        )
    if warns:
        return Outcome(WARN, "; ".join(warns))
    what = ", ".join(seen) if seen else "the device proposed AWS's lifetimes or longer (AWS's apply)"
    return Outcome(PASS, what)


# ========================================================================================= retransmission


@check(
    "AWS-RTX-01",
    "The device retransmits an unanswered request with backoff, and stops once answered",
    "retransmission",
    Level.BASIC,
    cites=("RFC 7296 §2.1, §2.4 (retransmit, exponential back-off)", "RFC 2408 §5 (retransmission)"),
    requirement="When AWS ignores the device's first message, the device sends the same bytes again, each wait "
    "at least as long as the one before, and stops when answered.",
    bound="the start-up negotiation (AWS ignores two copies)",
    needs_tunnel=False,
    needs_child=False,
)
async def rtx_backoff(ctx: CheckContext) -> Outcome:
    st = await get_startup(ctx)
    if st.aws_initiated and not st.measured:
        return Outcome(UNSUPPORTED, "the device did not initiate during start-up: no request of its own to time")
    copies = st.measured
    if not copies:
        return Outcome(UNSUPPORTED, "no initiation of the device was seen")
    if len(copies) < 2:
        others = [d for d in st.initiations if d.info.body != copies[0].info.body]
        if others:
            return Outcome(
                FAIL,
                f"no retransmission: the device started a new negotiation ({ctx.pkt(others[0])}) instead of "
                f"repeating {ctx.pkt(copies[0])}",
                "RFC 7296 §2.1: the initiator retransmits the same request; a fresh IKE SA per try leaves "
                "half-open SAs at the responder.",
            )
        return Outcome(FAIL, f"no answer-less retransmission of {ctx.pkt(copies[0])} arrived")
    gaps = [b.t - a.t for a, b in itertools.pairwise(copies)][:2]
    gap_text = " then ".join(_secs(g) for g in gaps)
    meas = {"gaps": [round(g, 3) for g in gaps]}
    if len(gaps) >= 2 and gaps[1] + 0.05 < gaps[0]:
        return Outcome(
            FAIL,
            f"retransmitted after {gap_text}: the wait shrank ({ctx.pkts(copies)})",
            "RFC 7296 §2.4: retransmission intervals must increase (exponential back-off).",
            meas,
        )
    if st.copies_after_answer:
        return Outcome(
            FAIL, f"kept retransmitting after our answer ({ctx.pkts(st.copies_after_answer)})", measurements=meas
        )
    if st.answer is None:
        return Outcome(
            WARN, f"retransmitted after {gap_text} ({ctx.pkts(copies)}), but the answer was not seen", measurements=meas
        )
    return Outcome(
        PASS,
        f"retransmitted identical copies after {gap_text} ({ctx.pkts(copies)}); stopped once "
        f"answered ({ctx.pkt(st.answer)})",
        measurements=meas,
    )


async def _aws_child_rekey(ctx: CheckContext, lose_answer: bool = False) -> dict[str, Any]:
    """AWS rekeys the Child SA now; what happened. With ``lose_answer`` the device's first answer is ignored,
    so AWS retransmits its request (RFC 7296 §2.1) and the device must answer the copy. Cached per session (the
    first caller pays; later ones read it)."""
    s = ctx.session
    key = "aws_child_rekey" + (":lost" if lose_answer else "")

    async def run() -> dict[str, Any]:
        start = len(s.datagrams)
        kind = _transmit_kind(s.version, "child_rekey")
        captured: list[Transmit] = []

        def watch(tx: Transmit, now: float) -> None:
            if tx.kind == kind and not captured:
                captured.append(tx)

        if not await s.ensure_narrowed():
            return {
                "error": "no tunnel AWS could rekey (its own initiation failed)",
                "start": start,
                "end": len(s.datagrams),
            }
        assert s.peer is not None
        peer = s.peer
        if not has_rekey_hooks(peer.inner):
            return {
                "unsupported": "the engine offers no way to start a rekey now",
                "start": start,
                "end": len(s.datagrams),
            }
        peer.watch_out.append(watch)
        lost: list[int] = []
        if lose_answer:

            def drop_first_answer(data: bytes, src: Any, now: float) -> bool:
                if not captured or lost:
                    return False
                mid = classify_mid(captured[0].data)
                info = classify(data)
                exch = 32 if s.version == 1 else 36
                if info.kind == "ike" and info.exchange == exch and info.message_id == mid:
                    lost.append(mid)
                    return True
                return False

            peer.drop_in = drop_first_answer
        mark = len(s.events)
        try:
            s.call_engine(_rekey_child, "rekey_child")
            if not captured:
                return {
                    "error": "AWS could not start a Child SA rekey (no live Child SA)",
                    "start": start,
                    "end": len(s.datagrams),
                }
            budget = s.timers.aws_request_budget + 1.0

            def done(r: EventRecord) -> bool:
                return (r.name == "rekey_done" and r.get("sa") == "child") or (
                    r.name == "negotiation_failed" and r.get("exchange") in ("quick_mode", "create_child_sa")
                )

            rec = await s.wait_event("rekey_done", budget, since=mark, pred=done)
            if rec is None:
                rec = next((r for r in s.events_since(mark, "negotiation_failed")), None)
            await asyncio.sleep(0.3)
        finally:
            peer.watch_out.remove(watch)
            peer.drop_in = None
        out: dict[str, Any] = {
            "start": start,
            "end": len(s.datagrams),
            "mark": mark,
            "request": captured[0],
            "lost": bool(lost),
        }
        child = next((r for r in s.events_since(mark, "child_sa_established")), None)
        if rec is None or rec.name != "rekey_done":
            why = f"refused ({rec.get('reason')})" if rec is not None else "no answer"
            out["error"] = f"AWS's Child SA rekey was {why}"
            return out
        out["proposal"] = child.get("proposal") if child else ""
        out["children_created"] = len(s.events_since(mark, "child_sa_established"))
        return out

    res: dict[str, Any] = await s.scenario(key, run)
    ctx.use(int(res["start"]), int(res["end"]))
    return res


@check(
    "AWS-RTX-02",
    "A retransmitted AWS request gets the cached answer and creates nothing twice",
    "retransmission",
    Level.ADVANCED,
    cites=(
        "RFC 7296 §2.1 (the responder retransmits its response, does not process the request again)",
        "RFC 2408 §5 / RFC 2409 §5.5 (Quick Mode retransmission)",
    ),
    requirement="When the device's answer to AWS's rekey request is lost, AWS repeats the request; the device "
    "answers the copy again and still creates only one new SA pair.",
    bound="the AWS retransmission budget (first repeat after 4 s; --fast 1 s)",
)
async def rtx_duplicate_request(ctx: CheckContext) -> Outcome:
    s = ctx.session
    res = await _aws_child_rekey(ctx, lose_answer=True)
    if res.get("unsupported"):
        return Outcome(UNSUPPORTED, str(res["unsupported"]))
    if res.get("error") and "request" not in res:
        return Outcome(UNSUPPORTED, str(res["error"]))
    req: Transmit = res["request"]
    mid = classify_mid(req.data)
    window = s.datagrams[int(res["start"]) : int(res["end"])]
    ours = [d for d in window if not d.from_device and d.data == req.data]
    exch = 32 if ctx.version == 1 else 36
    answers = [
        d
        for d in window
        if d.from_device
        and d.info.exchange == exch
        and d.info.message_id == mid
        and (ctx.version == 1 or d.info.response)
    ]
    created = int(res.get("children_created", 0))
    if created > 1:
        return Outcome(
            FAIL,
            f"two SA pairs created for one rekey request sent twice ({ctx.pkts(ours)})",
            "The device processed the retransmission as a new request.",
        )
    if res.get("error") or len(answers) < 2:
        first = f"its answer ({ctx.pkt(answers[0])}) was ignored on purpose; " if answers else ""
        return Outcome(
            FAIL,
            f"{first}AWS's retransmission ({ctx.pkts(ours[1:]) or 'none'}) got no answer"
            + (f": {res['error']}" if res.get("error") else ""),
            "RFC 7296 §2.1 / RFC 2408 §5: when the response is lost the initiator repeats the request, and the "
            "responder sends its response again. Without that, one lost datagram costs the whole rekey.",
        )
    same = answers[0].data == answers[1].data
    if len(ours) < 2:
        # IKEv1: the Quick Mode responder retransmits its answer itself until it sees message 3 (RFC 2408 §5)
        return Outcome(
            PASS,
            f"the device repeated its lost answer by itself ({ctx.pkts(answers)}"
            f"{', identical' if same else ''}); one SA pair created",
        )
    return Outcome(
        PASS,
        f"the repeated request ({ctx.pkts(ours[1:])}) was answered again "
        f"({ctx.pkts(answers)}{', identical' if same else ''}); one SA pair created",
    )


def classify_mid(data: bytes) -> int:
    body = data[4:] if data[:4] == NON_ESP_MARKER else data
    return int(struct.unpack_from("!I", body, 20)[0]) if len(body) >= 28 else -1


# ==================================================================================================== DPD


async def _capture_probe(ctx: CheckContext, timeout: float) -> tuple[Transmit | None, int]:
    """The engine's next DPD / liveness request (IKEv2: sent now; IKEv1: AWS's next idle probe)."""
    s = ctx.session
    assert s.peer is not None
    kind = _transmit_kind(s.version, "probe")
    got: list[Transmit] = []
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def watch(tx: Transmit, now: float) -> None:
        if tx.kind == kind and not got:
            got.append(tx)
            if not fut.done():
                fut.set_result(None)

    mark = len(s.events)
    s.peer.watch_out.append(watch)
    try:
        if s.version == 2:
            s.call_engine(lambda e, now: e.check_liveness(now), "check_liveness")
        if not got:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, timeout)
    finally:
        s.peer.watch_out.remove(watch)
    return (got[0] if got else None), mark


def _probe_id(version: int, tx: Transmit) -> int:
    return classify_mid(tx.data)


@check(
    "AWS-DPD-01",
    "The device answers AWS's DPD R-U-THERE / liveness checks",
    "dpd",
    Level.BASIC,
    cites=(
        "AWS-KC: AWS sends R-U-THERE after 10 s without traffic, peer dead after three failed probes",
        "RFC 3706 §5.3, §6 (R-U-THERE-ACK echoes the sequence number)",
        "RFC 7296 §1.4 (every request requires a response)",
    ),
    requirement="Each AWS liveness request is answered: IKEv1 with an R-U-THERE-ACK carrying the same sequence "
    "number, IKEv2 with a response of the same message ID.",
    bound="AWS's DPD delay (10 s; --fast 2 s) for the probe, then DPDTimeoutSeconds for the answer",
    needs_child=False,
)
async def dpd_answers(ctx: CheckContext) -> Outcome:
    s = ctx.session
    t = s.timers
    mark = len(s.events)
    tx, _ = await _capture_probe(ctx, t.aws_dpd_delay + t.aws_dpd_interval + 2)
    if tx is None:
        return Outcome(UNSUPPORTED, "AWS had no reason to probe: the device kept the SA busy the whole time")
    sent = next((r for r in s.events_since(mark, "dpd_request_sent")), None)
    ack = await s.wait_event("dpd_ack_received", t.aws_dpd_timeout + 1.0, since=mark)
    probe_dg = [d for d in s.datagrams_since(ctx.start_dg) if not d.from_device and d.data == tx.data]
    if ack is None:
        return Outcome(
            FAIL,
            f"no answer to AWS's {'R-U-THERE' if s.version == 1 else 'liveness check'} "
            f"({ctx.pkts(probe_dg)}) within DPDTimeoutSeconds ({t.aws_dpd_timeout} s)",
            "AWS declares the device dead and applies DPDTimeoutAction: the tunnel goes DOWN.",
        )
    ref = f"seq {sent.get('seq')}" if (s.version == 1 and sent) else f"message ID {ack.get('message_id')}"
    if s.version == 1 and not ack.get("valid", True):
        return Outcome(
            FAIL,
            f"the R-U-THERE-ACK carried sequence number {ack.get('seq')}, not {sent.get('seq') if sent else '?'}",
            "RFC 3706 §6.2: an ACK with another number is rejected; AWS keeps counting failed probes.",
        )
    ans = [d for d in s.datagrams_since(ctx.start_dg) if d.from_device and d.t >= (probe_dg[0].t if probe_dg else 0)]
    return Outcome(
        PASS,
        f"answered {ref} in {_secs(ack.t - (sent.t if sent else ack.t))}" + (f" ({ctx.pkt(ans[0])})" if ans else ""),
    )


@check(
    "AWS-DPD-02",
    "Repeated R-U-THERE / liveness requests are all answered",
    "dpd",
    Level.BASIC,
    cites=(
        "ike-dpd.md §2.4, §5.3: AWS and strongSwan repeat an unanswered R-U-THERE with the same sequence "
        "number; libreswan stops answering after 3 duplicates",
        "RFC 3706 §6",
        "RFC 7296 §2.1",
    ),
    requirement="AWS's probe arrives 3 times (the original and two repeats, as when AWS's answer got lost): "
    "IKEv1 as new R-U-THEREs with the same sequence number, IKEv2 as retransmissions of the same request; the "
    "device answers every one.",
    bound="three AWS DPD intervals (10 s; --fast 2 s), plus 1 s",
    needs_child=False,
)
async def dpd_duplicates(ctx: CheckContext) -> Outcome:
    s = ctx.session
    if s.version == 2:
        return await _dpd_repeats_v2(ctx)
    return await _dpd_repeats_v1(ctx)


REPEATS = 3
"""Probes with the same sequence number / message ID: AWS's original and two repeats (AWS declares the peer
dead after three unanswered probes, ike-dpd.md §1.2)."""


async def _dpd_repeats_v1(ctx: CheckContext) -> Outcome:
    """IKEv1: AWS repeats an unanswered R-U-THERE as a new Informational with the same sequence number
    (``seq_on_retry = reuse``). The device's ACKs to the first two are ignored, so AWS repeats twice."""
    s = ctx.session
    t = s.timers
    # DPDTimeoutSeconds must leave room for three probes one interval apart.
    cfg = s.aws_config(initiate=True, dpd_timeout=int(t.aws_dpd_delay + REPEATS * t.aws_dpd_interval + 2))
    if await s.fresh_tunnel(cfg) is None:
        return Outcome(FAIL, "no tunnel could be set up for this check")
    assert s.peer is not None
    mark = len(s.events)
    spis = s.engine_spis()
    ignored: list[int] = []

    def drop_acks(data: bytes, src: Any, now: float) -> bool:
        from emulator.conformance.wire import classify

        i = classify(data)
        sent = len(s.events_since(mark, "dpd_request_sent"))
        if i.kind == "ike" and i.exchange == 5 and i.spi_i in spis and 0 < sent < REPEATS and len(ignored) < sent:
            ignored.append(sent)
            return True
        return False

    s.peer.drop_in = drop_acks
    deadline = t.aws_dpd_delay + REPEATS * t.aws_dpd_interval + 3
    acked = await s.wait_event("dpd_ack_received", deadline, since=mark, pred=lambda r: r.get("valid", True))
    s.peer.drop_in = None
    probes = s.events_since(mark, "dpd_request_sent")
    seqs = {r.get("seq") for r in probes}
    out = [
        d
        for d in s.datagrams_since(ctx.start_dg)
        if not d.from_device and d.info.exchange == 5 and d.info.spi_i in spis
    ]
    answers = [
        d for d in s.datagrams_since(ctx.start_dg) if d.from_device and d.info.exchange == 5 and d.info.spi_i in spis
    ]
    if len(probes) < 2:
        return Outcome(UNSUPPORTED, "AWS had no reason to repeat its probe (the device kept the SA busy)")
    meas = {"probes": len(probes), "answers": len(answers), "same_seq": len(seqs) == 1}
    if acked is None or len(answers) < len(probes):
        return Outcome(
            FAIL,
            f"{len(answers)} answers to {len(probes)} R-U-THEREs with sequence number {sorted(seqs)} "
            f"({ctx.pkts(out)}; answers: {ctx.pkts(answers) if answers else 'none'})",
            "AWS repeats an unanswered R-U-THERE with the same sequence number; a device that stops answering "
            "repeats (libreswan answers a duplicate 3 times) leaves AWS's retries unanswered, and AWS declares "
            "it dead.",
            meas,
        )
    return Outcome(
        PASS,
        f"all {len(probes)} R-U-THEREs with sequence number {sorted(seqs)} answered ({ctx.pkts(answers)})",
        measurements=meas,
    )


async def _dpd_repeats_v2(ctx: CheckContext) -> Outcome:
    """IKEv2: AWS retransmits its liveness request (same message ID, same bytes, RFC 7296 §2.1): the device
    answers every copy with its response."""
    s = ctx.session
    t = s.timers
    tx, mark = await _capture_probe(ctx, t.aws_dpd_delay + t.aws_dpd_interval + 2)
    if tx is None:
        return Outcome(UNSUPPORTED, "AWS had no reason to probe (the device kept the SA busy)")
    await s.wait_event("dpd_ack_received", t.aws_dpd_timeout, since=mark)
    for _ in range(REPEATS - 1):
        await asyncio.sleep(0.3)
        s.send_raw(tx.data, tx.dst, tx.src, "duplicate")
    await asyncio.sleep(1.0)
    ours = [d for d in s.datagrams_since(ctx.start_dg) if not d.from_device and d.data == tx.data]
    mid = classify_mid(tx.data)
    answers = [
        d
        for d in s.datagrams_since(ctx.start_dg)
        if d.from_device and d.info.exchange == 37 and d.info.response and d.info.message_id == mid
    ]
    meas = {"copies": len(ours), "answers": len(answers)}
    if len(answers) < len(ours):
        return Outcome(
            FAIL,
            f"{len(answers)} answers to {len(ours)} copies of liveness request {mid} ({ctx.pkts(ours)}; answers: "
            f"{ctx.pkts(answers) if answers else 'none'})",
            "RFC 7296 §2.1: a retransmitted request gets the response again; AWS retransmits its liveness check "
            "and declares the device dead when the copies go unanswered.",
            meas,
        )
    return Outcome(PASS, f"all {len(ours)} copies of request {mid} answered ({ctx.pkts(answers)})", measurements=meas)


@check(
    "AWS-DPD-03",
    "The device answers while flooded with junk",
    "dpd",
    Level.ADVANCED,
    cites=(
        "ike-dpd.md §6: DPD timeouts from devices that do not answer under load",
        "RFC 7296 §2.21 (drop what cannot be authenticated)",
        "RFC 3706 §5",
    ),
    requirement="An AWS probe that arrives in the middle of 40 junk IKE datagrams (unknown SPIs) is still "
    "answered within 1 s.",
    bound="1 s after the burst",
    needs_child=False,
)
async def dpd_busy(ctx: CheckContext) -> Outcome:
    s = ctx.session
    t = s.timers
    assert s.peer is not None
    kind = _transmit_kind(s.version, "probe")
    burst: list[Transmit] = []

    def flood(tx: Transmit) -> None:
        for i in range(40):
            s.send_raw(_junk(s, tx, i), tx.dst, tx.src, "junk")

    def watch(tx: Transmit, now: float) -> None:
        if tx.kind == kind and not burst:
            burst.append(tx)
            asyncio.get_running_loop().call_soon(flood, tx)  # right behind the probe

    mark = len(s.events)
    s.peer.watch_out.append(watch)
    try:
        if s.version == 2:
            s.call_engine(lambda e, now: e.check_liveness(now), "check_liveness")
        ack = await s.wait_event("dpd_ack_received", t.aws_dpd_delay + t.aws_dpd_interval + 3, since=mark)
    finally:
        s.peer.watch_out.remove(watch)
    if not burst:
        return Outcome(UNSUPPORTED, "AWS had no reason to probe (the device kept the SA busy)")
    sent = next((d for d in s.datagrams_since(ctx.start_dg) if not d.from_device and d.data == burst[0].data), None)
    if ack is None or (sent is not None and ack.t - sent.t > 1.0 + 0.5):
        late = "no answer" if ack is None else f"answered after {_secs(ack.t - (sent.t if sent else 0))}"
        return Outcome(FAIL, f"{late} to a probe sent amid 40 junk datagrams ({ctx.pkt(sent) if sent else '?'})")
    return Outcome(PASS, f"answered in {_secs(ack.t - (sent.t if sent else ack.t))} amid 40 junk datagrams")


def _junk(s: Session, like: Transmit, i: int) -> bytes:
    """An IKE-looking datagram for an SA that does not exist (random SPIs), same framing as ``like``."""
    marker = like.data[:4] == NON_ESP_MARKER
    ver = 0x10 if s.version == 1 else 0x20
    exch = 5 if s.version == 1 else 37
    flags = 0x01 if s.version == 1 else 0x08
    body = s.rng.randbytes(64)
    np = 8 if s.version == 1 else 46
    hdr = struct.pack(
        "!8s8sBBBBII",
        s.rng.randbytes(8),
        s.rng.randbytes(8),
        np,
        ver,
        exch,
        flags,
        s.rng.getrandbits(32),
        28 + len(body),
    )
    return (NON_ESP_MARKER if marker else b"") + hdr + body


@check(
    "AWS-DPD-04",
    "The device probes by itself when idle (AWS recommends DPD interval 10 s)",
    "dpd",
    Level.BASIC,
    cites=(
        "AWS-GEN: DPD Interval : 10, DPD Retries : 3",
        "AWS-CGW: use Dead Peer Detection (RFC 3706)",
        "RFC 3706 §5.4, RFC 7296 §2.4",
    ),
    requirement="When nothing arrives from AWS, the device sends its own R-U-THERE / liveness check within the "
    "recommended 10 s interval.",
    bound="10 s + 3 s slack after AWS's last message (the device's timer: not shortened by --fast)",
    hard_limit=150,
)
async def dpd_device_probes(ctx: CheckContext) -> Outcome:
    o = await get_outage(ctx, StartupAction.ADD, DpdTimeoutAction.CLEAR)
    if not o.set_up:
        return Outcome(FAIL, "no tunnel could be set up for the silent-AWS run: " + "; ".join(o.notes))
    t = ctx.timers
    if not o.device_probes or o.last_aws is None:
        return Outcome(
            FAIL,
            f"no R-U-THERE / liveness check from the device in {_secs(o.silence)} without a message from AWS",
            "The device does not run DPD (or only with traffic to send): it cannot notice a dead AWS endpoint "
            "and will keep a dead tunnel (AWS-CGW, AWS-GEN).",
        )
    first = o.device_probes[0]
    delay = first.t - o.last_aws.t
    meas = {"first_probe_after": round(delay, 2)}
    if delay > t.device_dpd_bound:
        return Outcome(
            FAIL,
            f"first probe {_secs(delay)} after AWS's last message ({ctx.pkt(o.last_aws)} -> {ctx.pkt(first)})",
            f"AWS recommends a 10 s DPD interval; at {delay:.0f} s a dead AWS endpoint is noticed late.",
            meas,
        )
    return Outcome(PASS, f"first probe {_secs(delay)} after AWS's last message ({ctx.pkt(first)})", measurements=meas)


@check(
    "AWS-DPD-05",
    "The device detects a silent AWS side and re-initiates",
    "dpd",
    Level.BASIC,
    cites=(
        "AWS-CGW: on DPD the gateways delete the SAs and attempt to create new ones",
        "AWS-GEN: DPD Interval 10, Retries 3",
        "ike-dpd.md §1.6: AWS's template uses dpdaction=restart",
        "AWS-REPL",
    ),
    requirement="When its probes go unanswered (AWS cleared the SAs), the device declares AWS dead within "
    "interval x (1 + retries) = 40 s of AWS's last message and starts a new IKE SA.",
    bound="40 s + 6 s slack after AWS's last message",
    hard_limit=150,
)
async def dpd_reinitiates(ctx: CheckContext) -> Outcome:
    o = await get_outage(ctx, StartupAction.ADD, DpdTimeoutAction.CLEAR)
    if not o.set_up:
        return Outcome(FAIL, "no tunnel could be set up for the silent-AWS run: " + "; ".join(o.notes))
    t = ctx.timers
    if o.reinit is None or o.reinit_by != "device" or o.last_aws is None:
        probes = f" after probing ({ctx.pkts(o.device_probes)})" if o.device_probes else " (it never probed)"
        return Outcome(
            FAIL,
            f"the device did not re-initiate in {_secs(o.silence)} after AWS's last message{probes}",
            "With StartupAction=add AWS never initiates: after AWS clears the SAs (DPD timeout, endpoint "
            "replacement) only the device can bring the tunnel back. A device that declares the peer dead and "
            "just clears (strongSwan dpd_action = clear) leaves the tunnel DOWN; AWS recommends restart.",
        )
    delay = o.reinit.t - o.last_aws.t
    meas = {"reinitiated_after": round(delay, 2)}
    if delay > t.device_dead_bound:
        return Outcome(
            FAIL,
            f"re-initiated {_secs(delay)} after AWS went silent ({ctx.pkt(o.reinit)})",
            "Later than DPD interval 10 s x (1 + 3 retries) as AWS recommends.",
            meas,
        )
    return Outcome(
        PASS, f"re-initiated {_secs(delay)} after AWS's last message ({ctx.pkt(o.reinit)})", measurements=meas
    )


# ======================================================================= StartupAction x DPDTimeoutAction


def _action_check(num: int, sa: StartupAction, action: DpdTimeoutAction) -> None:
    versions = (2,) if sa is StartupAction.START else (1, 2)

    async def fn(ctx: CheckContext) -> Outcome:
        o = await get_outage(ctx, sa, action)
        if not o.set_up:
            return Outcome(FAIL, "no tunnel could be set up with these options: " + "; ".join(o.notes))
        meas: dict[str, Any] = {
            "reinitiated_by": o.reinit_by,
            "aws_declared_dead": o.aws_dead is not None,
            "recovery_s": None if o.recovery_time is None else round(o.recovery_time, 2),
            "recovered_by": o.recovered_how,
        }
        dead = "AWS declared the device dead" if o.aws_dead is not None else "AWS's DPD did not fire"
        if o.recovered is None:
            who = {
                "device": "the device re-initiated but the tunnel did not come back",
                "AWS": "AWS re-initiated but the device did not complete the negotiation",
                "nobody": "nobody re-initiated",
            }[o.reinit_by]
            return Outcome(
                FAIL,
                f"{dead}; the tunnel was still down {_secs(o.bound)} after the outage ({who})",
                f"With StartupAction={sa.value} and DPDTimeoutAction={action.value}: "
                + _action_expectation(sa, action),
                meas,
            )
        rt = o.recovery_time or 0.0
        by = o.reinit_by if o.reinit_by != "nobody" else "nobody (the SAs survived)"
        ref = f" ({ctx.pkt(o.reinit)})" if o.reinit is not None else ""
        return Outcome(
            PASS, f"{dead}; recovered {_secs(rt)} after the outage; re-initiated by {by}{ref}", measurements=meas
        )

    check(
        f"AWS-ACT-{num:02d}",
        f"Recovery with StartupAction={sa.value}, DPDTimeoutAction={action.value}",
        "actions",
        Level.BASIC,
        versions=versions,
        cites=("AWS-OPT: StartupAction, DPDTimeoutAction", "AWS-INIT", "ike-dpd.md §1.2, §1.3"),
        requirement="After a path outage long enough for AWS's DPD timeout, the tunnel comes back: "
        + _action_expectation(sa, action),
        bound="the outage (DPDTimeoutSeconds + 1 s), then 40 s + slack for the device plus AWS's retransmissions",
        hard_limit=170,
    )(fn)


def _action_expectation(sa: StartupAction, action: DpdTimeoutAction) -> str:
    if action is DpdTimeoutAction.CLEAR:
        return (
            "AWS clears the SAs and waits, so the device must notice (DPD) and re-initiate."
            if sa is StartupAction.ADD
            else "AWS clears the SAs; the device must notice (DPD) and re-initiate, or accept AWS's initiation."
        )
    if action is DpdTimeoutAction.RESTART:
        return "AWS restarts IKE itself; the device must accept the new IKE SA from the same address."
    return "AWS keeps the SAs; the device must keep or re-create them and answer AWS's probes again."


for _n, (_sa, _act) in enumerate(
    [(StartupAction.ADD, a) for a in DpdTimeoutAction] + [(StartupAction.START, a) for a in DpdTimeoutAction], 1
):
    _action_check(_n, _sa, _act)


# ================================================================================================= rekey


@check(
    "AWS-REK-01",
    "AWS-initiated Child SA / phase-2 rekey accepted",
    "rekey",
    Level.BASIC,
    cites=(
        "AWS-OPT: RekeyMarginTimeSeconds: the AWS side performs the rekey",
        "RFC 7296 §1.3.3, §2.8",
        "RFC 2409 §5.5",
    ),
    requirement="When AWS rekeys the IPsec SA pair (a new Quick Mode / CREATE_CHILD_SA with REKEY_SA), the device "
    "accepts it and the tunnel stays up.",
    bound="the AWS retransmission budget",
)
async def rek_child(ctx: CheckContext) -> Outcome:
    s = ctx.session
    res = await _aws_child_rekey(ctx)
    if res.get("unsupported"):
        return Outcome(UNSUPPORTED, str(res["unsupported"]))
    if res.get("error"):
        return Outcome(FAIL, str(res["error"]))
    if not s.tunnel_up():
        return Outcome(FAIL, "the tunnel went down during the rekey")
    return Outcome(PASS, f"rekeyed ({res.get('proposal')}); tunnel up")


@check(
    "AWS-REK-02",
    "AWS-initiated IKE SA / phase-1 rekey accepted",
    "rekey",
    Level.BASIC,
    cites=(
        "AWS-CGW: the VPN endpoint supports rekey and starts it when phase 1 is about to expire",
        "RFC 7296 §1.3.2, §2.18",
        "RFC 2409 §5 (a new Main Mode)",
    ),
    requirement="When AWS rekeys the IKE SA (IKEv2 CREATE_CHILD_SA for the IKE SA; IKEv1 a new Main Mode), the "
    "device accepts it, keeps the tunnel, and answers DPD on the new IKE SA.",
    bound="the AWS retransmission budget, then one DPD exchange",
)
async def rek_ike(ctx: CheckContext) -> Outcome:
    s = ctx.session
    if not await s.ensure_narrowed():
        return Outcome(FAIL, "no tunnel AWS could rekey (its own initiation failed)")
    if s.peer is None or not has_rekey_hooks(s.peer.inner):
        return Outcome(UNSUPPORTED, "the engine offers no way to start a rekey now")
    mark = len(s.events)
    old = s.engine_spis()
    s.call_engine(_rekey_ike, "rekey_ike")
    budget = s.timers.aws_request_budget + 1.0
    if s.version == 2:
        rec = await s.wait_event("rekey_done", budget, since=mark, pred=lambda r: r.get("sa") == "ike")
    else:
        rec = await s.wait_event("ike_sa_established", budget, since=mark)
    if rec is None:
        fail = next((r for r in s.events_since(mark, "negotiation_failed")), None)
        return Outcome(
            FAIL, f"AWS's IKE SA rekey was {'refused (' + str(fail.get('reason')) + ')' if fail else 'not answered'}"
        )
    await asyncio.sleep(0.5)
    s.cache.setdefault("rekeyed_ike_spis", set()).update(old - s.engine_spis())
    lost = _lost_tunnel(s, mark)
    if lost is not None and lost.name == "tunnel_down":
        return Outcome(FAIL, f"the tunnel went down after the IKE SA rekey ({lost.get('reason')})")
    alive = await verify_alive(ctx)
    if alive is None:
        return Outcome(FAIL, "after the IKE SA rekey the device did not answer DPD on the new IKE SA")
    return Outcome(PASS, "IKE SA rekeyed; DPD answered on the new one")


@check(
    "AWS-REK-03",
    "After AWS's rekeys the old SAs are gone and the device uses the new ones",
    "rekey",
    Level.ADVANCED,
    cites=(
        "RFC 7296 §2.8 (the initiator of the rekey deletes the old SA), §1.4.1 (Delete answered)",
        "RFC 2409 §5.5, RFC 2408 §3.15 (Delete)",
    ),
    requirement="The device acknowledges AWS's Deletes of the replaced SAs (IKEv2) and never sends on a replaced "
    "IKE SA again.",
    bound="until the end of the run",
)
async def rek_old_gone(ctx: CheckContext) -> Outcome:
    s = ctx.session
    res = await _aws_child_rekey(ctx)
    if res.get("error") or res.get("unsupported"):
        return Outcome(UNSUPPORTED, f"no AWS rekey to judge ({res.get('error') or res.get('unsupported')})")
    await asyncio.sleep(REKEY_DELETE_WAIT if s.version == 1 else 0.5)
    retired = set(s.cache.get("rekeyed_ike_spis", set()))
    if s.version == 2:
        dels = [d for d in s.datagrams_since(int(res["start"])) if not d.from_device and d.info.exchange == 37]
        answered = [
            d
            for d in s.datagrams_since(int(res["start"]))
            if d.from_device and d.info.exchange == 37 and d.info.response
        ]
        if dels and not answered:
            return Outcome(
                FAIL,
                f"AWS's Delete of the old Child SA ({ctx.pkts(dels)}) got no answer",
                "RFC 7296 §1.4.1: every INFORMATIONAL request gets a response; AWS retransmits it and "
                "finally declares the device dead.",
            )
    ctx.use(int(res["start"]), len(s.datagrams))

    late_mark = len(s.datagrams)

    def later(sess: Session) -> Outcome | None:
        bad = [d for d in sess.datagrams[late_mark:] if d.from_device and retired and _sa_of(d, retired)]
        if bad:
            return Outcome(
                FAIL,
                f"the device sent on an IKE SA AWS had rekeyed and deleted ({len(bad)} message(s) after the rekey)",
                "It kept using the old IKE SA (RFC 7296 §2.18).",
            )
        return None

    ctx.session.cache.setdefault("rechecks", {})[ctx.spec.id] = later
    return Outcome(PASS, "old SAs deleted; the device works on the new ones")


REKEY_DELETE_WAIT = 6.0
"""IKEv1: the engine deletes a rekeyed IPsec SA pair 5 s after its successor is up (strongSwan's
``delete_rekeyed_delay``); wait past that."""


@check(
    "AWS-REK-04",
    "The device does not rekey earlier than AWS's margin allows",
    "rekey",
    Level.BASIC,
    cites=(
        "AWS-OPT: RekeyMarginTimeSeconds (60 .. Phase2LifetimeSeconds/2), Phase2LifetimeSeconds >= 900",
        "RFC 7296 §2.8",
        "strongSwan ipsec.conf(5) EXPIRY/REKEY (the formula AWS's options mirror)",
    ),
    requirement="No SA of the device is rekeyed before it is 2 x RekeyMarginTimeSeconds old: a shorter lifetime "
    "than AWS's margin allows means constant rekeys and collisions.",
    bound="the device's rekeys during the run; at least one SA watched for 30 s (--fast) / 2 x margin",
    hard_limit=170,
)
async def rek_device_timing(ctx: CheckContext) -> Outcome:
    s = ctx.session
    t = s.timers
    margin = s.settings.profile.options.rekey_margin_time_seconds
    floor = 2 * margin
    up = await s.wait_up(1.0)
    if up is not None:
        left = t.lifetime_window - (s.now() - up.t)
        if left > 0:
            await asyncio.sleep(left)
    rekeys = _device_rekeys(s)
    s.cache["rekeys_watched"] = True
    if rekeys:
        ctx.use(rekeys[0][0].seq, len(s.datagrams))
    assert s.peer is not None
    short = [float(getattr(c, "lifetime", 0) or 0) for c in getattr(s.peer.inner, "children", [])]
    short = [x for x in short if 0 < x < floor]
    if short and not rekeys:
        # IKEv1: the lifetime is negotiated; with the device's short one AWS rekeys first (at 95 % of it).
        return Outcome(
            FAIL,
            f"the device's phase-2 lifetime is {min(short):.0f} s: the IPsec SA is rekeyed every few seconds",
            f"AWS rekeys {margin}-{floor} s before expiry; a negotiated lifetime under {floor} s means constant "
            "rekeys, and the device's own collide with AWS's.",
        )
    early = [(d, age) for d, age in rekeys if age < floor]
    if early:
        d, age = early[0]
        return Outcome(
            FAIL,
            f"the device rekeyed an SA {_secs(age)} after it was created ({ctx.pkt(d)})",
            f"AWS rekeys {margin}-{floor} s before expiry and requires lifetimes of at least 900 s; a device "
            f"lifetime under {floor} s rekeys before AWS's margin and keeps colliding with AWS's rekeys.",
            {"rekey_ages": [round(a, 1) for _, a in rekeys]},
        )
    if rekeys:
        return Outcome(
            PASS,
            f"device rekeys after {', '.join(_secs(a) for _, a in rekeys)}",
            measurements={"rekey_ages": [round(a, 1) for _, a in rekeys]},
        )
    return Outcome(PASS, f"no device rekey within {_secs(t.lifetime_window)} of an SA's life")


def _device_rekeys(s: Session) -> list[tuple[Datagram, float]]:
    """Rekeys the device started, with the age of the SA they replaced: a device Quick Mode / CREATE_CHILD_SA
    request on an established IKE SA, or (IKEv1) a new Main Mode while one is up."""
    out: list[tuple[Datagram, float]] = []
    created = [r.t for r in s.events if r.name in ("child_sa_established",)]
    firsts = _first_qm(s)
    aws_ids = _aws_qm_ids(s)
    for d in s.datagrams:
        if not d.from_device or d.info.kind != "ike":
            continue
        is_rekey = (
            d.info.version == 1 and d.info.exchange == 32 and d.seq not in firsts and d.info.message_id not in aws_ids
        ) or (d.info.version == 2 and d.info.exchange == 36 and not d.info.response)
        if not is_rekey or not created:
            continue
        # strictly earlier: the SA the device's request itself creates is recorded at the same instant
        before = [c for c in created if c < d.t]
        if not before:
            continue
        # a retransmission of the same request is not a second rekey
        if out and out[-1][0].data == d.data:
            continue
        out.append((d, d.t - before[-1]))
    return out


def _first_qm(s: Session) -> set[int]:
    """Datagrams that are the first Quick Mode of an IKE SA (the initial IPsec SA, not a rekey)."""
    firsts: set[int] = set()
    seen_sa: set[bytes] = set()
    for d in s.datagrams:
        if d.info.kind == "ike" and d.info.version == 1 and d.info.exchange == 32:
            key = d.info.spi_i
            if key not in seen_sa:
                seen_sa.add(key)
                firsts.update(
                    x.seq
                    for x in s.datagrams
                    if x.info.kind == "ike"
                    and x.info.spi_i == key
                    and x.info.exchange == 32
                    and x.info.message_id == d.info.message_id
                )
    return firsts


@check(
    "AWS-REK-05",
    "Simultaneous rekeys are resolved to one SA pair",
    "rekey",
    Level.ADVANCED,
    cites=(
        "RFC 7296 §2.8.1 (the SA with the lowest nonce is deleted by its creator)",
        "AWS log: '(CHILD_SA) redundant SA is being deleted due to detected collision'",
    ),
    requirement="When the device's rekey crosses AWS's rekey of the same SA, both complete and exactly one SA "
    "pair remains, with the tunnel up.",
    bound="needs a device-initiated rekey during the run",
    hard_limit=120,
)
async def rek_collision(ctx: CheckContext) -> Outcome:
    s = ctx.session
    assert s.peer is not None
    rekeys = _device_rekeys(s)
    if not rekeys and s.cache.get("rekeys_watched"):
        return Outcome(
            UNSUPPORTED,
            "the device started no rekey during the run (its lifetimes are longer than the run): a collision "
            "cannot be provoked from the AWS side alone",
        )
    # AWS's rekey must offer what the device takes (the negotiated suites): a fresh tunnel if need be; the
    # device's rekey timer then starts again with the new SA.
    if not (s.peer.narrowed and s.tunnel_up()):
        if not await s.ensure_narrowed():
            return Outcome(FAIL, "no tunnel AWS could rekey (its own initiation failed)")
        rekeys = []
    # Provoke: hold the device's next rekey request, start AWS's rekey of the same SA, then release it.
    kind_ok: Callable[[bytes], bool]
    if s.version == 2:

        def kind_ok(data: bytes) -> bool:
            from emulator.conformance.wire import classify

            i = classify(data)
            return i.kind == "ike" and i.exchange == 36 and not i.response
    else:

        def kind_ok(data: bytes) -> bool:
            from emulator.conformance.wire import classify

            i = classify(data)
            return i.kind == "ike" and i.exchange == 32 and i.message_id not in _aws_qm_ids(s)

    held = asyncio.get_running_loop().create_future()

    def hold(data: bytes, src: Any, now: float) -> bool:
        if kind_ok(data) and not held.done():
            held.set_result(now)
            return True
        return False

    s.peer.hold_in = hold
    mark = len(s.events)
    wait = rekeys[-1][1] + 10.0 if rekeys else s.timers.lifetime_window
    try:
        await asyncio.wait_for(held, wait)
    except TimeoutError:
        s.peer.hold_in = None
        return Outcome(UNSUPPORTED, f"the device started no rekey within {_secs(wait)}: nothing to cross")
    s.peer.hold_in = None
    # Ours goes out, then the device's request is let in at once: both requests are in flight together.
    s.call_engine(_rekey_child, "rekey_child")
    s.release_held()
    await asyncio.sleep(s.timers.aws_request_budget / 2 + REKEY_DELETE_WAIT)
    live = _live_children(s.peer.inner)
    coll = s.events_since(mark, "rekey_collision")
    theirs = [r for r in s.events_since(mark, "rekey_done") if r.get("initiator") is False]
    ours = [
        r
        for r in s.events_since(mark)
        if (r.name == "rekey_done" and r.get("initiator") is True)
        or (r.name == "negotiation_failed" and r.get("exchange") in ("create_child_sa", "quick_mode"))
    ]
    refused = [r for r in ours if r.name == "negotiation_failed" and r.get("reason") != "temporary_failure"]
    if not coll and not (theirs and ours):
        return Outcome(UNSUPPORTED, "the device's rekey and AWS's did not cross (no collision to resolve)")
    if refused:
        return Outcome(
            FAIL,
            f"the device refused AWS's crossing rekey ({refused[0].get('reason')})",
            "RFC 7296 §2.8.1 / §2.25: both rekeys complete (or the device answers TEMPORARY_FAILURE) and "
            "the redundant SA is deleted.",
        )
    if not s.tunnel_up():
        return Outcome(FAIL, "the tunnel went down after crossing rekeys")
    if len(live) > 1 and s.version == 2:
        return Outcome(
            FAIL,
            f"{len(live)} Child SAs remain after the collision",
            "RFC 7296 §2.8.1: the redundant SA must be deleted by the side that created it.",
        )
    alive = await verify_alive(ctx)
    if alive is None:
        return Outcome(FAIL, "after the crossing rekeys the device stopped answering DPD")
    return Outcome(PASS, f"crossing rekeys resolved ({len(coll)} collision event(s)); one SA pair, DPD answered")


def _aws_qm_ids(s: Session) -> set[int]:
    return {d.info.message_id for d in s.datagrams if not d.from_device and d.info.exchange == 32}


# ============================================================================================= lifecycle


@check(
    "AWS-LIF-01",
    "After AWS's Delete the device re-initiates",
    "lifecycle",
    Level.BASIC,
    cites=(
        "AWS-CGW: the customer gateway device must initiate the tunnels",
        "AWS-OPT: StartupAction=add",
        "RFC 7296 §1.4.1 / RFC 2408 §3.15 (Delete)",
    ),
    requirement="When AWS deletes the IKE SA (maintenance, endpoint replacement with notice), a device with "
    "StartupAction=add brings the tunnel back by itself.",
    bound="15 s after the Delete",
)
async def lif_delete(ctx: CheckContext) -> Outcome:
    s = ctx.session
    t = s.timers
    cfg = s.aws_config(startup=StartupAction.ADD, initiate=False)
    mark_dg = len(s.datagrams)
    s.replace_engine(cfg, deletes=True)
    dels = [d for d in s.datagrams_since(mark_dg) if not d.from_device]
    init = await s.wait_datagram(device_initiation, t.reinit_after_delete, since=mark_dg)
    if init is None:
        await s.fresh_tunnel()  # put a tunnel back for the next checks
        return Outcome(
            FAIL,
            f"no re-initiation within {_secs(t.reinit_after_delete)} of AWS's Delete ({ctx.pkts(dels)})",
            "AWS (StartupAction=add) never initiates: the tunnel stays DOWN until traffic or an operator starts "
            "it (strongSwan: close_action = start; Cisco: keepalive / auto-connect).",
        )
    delay = init.t - (dels[0].t if dels else init.t)
    up = await s.wait_event(
        "tunnel_up" if not s.settings.ike_only else "ike_sa_established", t.aws_request_budget + 2.0, since=0
    )
    if up is None:
        return Outcome(FAIL, f"the device re-initiated ({ctx.pkt(init)}) but the tunnel did not come up")
    return Outcome(
        PASS,
        f"re-initiated {_secs(delay)} after AWS's Delete ({ctx.pkt(init)})",
        measurements={"reinitiated_after": round(delay, 2)},
    )


@check(
    "AWS-LIF-02",
    "Endpoint replacement: a new IKE SA from the same address replaces the old one",
    "lifecycle",
    Level.BASIC,
    cites=(
        "AWS-REPL: tunnel endpoint replacements",
        "ike-dpd.md §1.3: with IKEv2 + start AWS initiates after a replacement",
        "RFC 7296 §2.4 / RFC 2407 §4.6.3.3 (INITIAL_CONTACT)",
    ),
    requirement="AWS's endpoint comes back with new SPIs and no Delete for the old SAs: the device accepts the "
    "new IKE SA (with INITIAL_CONTACT), drops the old one and works on the new one.",
    bound="the AWS retransmission budget, then one DPD exchange",
)
async def lif_replacement(ctx: CheckContext) -> Outcome:
    s = ctx.session
    old = s.engine_spis()
    mark_dg = len(s.datagrams)
    up = await s.fresh_tunnel(deletes=False)
    if up is None:
        return Outcome(FAIL, "the device did not accept the replaced endpoint's new IKE SA")
    alive = await verify_alive(ctx)
    if alive is None:
        return Outcome(FAIL, "the new IKE SA came up, but the device did not answer DPD on it")
    late_from = len(s.datagrams)

    def later(sess: Session) -> Outcome | None:
        reqs = {
            d.info.message_id
            for d in sess.datagrams[late_from:]
            if d.from_device and _sa_of(d, old) and not d.info.response
        }
        if len(reqs) >= 2:
            return Outcome(
                WARN,
                f"the device kept sending on the replaced IKE SA ({len(reqs)} requests after the replacement)",
                "It did not act on INITIAL_CONTACT: it keeps probing a dead SA until its DPD gives up.",
            )
        return None

    s.cache.setdefault("rechecks", {})[ctx.spec.id] = later
    del mark_dg
    return Outcome(PASS, "new IKE SA accepted; DPD answered on it")


# ============================================================================================ robustness


@check(
    "AWS-ROB-01",
    "An unknown non-critical payload is ignored",
    "robustness",
    Level.ADVANCED,
    cites=(
        "RFC 7296 §2.5 (unknown payloads without the critical bit MUST be skipped)",
        "RFC 2408 §3.16 (an unrecognised Vendor ID is ignored)",
    ),
    requirement="An IKE_SA_INIT with an unknown payload type (critical bit clear) / a Main Mode message 1 with an "
    "unknown Vendor ID is answered as if it were not there.",
    bound="3 tries, 1 s apart",
    needs_tunnel=False,
    needs_child=False,
    hard_limit=30,
)
async def rob_unknown(ctx: CheckContext) -> Outcome:
    if ctx.version == 1:
        ans, sent = await _mm1_probe(ctx, _aws_suites_v1(ctx), extra_vids=(ctx.session.rng.randbytes(16),))
        outcome, detail = _mm_answer(ans)
        ok = outcome == "accepted"
    else:
        cfg = _v2_offer_config(ctx)
        ans, sent, _ = await _sa_init_probe(
            ctx, _v2_proposals(cfg), ike_offer(cfg).dhs[0], extra=((200, b"awsnetemu unknown payload", False),)
        )
        m = v2_parse(ans.info) if ans else None
        outcome, detail = v2_sa_init_answer(m) if m is not None else ("none", "no answer")
        ok = outcome in ("accepted", "invalid_ke")
    if ans is None:
        return Outcome(FAIL, f"no answer ({ctx.pkts(sent)}): the unknown payload made the device drop the request")
    if not ok:
        return Outcome(FAIL, f"refused the request because of the unknown payload ({ctx.pkt(ans)}: {detail})")
    return Outcome(PASS, f"answered as without it ({ctx.pkt(ans)}: {_answer_text(outcome, detail)})")


@check(
    "AWS-ROB-02",
    "An unknown critical payload is refused with UNSUPPORTED_CRITICAL_PAYLOAD",
    "robustness",
    Level.ADVANCED,
    versions=(2,),
    cites=("RFC 7296 §2.5, §3.2 (critical bit)", "RFC 7296 §3.10.1 (UNSUPPORTED_CRITICAL_PAYLOAD)"),
    requirement="An IKE_SA_INIT with an unknown payload whose critical bit is set is rejected with "
    "UNSUPPORTED_CRITICAL_PAYLOAD naming that payload type.",
    bound="3 tries, 1 s apart",
    needs_tunnel=False,
    needs_child=False,
    hard_limit=30,
)
async def rob_critical(ctx: CheckContext) -> Outcome:
    cfg = _v2_offer_config(ctx)
    ans, sent, _ = await _sa_init_probe(
        ctx, _v2_proposals(cfg), ike_offer(cfg).dhs[0], extra=((200, b"awsnetemu critical payload", True),)
    )
    if ans is None:
        return Outcome(
            FAIL,
            f"no answer ({ctx.pkts(sent)})",
            "RFC 7296 §2.5: the responder MUST send UNSUPPORTED_CRITICAL_PAYLOAD.",
        )
    m = v2_parse(ans.info)
    outcome, detail = v2_sa_init_answer(m) if m is not None else ("error", "unreadable")
    if outcome == "critical":
        return Outcome(PASS, f"{detail} ({ctx.pkt(ans)})")
    if outcome in ("accepted", "invalid_ke"):
        return Outcome(FAIL, f"processed the request despite the critical unknown payload ({ctx.pkt(ans)}: {detail})")
    return Outcome(FAIL, f"refused with {detail} instead of UNSUPPORTED_CRITICAL_PAYLOAD ({ctx.pkt(ans)})")


@check(
    "AWS-ROB-03",
    "Malformed and corrupted datagrams are dropped without losing the tunnel",
    "robustness",
    Level.BASIC,
    cites=(
        "RFC 7296 §2.21 (errors in unauthenticated messages)",
        "RFC 2408 §5.1 (length checks)",
        "libreswan impair corrupt-encrypted",
        "strongSwan conftest (wrong lengths)",
    ),
    requirement="A copy of AWS's probe with a wrong length field, a truncated one and one with a flipped "
    "ciphertext bit are all dropped; the tunnel stays up and the next DPD exchange succeeds.",
    bound="AWS's DPD delay for the probe, then one DPD exchange",
    needs_child=False,
)
async def rob_malformed(ctx: CheckContext) -> Outcome:
    s = ctx.session
    t = s.timers
    tx, mark = await _capture_probe(ctx, t.aws_dpd_delay + t.aws_dpd_interval + 2)
    if tx is None:
        return Outcome(UNSUPPORTED, "AWS had no reason to probe (the device kept the SA busy)")
    await s.wait_event("dpd_ack_received", t.aws_dpd_timeout, since=mark)
    marker = tx.data[:4] == NON_ESP_MARKER
    body = tx.data[4:] if marker else tx.data
    pre = NON_ESP_MARKER if marker else b""
    longer = body[:24] + struct.pack("!I", len(body) + 64) + body[28:]
    truncated = body[:40]
    flipped = body[:-1] + bytes([body[-1] ^ 0x01])
    for bad in (longer, truncated, flipped):
        s.send_raw(pre + bad, tx.dst, tx.src, "malformed")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    bad_dg = [
        d
        for d in s.datagrams_since(ctx.start_dg)
        if d.via == "endpoint" and not d.from_device and d.data in (pre + longer, pre + truncated, pre + flipped)
    ]
    lost = _lost_tunnel(s, mark)
    alive = await verify_alive(ctx) if lost is None else None
    if lost is not None or alive is None:
        why = f" ({lost.name})" if lost else ": DPD unanswered afterwards"
        return Outcome(FAIL, f"the tunnel was lost after malformed datagrams ({ctx.pkts(bad_dg)}){why}")
    return Outcome(PASS, f"dropped {len(bad_dg)} malformed datagrams ({ctx.pkts(bad_dg)}); tunnel kept")


@check(
    "AWS-ROB-04",
    "Replayed messages are dropped without losing the tunnel",
    "robustness",
    Level.BASIC,
    cites=(
        "RFC 7296 §2.2 (message IDs protect against replay)",
        "RFC 3706 §7 (sequence numbers against replay)",
        "libreswan impair replay-duplicates",
    ),
    requirement="An old AWS request of the current IKE SA, replayed, does not create or delete anything; the "
    "tunnel stays up.",
    bound="1 s, then one DPD exchange",
    needs_child=False,
)
async def rob_replay(ctx: CheckContext) -> Outcome:
    s = ctx.session
    spis = s.engine_spis()
    mark = len(s.events)
    n_children = len(s.events_since(0, "child_sa_established"))
    ours = [
        d
        for d in s.datagrams
        if not d.from_device and d.via == "endpoint" and _sa_of(d, spis) and d.info.encrypted and not d.info.response
    ]
    if not ours:
        return Outcome(UNSUPPORTED, "no earlier encrypted AWS request on this IKE SA to replay")
    old = ours[0]
    s.send_raw(old.data, old.dst, old.src, "replay")
    await asyncio.sleep(1.0)
    replayed = [d for d in s.datagrams_since(ctx.start_dg) if not d.from_device and d.data == old.data]
    new_children = len(s.events_since(0, "child_sa_established")) - n_children
    lost = _lost_tunnel(s, mark)
    if new_children > 0:
        return Outcome(FAIL, f"a replayed request ({ctx.pkts(replayed)}) created a new SA pair")
    alive = await verify_alive(ctx) if lost is None else None
    if lost is not None or alive is None:
        return Outcome(FAIL, f"the tunnel was lost after a replay of {ctx.pkt(old)} ({ctx.pkts(replayed)})")
    return Outcome(PASS, f"replay of {old.describe()} ({ctx.pkts(replayed)}) changed nothing; tunnel kept")
