"""Runs shared by several checks: the start of the session, and "the AWS side goes away".

A scenario runs once per session (:meth:`Session.scenario`) and keeps what it saw; each check that reads it
judges one aspect and puts the scenario's span of datagrams in its own capture. This is how a device's DPD
delay, its detection of a dead AWS side, its re-initiation and the time to recover are all measured from one
outage instead of four.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cgw_peer.config import DpdTimeoutAction, StartupAction
from emulator.actions import Address
from emulator.conformance.session import Datagram, EventRecord, Session
from emulator.conformance.wire import IkeInfo, classify


class PskMismatch(Exception):
    """The device authenticates with another pre-shared key than ``--psk`` (a configuration error)."""


def is_initiation(info: IkeInfo) -> bool:
    """The first message of a new IKE SA (Main / Aggressive Mode message 1, IKE_SA_INIT request)."""
    if info.kind != "ike" or info.spi_r != bytes(8):
        return False
    if info.version == 1:
        return info.exchange in (2, 4) and info.message_id == 0
    return info.exchange == 34 and not info.response


def device_initiation(d: Datagram) -> bool:
    return d.from_device and is_initiation(d.info)


# =============================================================================================== startup


@dataclass
class Startup:
    """How the tunnel first came up."""

    start: int
    end: int = 0
    initiations: list[Datagram] = field(default_factory=list)
    """Every initiation the device sent during start-up."""
    measured: list[Datagram] = field(default_factory=list)
    """Copies (bitwise identical) of the initiation whose retransmissions were measured."""
    answer: Datagram | None = None
    """Our first answer to the measured initiation."""
    copies_after_answer: list[Datagram] = field(default_factory=list)
    aws_initiated: bool = False
    ike: EventRecord | None = None
    up: EventRecord | None = None
    failures: list[EventRecord] = field(default_factory=list)
    drops: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> Datagram | None:
        return self.initiations[0] if self.initiations else None


RTX_DROPS = 2
"""Copies of the device's first initiation the endpoint ignores, so two retransmissions can be timed."""
RTX_MAX_DROPS = 4
"""Never ignore more than this many initiations in all (a device that starts afresh each time)."""


class _RtxDropper:
    """Ignores the first :data:`RTX_DROPS` copies of the device's first initiation (see :func:`startup`)."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.drops = 0
        self.measured: bytes | None = None

    def __call__(self, data: bytes, src: Address, now: float) -> bool:
        info = classify(data)
        if not is_initiation(info) or self.measured is not None or self.drops >= RTX_MAX_DROPS:
            return False
        n = self.counts.get(info.body, 0)
        if n < RTX_DROPS:
            self.counts[info.body] = n + 1
            self.drops += 1
            return True
        self.measured = info.body
        return False


def prepare_startup(s: Session) -> None:
    """Arm the start-up impairment as soon as the endpoint's sockets exist (the device may already be
    retransmitting its first message towards us)."""
    assert s.peer is not None
    aws_starts = s.settings.profile.options.startup_action is StartupAction.START and s.version == 2
    if "startup_dropper" not in s.cache and not aws_starts:
        dropper = _RtxDropper()
        s.cache["startup_dropper"] = dropper
        s.peer.drop_in = dropper


async def startup(s: Session) -> Startup:
    """Start the endpoint (StartupAction as the profile says) and wait for the tunnel.

    The first two copies of the device's first initiation are ignored on purpose, to time its
    retransmissions (AWS-RTX-01). If the device does not initiate within ``device_first_initiation`` seconds,
    AWS initiates (as StartupAction=start would) so the other checks can run. Everything since the session's
    sockets were bound counts."""
    assert s.driver is not None and s.handle is not None and s.peer is not None
    st = Startup(start=0)
    prepare_startup(s)
    dropper: _RtxDropper | None = s.cache.get("startup_dropper")

    aws_starts = s.settings.profile.options.startup_action is StartupAction.START and s.version == 2
    mark_ev = 0
    s.driver.start_peer(s.handle)
    t = s.timers
    if aws_starts:
        st.aws_initiated = True
    else:
        first = await s.wait_datagram(device_initiation, t.device_first_initiation, since=st.start)
        if first is None:
            st.notes.append(f"the device did not initiate within {t.device_first_initiation:.0f} s: AWS initiated")
            st.aws_initiated = True
            s.peer.drop_in = None
            s.call_engine(lambda e, now: e.initiate(now), "initiate")
    # Wait for the IKE SA: the device's retransmissions we ignore add their waits (a strongSwan default
    # schedule: 4 + 7.2 s), then the negotiation itself.
    budget = t.aws_request_budget * 2 + 25.0
    loop = asyncio.get_running_loop()
    end = loop.time() + budget
    name = "ike_sa_established" if s.settings.ike_only else "tunnel_up"
    aws_tried_at: int | None = len(s.events) if st.aws_initiated else None
    while True:
        left = end - loop.time()
        ev = await s.wait_event(name, min(left, 0.5), since=mark_ev) if left > 0 else None
        _check_psk(s, mark_ev)
        if ev is not None or left <= 0:
            break
        if name == "tunnel_up" and _child_stalled(s, mark_ev, t.aws_request_budget + 2):
            break
        if s.ike_up():
            continue
        # Refused both ways (no common proposal): no point in waiting out the budget.
        if aws_tried_at is None and _refused(s, mark_ev):
            st.notes.append("AWS refused the device's negotiation; AWS initiated with its own proposals")
            s.peer.drop_in = None
            aws_tried_at = len(s.events)
            s.call_engine(lambda e, now: e.initiate(now), "initiate")
        elif aws_tried_at is not None and _refused(s, aws_tried_at, ours=True):
            if not any(d.from_device for d in s.datagrams):
                s.cache["aws_initiation_failed"] = True
            break
    s.peer.drop_in = None
    st.ike = next((r for r in s.events_since(mark_ev, "ike_sa_established")), None)
    st.up = next((r for r in s.events_since(mark_ev, "tunnel_up")), None)
    st.failures = s.events_since(mark_ev, "negotiation_failed")
    st.end = len(s.datagrams)
    st.initiations = [d for d in s.datagrams[st.start : st.end] if device_initiation(d)]
    st.drops = dropper.drops if dropper is not None else 0
    body = dropper.measured if dropper is not None else None
    if body is None and st.initiations:
        # No initiation reached a third copy: time the one with the most copies.
        bodies = [d.info.body for d in st.initiations]
        body = max(set(bodies), key=bodies.count)
    if body is not None:
        st.measured = [d for d in st.initiations if d.info.body == body]
        spi = st.measured[0].info.spi_i
        third = st.measured[min(RTX_DROPS, len(st.measured) - 1)]
        st.answer = next(
            (
                d
                for d in s.datagrams[third.seq : st.end]
                if not d.from_device and d.via == "endpoint" and d.info.kind == "ike" and d.info.spi_i == spi
            ),
            None,
        )
        if st.answer is not None:
            st.copies_after_answer = [d for d in st.measured if d.seq > st.answer.seq]
    return st


def _check_psk(s: Session, since: int) -> None:
    """Stop the run when the device's authentication fails the way a different pre-shared key makes it fail:
    IKEv1 derives the Main Mode keys from the key, so message 5 does not decrypt or its HASH_I does not verify;
    IKEv2's AUTH payload does not verify (AUTHENTICATION_FAILED)."""
    if s.ike_up():
        return
    for r in s.events_since(since):
        if r.name == "datagram_dropped" and r.get("reason") in ("bad_hash", "decrypt_failed"):
            what = "HASH_I does not verify" if r.get("reason") == "bad_hash" else "does not decrypt"
            raise PskMismatch(f"its Main Mode message 5 {what} with the keys --psk gives")
        if r.name == "negotiation_failed" and r.get("reason") == "authentication_failed":
            raise PskMismatch("IKE_AUTH failed authentication (AUTHENTICATION_FAILED)")


def _refused(s: Session, since: int, *, ours: bool = False) -> bool:
    """A phase-1 negotiation failed for want of a common proposal (or, ``ours``: AWS's own attempt failed)."""
    for r in s.events_since(since, "negotiation_failed"):
        if r.get("exchange") not in ("main_mode", "ike_sa_init"):
            continue
        if ours or r.get("reason") == "no_proposal_chosen":
            return True
    return False


def _child_stalled(s: Session, since: int, grace: float) -> bool:
    """The IKE SA is up but no Child SA followed for ``grace`` seconds (a device whose phase 2 stalls)."""
    ike = next((r for r in s.events_since(since, "ike_sa_established")), None)
    return ike is not None and s.now() - ike.t > grace and not s.events_since(since, "tunnel_up")


# ============================================================================================ AWS goes away


@dataclass
class Outage:
    """AWS's side went silent (both directions) for a while, with one StartupAction x DPDTimeoutAction."""

    startup: StartupAction
    action: DpdTimeoutAction
    start: int
    end: int = 0
    set_up: bool = False
    outage_at: float = 0.0
    outage_end_at: float = 0.0
    last_aws: Datagram | None = None
    """The last datagram AWS sent before the outage (the device's idle time counts from it)."""
    old_spis: frozenset[bytes] = frozenset()
    aws_dead: EventRecord | None = None
    device_probes: list[Datagram] = field(default_factory=list)
    """Requests the device sent on the old IKE SA (its DPD probes) from the outage on."""
    reinit: Datagram | None = None
    """The first new IKE SA initiation after the outage began, by either side."""
    reinit_by: str = "nobody"
    recovered: EventRecord | None = None
    """tunnel_up of the new SA, or (DPDTimeoutAction=none) the first successful DPD exchange afterwards."""
    recovered_how: str = ""
    bound: float = 0.0
    """Seconds the battery waited for recovery after the outage."""
    watched_until: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def silence(self) -> float:
        """Seconds from AWS's last message before the outage to the end of the watch."""
        return self.watched_until - (self.last_aws.t if self.last_aws is not None else self.outage_at)

    @property
    def recovery_time(self) -> float | None:
        """Seconds from the end of the outage to recovery."""
        return None if self.recovered is None else max(0.0, self.recovered.t - self.outage_end_at)


async def outage(s: Session, startup_action: StartupAction, action: DpdTimeoutAction) -> Outage:
    """Bring a tunnel up with AWS set to (``startup_action``, ``action``) and the fast/real AWS DPD timers,
    black-hole the path long enough for AWS's DPD timeout to fire (DPDTimeoutSeconds + 1 s), restore it,
    and watch who re-initiates and when the tunnel works again."""
    o = Outage(startup_action, action, start=len(s.datagrams))
    t = s.timers
    cfg = s.aws_config(startup=startup_action, action=action, initiate=True)
    up = await s.fresh_tunnel(cfg)
    if up is None:
        o.notes.append("no tunnel could be set up for this run")
        o.end = len(s.datagrams)
        return o
    o.set_up = True
    # Let the new SA settle (the device may still send its Deletes for the old one), then go dark.
    await asyncio.sleep(0.3)
    assert s.peer is not None
    o.old_spis = frozenset(s.engine_spis())
    sent = [d for d in s.datagrams if not d.from_device and d.via == "endpoint"]
    o.last_aws = sent[-1] if sent else None
    o.outage_at = s.now()
    mark_ev = len(s.events)
    peer = s.peer
    peer.drop_in = lambda data, src, now: True
    peer.drop_out = lambda tx, now: True
    dead = await s.wait_event("dpd_timeout", t.aws_dpd_timeout + t.aws_dpd_interval + 5.0, since=mark_ev)
    o.aws_dead = dead
    # Keep the path dark one more second after AWS's verdict (or after the window if it never came).
    await asyncio.sleep(1.0)
    o.outage_end_at = s.now()
    peer.drop_in = None
    peer.drop_out = None
    out_mark = len(s.datagrams)
    # Recovery: a new tunnel_up (clear/restart) or, for none, the next successful DPD exchange on the old SA.
    # A device that follows AWS's recommendation re-initiates within device_dead_bound of AWS's last message;
    # AWS's own restart (backoff, then its retransmissions) needs its request budget after the outage.
    since_last = s.now() - (o.last_aws.t if o.last_aws is not None else o.outage_at)
    o.bound = max(t.device_dead_bound - since_last, t.aws_request_budget) + 5.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + o.bound
    while loop.time() < deadline:
        rec = next((r for r in s.events_since(mark_ev, "tunnel_up", current=True)), None)
        if rec is not None:
            o.recovered, o.recovered_how = rec, "a new IKE SA and Child SA"
            break
        if action is DpdTimeoutAction.NONE:
            ack = next(
                (
                    r
                    for r in s.events_since(mark_ev, current=True)
                    if r.t >= o.outage_end_at
                    and (
                        (r.name == "dpd_ack_received" and r.get("valid", True))
                        or r.name in ("dpd_request_received", "rekey_done")
                    )
                ),
                None,
            )
            if ack is not None and s.tunnel_up():
                o.recovered, o.recovered_how = ack, "the SAs AWS kept (a DPD exchange succeeded)"
                break
        await asyncio.sleep(0.2)
    o.watched_until = s.now()
    o.end = len(s.datagrams)
    window = s.datagrams[o.start : o.end]
    o.device_probes = [
        d
        for d in window
        if d.from_device
        and d.info.kind == "ike"
        and d.t >= o.outage_at
        and (d.info.spi_i in o.old_spis or d.info.spi_r in o.old_spis)
        and not d.info.response
        and not is_initiation(d.info)
    ]
    reinits = [d for d in window if d.t >= o.outage_at and is_initiation(d.info)]
    if reinits:
        o.reinit = reinits[0]
        o.reinit_by = "device" if reinits[0].from_device else "AWS"
    del out_mark
    return o


def outage_key(startup_action: StartupAction, action: DpdTimeoutAction) -> str:
    return f"outage:{startup_action.value}:{action.value}"
