"""A tunnel pair under random faults and time steps (hypothesis ``RuleBasedStateMachine``), both IKE versions.

After every step the invariants of the shared lifecycle must hold (``tests.lifecycle.pair.check_trace``):
status agrees with the last UP/DOWN event; at most one ``tunnel_down`` per ``tunnel_up``; every event matches its
declaration; no DPD timeout while authenticated inbound traffic is younger than the timeout (AWS model);
``last_inbound`` is never older than an authenticated receipt. On top, every encrypted datagram a node sends
belongs to an IKE SA that node holds at that moment: no action on an SA that was deleted.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cgw_peer.config import PROFILES, Behaviour, DpdTimeoutAction, LivenessModel
from cgw_peer.peer import IkePeer
from emulator.actions import Action, Address, Transmit
from emulator.link import FaultPlan
from emulator.trace import Trace
from tests.lifecycle.pair import AWS_IP, CGW_IP, Pair, check_trace, options

MARKER = b"\x00\x00\x00\x00"


class Recorder:
    """Wraps a peer on the network: every datagram it sends in one call must use an IKE SA it held before or
    after that call (a Delete goes out on the SA it deletes; a new SA's first message creates it)."""

    def __init__(self, peer: IkePeer, version: int, problems: list[str], name: str) -> None:
        self.peer = peer
        self.version = version
        self.problems = problems
        self.name = name

    def __getattr__(self, item: str) -> Any:
        return getattr(self.peer, item)

    def _check(self, acts: list[Action], before: set[bytes]) -> list[Action]:
        try:
            self.peer.verify_indexes()  # type: ignore[attr-defined]  # SA and SPI indexes agree with a scan
        except AssertionError as e:
            self.problems.append(f"{self.name}: index out of date: {e}")
        after = self.peer.ike_spis()
        for a in acts:
            if not isinstance(a, Transmit) or len(a.data) < 28:
                continue
            data = a.data[4:] if a.data[:4] == MARKER else a.data
            if len(data) < 28:
                continue
            encrypted = bool(data[19] & 1) if self.version == 1 else data[16] == 46
            if encrypted and data[:8] not in before and data[:8] not in after:
                self.problems.append(f"{self.name}: {a.kind} on an IKE SA it does not hold ({data[:8].hex()})")
        return acts

    def start(self, now: float) -> list[Action]:
        before = self.peer.ike_spis()
        return self._check(self.peer.start(now), before)

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        before = self.peer.ike_spis()
        return self._check(self.peer.receive_datagram(data, src, dst, now), before)

    def handle_timer(self, now: float) -> list[Action]:
        before = self.peer.ike_spis()
        return self._check(self.peer.handle_timer(now), before)

    def next_deadline(self) -> float | None:
        return self.peer.next_deadline()

    def close(self, now: float) -> list[Action]:
        before = self.peer.ike_spis()
        return self._check(self.peer.close(now), before)

    def initiate(self, now: float) -> list[Action]:
        before = self.peer.ike_spis()
        return self._check(self.peer.initiate(now), before)


class TunnelMachine(RuleBasedStateMachine):
    version = 1

    def __init__(self) -> None:
        super().__init__()
        self.p: Pair | None = None
        self.problems: list[str] = []
        self.now = 0.0
        self.alive = {"aws", "cgw"}

    @initialize(
        action=st.sampled_from(list(DpdTimeoutAction)),
        cgw_model=st.sampled_from(list(LivenessModel)),
        seed=st.integers(0, 1000),
    )
    def setup(self, action: DpdTimeoutAction, cgw_model: LivenessModel, seed: int) -> None:
        opts = options(self.version, dpd_timeout_action=action, dpd_timeout_seconds=30)
        cgw = PROFILES[str(cgw_model)] if str(cgw_model) in PROFILES else Behaviour()
        self.p = Pair(self.version, opts=opts, cgw_beh=cgw, seed=seed, wrap=self._record)
        self.p.net.start_all(at=0.0)

    def _record(self, peer: IkePeer, side: str) -> IkePeer:
        return Recorder(peer, self.version, self.problems, side)  # type: ignore[return-value]

    @property
    def pair(self) -> Pair:
        assert self.p is not None
        return self.p

    @rule(dt=st.floats(0.1, 90.0))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.pair.net.run_until(self.now)

    @rule(side=st.sampled_from(["aws", "cgw"]))
    def crash(self, side: str) -> None:
        self.pair.net.crash(side)
        self.alive.discard(side)

    @rule(side=st.sampled_from(["aws", "cgw"]), initiate=st.sampled_from([None, True, False]))
    def revive(self, side: str, initiate: bool | None) -> None:
        p = self.pair
        p.incarnation[side] += 1
        p.net.revive(side, p.make(side, initiate))
        self.alive.add(side)

    @rule(
        direction=st.sampled_from(["cgw->aws", "aws->cgw"]),
        loss=st.sampled_from([0.0, 0.3, 1.0]),
        dup=st.sampled_from([0.0, 0.2]),
        reorder=st.sampled_from([0.0, 0.3]),
    )
    def link(self, direction: str, loss: float, dup: float, reorder: float) -> None:
        src, dst = (CGW_IP, AWS_IP) if direction == "cgw->aws" else (AWS_IP, CGW_IP)
        self.pair.net.set_faults(src, dst, FaultPlan(loss=loss, duplicate=dup, reorder=reorder, reorder_delay=0.5))

    @rule()
    def heal(self) -> None:
        self.pair.net.set_faults(CGW_IP, AWS_IP, FaultPlan())
        self.pair.net.set_faults(AWS_IP, CGW_IP, FaultPlan())

    @rule(side=st.sampled_from(["aws", "cgw"]), what=st.sampled_from(["close", "initiate"]))
    def api(self, side: str, what: str) -> None:
        net = self.pair.net
        if side in self.alive:
            net.call(side, getattr(net.node(side), what), at=self.now)
            net.run_until(self.now)

    @invariant()
    def lifecycle_holds(self) -> None:
        if self.p is None:
            return
        assert not self.problems, self.problems[:5]
        nodes = {s: self.p.net.node(s) for s in ("aws", "cgw")}
        check_trace(self.p.trace, nodes)  # type: ignore[arg-type]
        _aws_model_never_early(self.p.trace, float(self.p.opts.dpd_timeout_seconds))


def _aws_model_never_early(trace: Trace, timeout: float) -> None:
    """The AWS endpoint (aws model) declares the peer dead exactly DPDTimeoutSeconds after the last authenticated
    inbound message, never earlier."""
    for r in trace.select("dpd_timeout", "aws"):
        assert r.t >= r.fields["last_inbound"] + timeout - 1e-9, (r.t, r.fields)


class TunnelMachineV2(TunnelMachine):
    version = 2


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestTunnelV1 = TunnelMachine.TestCase
TestTunnelV1.settings = SETTINGS
TestTunnelV2 = TunnelMachineV2.TestCase
TestTunnelV2.settings = SETTINGS
