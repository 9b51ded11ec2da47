"""The AWS endpoint the battery plays, on real UDP, and everything it records.

A :class:`Session` runs our AWS-role IKE engine (:func:`cgw_peer.peer.create_peer`) on the asyncio UDP driver
(:class:`emulator.drivers.asyncio_udp.UdpDriver`) against the device at ``--cgw``. It keeps:

* every datagram the endpoint and the probes sent or received (:class:`Datagram`, numbered in order: the
  checks' captures and packet references use these numbers), with its cleartext header read
  (:func:`emulator.conformance.wire.classify`);
* every event the engine and the driver emitted (:class:`EventRecord`), with the check that was running;
* the key tables of every IKE SA (for tshark).

Between checks the battery needs the tunnel in a known state with a known AWS configuration. The endpoint can
be *replaced*: the running engine is dropped (optionally after sending its Deletes) and a fresh one with new
settings takes over the same address; when it initiates, it negotiates a new IKE SA with INITIAL_CONTACT, as
a replaced AWS endpoint does (RFC 7296 §2.4, RFC 2407 §4.6.3.3), and the device replaces its old SAs.

Impairments (the libreswan ``--impair`` / strongSwan conftest vocabulary, applied to our own side only) sit in
:class:`ImpairedPeer`, a thin wrapper around the engine: drop incoming or outgoing datagrams matching a
predicate (a one-way or two-way outage, "drop the Nth message"), hold incoming ones and release them later,
and watch every outgoing datagram (to duplicate, replay or corrupt copies of it, sent through the same socket
with :meth:`Session.send_raw`).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cgw_peer.config import (
    PROFILES,
    DpdTimeoutAction,
    IkeVersion,
    PeerConfig,
    Retransmit,
    Role,
    StartupAction,
    TrafficSelector,
    TunnelOptions,
)
from emulator.actions import Action, Address, Event, Transmit
from emulator.conformance.model import CheckSpec, pkt
from emulator.conformance.profile import Profile
from emulator.conformance.wire import IKE_PORT, IkeInfo, classify
from emulator.drivers.asyncio_udp import PeerHandle, UdpDriver
from emulator.keytables import KeyTables


@dataclass(frozen=True)
class Timers:
    """The AWS side's timers (real: AWS's documented values; ``--fast``: short ones) and the bounds the checks
    use for the device, which are the device's own timers and do not shrink with ``--fast``."""

    fast: bool
    aws_dpd_delay: float
    """Idle seconds before AWS probes: 10 (ike-dpd.md §1.2, "no traffic from a VPN peer for 10 seconds")."""
    aws_dpd_interval: float
    aws_dpd_timeout: int
    """DPDTimeoutSeconds: the profile's (>= 30); ``--fast``: 6, below AWS's minimum on purpose."""
    aws_retransmit: Retransmit
    """Retransmission of the AWS side's requests (rekeys, AWS-initiated negotiations)."""
    device_first_initiation: float
    """How long the battery waits for the device to initiate at start (StartupAction=add) before AWS
    initiates itself."""
    probe_timeout: float = 1.0
    """Seconds a one-message probe waits for the answer, per try."""
    probe_tries: int = 3
    recommended_dpd_interval: float = 10.0
    """AWS's recommendation for the CGW: "DPD Interval : 10, DPD Retries : 3" (generic configuration file)."""
    recommended_dpd_retries: int = 3
    tolerance: float = 3.0
    """Slack on device timings (a device timer, the device's scheduling, our own on a loaded machine)."""
    reinit_after_delete: float = 15.0
    """How long after AWS's Delete the device has to re-initiate."""
    lifetime_window: float = 30.0
    """How long the battery watches for device rekeys when judging lifetimes."""

    @property
    def device_dpd_bound(self) -> float:
        """First device probe expected within the recommended interval plus slack."""
        return self.recommended_dpd_interval + self.tolerance

    @property
    def device_dead_bound(self) -> float:
        """A device following AWS's recommendation declares a silent peer dead after interval + retries x
        interval (10 + 3 x 10 = 40 s) and re-initiates at once; plus slack."""
        return self.recommended_dpd_interval * (1 + self.recommended_dpd_retries) + 2 * self.tolerance

    @property
    def aws_request_budget(self) -> float:
        """Seconds after which an AWS request is given up (the sum of its retransmission waits)."""
        return sum(self.aws_retransmit.waits())

    def to_json(self) -> dict[str, Any]:
        return {
            "fast": self.fast,
            "aws_dpd_delay": self.aws_dpd_delay,
            "aws_dpd_interval": self.aws_dpd_interval,
            "aws_dpd_timeout_seconds": self.aws_dpd_timeout,
            "aws_retransmit": {
                "timeout": self.aws_retransmit.timeout,
                "base": self.aws_retransmit.base,
                "tries": self.aws_retransmit.tries,
            },
            "device_first_initiation": self.device_first_initiation,
            "device_dpd_bound": self.device_dpd_bound,
            "device_dead_bound": self.device_dead_bound,
            "lifetime_window": self.lifetime_window,
        }


def make_timers(profile: Profile, *, fast: bool) -> Timers:
    """AWS's timers, or the ``--fast`` ones (documented in ``docs/conformance.md``)."""
    if fast:
        return Timers(
            fast=True,
            aws_dpd_delay=2.0,
            aws_dpd_interval=2.0,
            aws_dpd_timeout=6,
            aws_retransmit=Retransmit(timeout=1.0, base=1.5, tries=4),
            device_first_initiation=10.0,
            lifetime_window=30.0,
        )
    margin = profile.options.rekey_margin_time_seconds
    return Timers(
        fast=False,
        aws_dpd_delay=10.0,
        aws_dpd_interval=10.0,
        aws_dpd_timeout=profile.options.dpd_timeout_seconds,
        aws_retransmit=Retransmit(),
        device_first_initiation=60.0,
        lifetime_window=float(2 * margin),
    )


@dataclass(frozen=True)
class UncheckedTunnelOptions(TunnelOptions):
    """AWS tunnel options without AWS's range checks: ``--fast`` plays DPDTimeoutSeconds below AWS's minimum
    of 30 s. Everything else about the options is unchanged."""

    def validate(self) -> None:
        return None


@dataclass(frozen=True)
class Settings:
    """What the battery runs with (from the command line, the pytest plugin, or a test)."""

    cgw: Address
    local: Address
    psk: str
    ike_version: int
    profile: Profile
    timers: Timers
    ike_only: bool = False
    """The device cannot install IPsec SAs (a lab without kernel ESP): Child-SA checks are ``unsupported``."""
    seed: int | None = None


@dataclass
class Datagram:
    """One datagram seen on our sockets (the endpoint's or a probe's)."""

    seq: int
    t: float
    direction: str
    """``in`` (from the device) or ``out`` (ours)."""
    src: Address
    dst: Address
    data: bytes
    info: IkeInfo
    via: str = "endpoint"
    """``endpoint`` (the AWS engine's sockets) or ``probe`` (a one-message probe's socket)."""

    @property
    def from_device(self) -> bool:
        return self.direction == "in"

    def describe(self) -> str:
        who = "device" if self.from_device else "AWS"
        return f"{who} {self.info.name}"


@dataclass
class EventRecord:
    seq: int
    t: float
    name: str
    fields: dict[str, Any]
    generation: int
    """Which engine emitted it (incremented at every replacement; 0: driver-level events)."""
    check: str

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


InFilter = Callable[[bytes, Address, float], bool]
OutFilter = Callable[[Transmit, float], bool]


class ImpairedPeer:
    """The AWS engine with impairments on our side of the wire (see the module docstring). With no
    impairment set it is transparent."""

    def __init__(self, inner: Any, generation: int) -> None:
        self.inner = inner
        self.generation = generation
        self.drop_in: InFilter | None = None
        """True: the incoming datagram is ignored (it was captured: it reached our socket)."""
        self.drop_out: OutFilter | None = None
        """True: the outgoing datagram is not sent."""
        self.hold_in: InFilter | None = None
        """True: the incoming datagram is kept in :attr:`held` until :meth:`Session.release_held`."""
        self.held: list[tuple[bytes, Address, Address]] = []
        self.watch_out: list[Callable[[Transmit, float], None]] = []
        self.observe: Callable[[bytes, list[Action], float], None] | None = None
        """Sees every delivered datagram with what the engine answered (for facts no event carries)."""
        self.dropped_in = 0
        self.dropped_out = 0
        self.narrowed = False
        """Its algorithms are limited to the negotiated suites, so the SAs it initiates match the device's."""

    # -- the DrivenPeer protocol ---------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return self._out(self.inner.start(now), now)

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        if self.drop_in is not None and self.drop_in(data, src, now):
            self.dropped_in += 1
            return []
        if self.hold_in is not None and self.hold_in(data, src, now):
            self.held.append((data, src, dst))
            return []
        actions: list[Action] = self.inner.receive_datagram(data, src, dst, now)
        if self.observe is not None:
            self.observe(data, actions, now)
        return self._out(actions, now)

    def next_deadline(self) -> float | None:
        d: float | None = self.inner.next_deadline()
        return d

    def handle_timer(self, now: float) -> list[Action]:
        return self._out(self.inner.handle_timer(now), now)

    def close(self, now: float) -> list[Action]:
        return self._out(self.inner.close(now), now)

    def ike_spis(self) -> set[bytes]:
        spis: set[bytes] = self.inner.ike_spis()
        return spis

    def call(self, fn: Callable[[float], list[Action]], now: float) -> list[Action]:
        """An engine API call (``rekey_child``...) with the outgoing impairments applied."""
        return self._out(fn(now), now)

    def _out(self, actions: list[Action], now: float) -> list[Action]:
        if not actions or (self.drop_out is None and not self.watch_out):
            return actions
        kept: list[Action] = []
        for a in actions:
            if isinstance(a, Transmit):
                if self.drop_out is not None and self.drop_out(a, now):
                    self.dropped_out += 1
                    continue
                for w in self.watch_out:
                    w(a, now)
            kept.append(a)
        return kept


class _Waiter:
    __slots__ = ("future", "pred")

    def __init__(self, pred: Callable[[Any], bool], future: asyncio.Future[Any]) -> None:
        self.pred = pred
        self.future = future


class Session:
    """One battery run: the AWS endpoint, its records, and the helpers checks use."""

    def __init__(self, settings: Settings, *, trace: Callable[[EventRecord], None] | None = None) -> None:
        self.settings = settings
        self.version = settings.ike_version
        self.timers = settings.timers
        seed = settings.seed
        self.rng = random.Random(seed) if seed is not None else random.Random(os.urandom(32))
        self.datagrams: list[Datagram] = []
        self.events: list[EventRecord] = []
        self.keys = KeyTables()
        self.current_check = ""
        self.generation = 0
        self.peer: ImpairedPeer | None = None
        self.handle: PeerHandle | None = None
        self.config: PeerConfig | None = None
        self.driver: UdpDriver | None = None
        self._ev_waiters: list[_Waiter] = []
        self._dg_waiters: list[_Waiter] = []
        self._trace = trace
        self.retired_spis: set[bytes] = set()
        """IKE SPIs of replaced engines (traffic on them after the replacement is worth reporting)."""
        self.cache: dict[str, Any] = {}
        """Scenario results shared by several checks (see :meth:`scenario`)."""
        self._scenario_locks: dict[str, asyncio.Lock] = {}
        self.send_errors: list[str] = []
        self._narrowed: set[int] = set()
        self._last_narrow = False

    # ------------------------------------------------------------------------------------------- set-up

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def open(self) -> None:
        """Bind the sockets (raises OSError when the local address is not ours)."""
        self.driver = UdpDriver(on_event=self._on_event, on_datagram=self._on_datagram, timer_slack=0.01)
        cfg = self.aws_config()
        self.install(cfg, start=False)

    async def close(self, linger: float = 0.3) -> None:
        if self.driver is not None:
            await self.driver.aclose(linger=linger if self.version == 2 else 0.0)

    def now(self) -> float:
        assert self.driver is not None
        return self.driver.now()

    # ------------------------------------------------------------------------------------ configuration

    def aws_config(
        self,
        *,
        startup: StartupAction | None = None,
        action: DpdTimeoutAction | None = None,
        initiate: bool | None = None,
        quiet: bool = False,
        narrow: bool | None = None,
        dpd_timeout: int | None = None,
        **behaviour: Any,
    ) -> PeerConfig:
        """The AWS endpoint's configuration: the profile's tunnel options, our timers, optionally another
        StartupAction / DPDTimeoutAction, and ``quiet`` (AWS never probes and never declares the device dead:
        the device's own DPD is what is being watched).

        ``narrow`` (default: when this endpoint initiates) limits the algorithm lists to the suites negotiated
        at start-up: an initiator offers one DH group per Quick Mode / KE payload, and re-offering what was
        agreed is what an AWS endpoint's own rekeys and restarts do (strongSwan reuses the last proposal too)."""
        s = self.settings
        t = self.timers
        opts = s.profile.options
        changes: dict[str, Any] = {"pre_shared_key": None}
        if narrow is None:
            narrow = bool(initiate) or startup is StartupAction.START
        if narrow:
            changes.update(self.negotiated_options())
        self._last_narrow = narrow
        if startup is not None:
            changes["startup_action"] = startup
            if startup is StartupAction.START:
                changes["ike_versions"] = (IkeVersion.IKEV2,)
        if action is not None:
            changes["dpd_timeout_action"] = action
        if dpd_timeout is None:
            dpd_timeout = t.aws_dpd_timeout
        beh = replace(
            PROFILES["aws"],
            dpd_delay=t.aws_dpd_delay,
            dpd_interval=t.aws_dpd_interval,
            retransmit=t.aws_retransmit,
            restart_backoff_initial=0.5 if t.fast else 1.0,
            restart_backoff_max=4.0 if t.fast else 60.0,
            **behaviour,
        )
        if quiet:
            beh = replace(beh, dpd_delay=100000.0, dpd_interval=100000.0)
            dpd_timeout = 300000
        changes["dpd_timeout_seconds"] = dpd_timeout
        if dpd_timeout < 30 or quiet:
            fields = {f: getattr(opts, f) for f in opts.__dataclass_fields__}
            fields.update(changes)
            options: TunnelOptions = UncheckedTunnelOptions(**fields)
        else:
            options = replace(opts, **changes)
        version = IkeVersion.IKEV1 if self.version == 1 else IkeVersion.IKEV2
        cfg = PeerConfig(
            role=Role.AWS,
            ike_version=version,
            options=options,
            behaviour=beh,
            psk=s.psk.encode(),
            local_ts=TrafficSelector(cidr=s.profile.aws_cidr),
            remote_ts=TrafficSelector(cidr=s.profile.customer_cidr),
            name="aws",
            initiate=initiate,
        )
        if narrow:
            self._narrowed.add(id(cfg))
        return cfg

    def negotiated_options(self) -> dict[str, Any]:
        """TunnelOptions fields limited to the last negotiated IKE and Child SA suites (see :meth:`aws_config`)."""
        opts = self.settings.profile.options
        ike = next((r.get("proposal") for r in reversed(self.events) if r.name == "ike_sa_established"), None)
        child = next((r.get("proposal") for r in reversed(self.events) if r.name == "child_sa_established"), None)
        out: dict[str, Any] = {}
        p1 = _suite_tokens(str(ike)) if ike else None
        p2 = _suite_tokens(str(child)) if child else None
        if p1 is not None:
            enc, integ, group = p1
            if enc in opts.phase1_encryption_algorithms:
                out["phase1_encryption_algorithms"] = (enc,)
            if integ in opts.phase1_integrity_algorithms:
                out["phase1_integrity_algorithms"] = (integ,)
            if group in opts.phase1_dh_group_numbers:
                out["phase1_dh_group_numbers"] = (group,)
        if p2 is not None:
            enc, integ, group = p2
            if group is None and p1 is not None:
                group = p1[2]  # IKEv2: the first Child SA has no KE; the IKE SA's group is the likeliest PFS group
            if enc in opts.phase2_encryption_algorithms:
                out["phase2_encryption_algorithms"] = (enc,)
            if integ in opts.phase2_integrity_algorithms:
                out["phase2_integrity_algorithms"] = (integ,)
            if group in opts.phase2_dh_group_numbers:
                out["phase2_dh_group_numbers"] = (group,)
        return out

    def install(self, cfg: PeerConfig, *, start: bool = True) -> ImpairedPeer:
        """A fresh engine with ``cfg`` on our address (the previous one, if any, must be removed first)."""
        from cgw_peer.peer import create_peer

        assert self.driver is not None
        self.generation += 1
        engine = create_peer(cfg, local=self.settings.local, remote=self.settings.cgw, rng=self.rng)
        peer = ImpairedPeer(engine, self.generation)
        peer.narrowed = id(cfg) in self._narrowed
        self.handle = self.driver.add_peer(
            peer, name=f"aws#{self.generation}", local=self.settings.local, remote=self.settings.cgw
        )
        self.peer = peer
        self.config = cfg
        peer.observe = self._observe
        if start:
            self.driver.start_peer(self.handle)
        return peer

    def replace_engine(self, cfg: PeerConfig, *, deletes: bool = False) -> ImpairedPeer:
        """Drop the running engine (sending its Deletes first when ``deletes``) and install a fresh one with
        ``cfg`` (which initiates if ``cfg.initiates_at_startup``)."""
        assert self.driver is not None and self.handle is not None and self.peer is not None
        old = self.handle
        self.retired_spis |= set(self.peer.ike_spis())
        if deletes:
            self.driver.close_peer(old)
        self.driver.remove_peer(old)
        return self.install(cfg)

    # ------------------------------------------------------------------------------------------ records

    def _on_event(self, h: PeerHandle | None, t: float, ev: Event) -> None:
        gen = self.peer.generation if (h is not None and self.handle is h and self.peer is not None) else 0
        if h is not None and self.handle is not h:
            gen = -1  # a removed engine's last words (its close())
        rec = EventRecord(len(self.events), t, ev.name, dict(ev.fields), gen, self.current_check)
        self.events.append(rec)
        if ev.name == "sa_keys":
            self.keys.add(ev.fields)
        elif ev.name == "send_failed":
            self.send_errors.append(str(ev.get("errno")))
        if self._trace is not None:
            self._trace(rec)
        self._wake(self._ev_waiters, rec)

    def _observe(self, data: bytes, actions: list[Action], now: float) -> None:
        """IKEv2: the engine refuses an additional Child SA (NO_ADDITIONAL_SAS, one SA pair per tunnel) with a
        CREATE_CHILD_SA response and no event; remember the device's request."""
        kinds = {a.kind for a in actions if isinstance(a, Transmit)}
        if "create_child_sa_response" not in kinds:
            return
        names = {a.name for a in actions if isinstance(a, Event)}
        answered = {
            "child_sa_established",
            "rekey_done",
            "negotiation_failed",
            "rekey_collision",
            "ike_sa_established",
            "sa_keys",
            "response_retransmitted",
        }
        if names & answered:
            return
        req = next((d for d in reversed(self.datagrams) if d.from_device and d.data == data), None)
        if req is not None:
            self.cache.setdefault("refused_children", []).append(req)

    def _on_datagram(self, t: float, direction: str, src: Address, dst: Address, data: bytes) -> None:
        self.record_datagram(t, direction, src, dst, data, "endpoint")

    def record_datagram(
        self, t: float, direction: str, src: Address, dst: Address, data: bytes, via: str = "probe"
    ) -> Datagram:
        ports = (src[1], dst[1])
        natt = any(p != IKE_PORT for p in ports)
        d = Datagram(len(self.datagrams), t, direction, src, dst, data, classify(data, natt), via)
        self.datagrams.append(d)
        self._wake(self._dg_waiters, d)
        return d

    @staticmethod
    def _wake(waiters: list[_Waiter], item: Any) -> None:
        if not waiters:
            return
        for w in list(waiters):
            if w.future.done():
                waiters.remove(w)
                continue
            try:
                hit = w.pred(item)
            except Exception:  # a predicate bug must not break the recording
                hit = False
            if hit:
                w.future.set_result(item)
                waiters.remove(w)

    # -- queries --------------------------------------------------------------------------------------------

    def events_since(self, seq: int, name: str | None = None, *, current: bool = False) -> list[EventRecord]:
        """Events numbered ``>= seq`` (named ``name``; of the running engine only with ``current``)."""
        out = []
        for r in self.events[seq:]:
            if name is not None and r.name != name:
                continue
            if current and self.peer is not None and r.generation != self.peer.generation:
                continue
            out.append(r)
        return out

    def datagrams_since(self, seq: int, pred: Callable[[Datagram], bool] | None = None) -> list[Datagram]:
        return [d for d in self.datagrams[seq:] if pred is None or pred(d)]

    async def wait_event(
        self,
        name: str,
        timeout: float,
        *,
        since: int | None = None,
        current: bool = True,
        pred: Callable[[EventRecord], bool] | None = None,
    ) -> EventRecord | None:
        """The first event ``name`` (numbered ``>= since``; of the running engine with ``current``; matching
        ``pred``) already recorded or arriving within ``timeout`` seconds; None on timeout."""
        gen = self.peer.generation if (current and self.peer is not None) else None

        def ok(r: EventRecord) -> bool:
            if r.name != name or (gen is not None and r.generation != gen):
                return False
            return pred is None or pred(r)

        start = len(self.events) if since is None else since
        for r in self.events[start:]:
            if ok(r):
                return r
        rec: EventRecord | None = await self._wait(self._ev_waiters, ok, timeout)
        return rec

    async def wait_datagram(
        self, pred: Callable[[Datagram], bool], timeout: float, *, since: int | None = None
    ) -> Datagram | None:
        start = len(self.datagrams) if since is None else since
        for d in self.datagrams[start:]:
            if pred(d):
                return d
        got: Datagram | None = await self._wait(self._dg_waiters, pred, timeout)
        return got

    async def _wait(self, waiters: list[_Waiter], pred: Callable[[Any], bool], timeout: float) -> Any:
        if timeout <= 0:
            return None
        fut: asyncio.Future[Any] = self.loop.create_future()
        w = _Waiter(pred, fut)
        waiters.append(w)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            if w in waiters:
                waiters.remove(w)

    # -------------------------------------------------------------------------------------- tunnel state

    def tunnel_up(self) -> bool:
        """The running engine reports the tunnel UP (its last tunnel_up/tunnel_down is an up)."""
        if self.peer is None:
            return False
        gen = self.peer.generation
        for r in reversed(self.events):
            if r.generation != gen:
                continue
            if r.name == "tunnel_up":
                return True
            if r.name == "tunnel_down":
                return False
        return False

    def ike_up(self) -> bool:
        if self.peer is None:
            return False
        gen = self.peer.generation
        return any(r.name == "ike_sa_established" and r.generation == gen for r in self.events)

    async def wait_up(self, timeout: float, *, since: int | None = None) -> EventRecord | None:
        """tunnel_up of the running engine (already, or within ``timeout``)."""
        if since is None and self.tunnel_up():
            for r in reversed(self.events):
                if r.name == "tunnel_up" and self.peer is not None and r.generation == self.peer.generation:
                    return r
        return await self.wait_event("tunnel_up", timeout, since=since if since is not None else 0)

    async def fresh_tunnel(
        self,
        cfg: PeerConfig | None = None,
        *,
        deletes: bool = False,
        timeout: float | None = None,
        ike_only: bool | None = None,
    ) -> EventRecord | None:
        """Replace the engine with one that initiates (``cfg``, default: the profile's, initiating) and wait for
        the tunnel (or, with ``--ike-only``, the IKE SA) to come up; None if it does not within the AWS
        request budget."""
        if cfg is None:
            cfg = self.aws_config(initiate=True)
        elif cfg.initiate is None and not cfg.initiates_at_startup:
            cfg = replace(cfg, initiate=True)
        mark = len(self.events)
        self.replace_engine(cfg, deletes=deletes)
        budget = timeout if timeout is not None else self.timers.aws_request_budget * 2 + 2.0
        if ike_only is None:
            ike_only = self.settings.ike_only
        name = "ike_sa_established" if ike_only else "tunnel_up"
        return await self.wait_event(name, budget, since=mark)

    async def ensure_narrowed(self) -> bool:
        """Make sure the running engine can start rekeys the device accepts (see :meth:`aws_config`): if it was
        not configured with the negotiated suites, replace it with one that is (a fresh AWS-initiated tunnel)."""
        if self.peer is not None and self.peer.narrowed and self.tunnel_up():
            return True
        return await self.fresh_tunnel(self.aws_config(initiate=True, narrow=True)) is not None

    # ----------------------------------------------------------------------------------- sending our own

    def send_raw(self, data: bytes, dst: Address | None = None, src: Address | None = None, kind: str = "raw") -> None:
        """Send ``data`` from the endpoint's socket (crafted, replayed or duplicated datagrams)."""
        assert self.driver is not None and self.handle is not None
        local = src or self.handle.local
        remote = dst or self.settings.cgw
        tx = Transmit(data, local, remote, kind)
        self.driver.call(self.handle, lambda now: [tx], "send_raw")

    def call_engine(self, fn: Callable[[Any, float], list[Action]], what: str = "call") -> None:
        """Call ``fn(engine, now)`` on the running engine and carry out what it returns."""
        assert self.driver is not None and self.handle is not None and self.peer is not None
        peer = self.peer
        self.driver.call(self.handle, lambda now: peer.call(lambda n: fn(peer.inner, n), now), what)

    def release_held(self) -> None:
        """Deliver the datagrams :attr:`ImpairedPeer.hold_in` kept back, in order."""
        assert self.driver is not None and self.handle is not None and self.peer is not None
        peer = self.peer
        held, peer.held = peer.held, []
        for data, src, dst in held:

            def deliver(now: float, d: bytes = data, s: Address = src, t: Address = dst) -> list[Action]:
                return peer._out(peer.inner.receive_datagram(d, s, t, now), now)

            self.driver.call(self.handle, deliver, "release_held")

    def clear_impairments(self) -> None:
        if self.peer is not None:
            self.peer.drop_in = None
            self.peer.drop_out = None
            self.peer.hold_in = None
            self.peer.watch_out.clear()

    # ------------------------------------------------------------------------------------- shared runs

    async def scenario(self, name: str, run: Callable[[], Any]) -> Any:
        """Run a scenario once per session and share its result between the checks that read it."""
        lock = self._scenario_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self.cache:
                self.cache[name] = await run()
            return self.cache[name]

    def engine_spis(self) -> set[bytes]:
        return set(self.peer.ike_spis()) if self.peer is not None else set()


_AWS_ENC = {"aes128": "AES128", "aes256": "AES256", "aes128gcm16": "AES128-GCM-16", "aes256gcm16": "AES256-GCM-16"}
_AWS_INTEG = {"sha1": "SHA1", "sha256": "SHA2-256", "sha384": "SHA2-384", "sha512": "SHA2-512"}


def _suite_tokens(proposal: str) -> tuple[str | None, str | None, int | None]:
    """``aes128-sha1-modp2048`` / ``aes256gcm16-prfsha384-ecp384`` -> (AWS encryption name, AWS integrity name
    (the PRF's for AES-GCM), DH group)."""
    from cgw_peer.ikev1.proposals import GROUP_TOKENS

    enc = integ = None
    group = None
    for tok in proposal.lower().split("-"):
        if tok in _AWS_ENC:
            enc = _AWS_ENC[tok]
        elif tok in _AWS_INTEG:
            integ = _AWS_INTEG[tok]
        elif tok.startswith("prf") and tok[3:] in _AWS_INTEG and integ is None:
            integ = _AWS_INTEG[tok[3:]]
        elif tok in GROUP_TOKENS:
            group = GROUP_TOKENS[tok]
    return enc, integ, group


@dataclass
class Window:
    """A span of the session's datagrams a check looked at (its capture)."""

    start: int
    end: int


@dataclass
class CheckContext:
    """What a check function gets: the session, its own spec, and where its records start."""

    session: Session
    spec: CheckSpec
    start_dg: int
    start_ev: int
    t0: float
    windows: list[Window] = field(default_factory=list)
    """Extra capture spans (shared scenarios this check read), besides its own run."""

    @property
    def timers(self) -> Timers:
        return self.session.timers

    @property
    def version(self) -> int:
        return self.session.version

    def pkt(self, d: Datagram) -> str:
        return pkt(d.seq)

    def pkts(self, ds: Sequence[Datagram], limit: int = 6) -> str:
        """``packets 3, 5, 7`` style references (the first ``limit``)."""
        refs = [pkt(d.seq) for d in ds[:limit]]
        more = f" and {len(ds) - limit} more" if len(ds) > limit else ""
        return ", ".join(refs) + more

    def use(self, start: int, end: int) -> None:
        """Include datagrams ``[start, end)`` in this check's capture."""
        self.windows.append(Window(start, end))
