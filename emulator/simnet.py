"""A simulated network in virtual time: sans-I/O nodes wired by seeded, fault-injecting links.

Nodes own IP addresses; a :class:`~emulator.actions.Transmit` goes to the node that owns its destination IP,
through the :class:`~emulator.link.Link` for that (source IP, destination IP) direction. Every node's
``next_deadline()`` is kept armed on the :class:`~emulator.scheduler.Scheduler`. Events become
:class:`~emulator.trace.TraceRecord` s; datagrams can be captured to a pcap at send time.

Typical use (tests and scenario files)::

    net = SimNetwork(seed=1)
    net.add_node("aws", aws_peer, ["203.0.113.1"])
    net.add_node("cgw", cgw_peer, ["198.51.100.1"])
    net.set_faults("198.51.100.1", "203.0.113.1", FaultPlan(blackholes=((100, 200),)))
    net.start_all()
    net.run_until(300)
    net.trace.select("dpd_timeout")

``strict_events=True`` checks every recorded event against its declaration in :mod:`cgw_peer.events` (name,
fields, types) and raises ``AssertionError`` listing the problems: the engines' own events and the network's
``datagram_sent`` / ``node_crashed`` / ``node_revived``. ``trace`` may be any :class:`~emulator.trace.BaseTrace`,
e.g. a :class:`~emulator.trace.StreamingTrace` that keeps a long run's records on disk.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from cgw_peer import events as ev
from emulator.actions import Action, Address, Event, Transmit
from emulator.link import PERFECT, FaultPlan, Link
from emulator.node import SansIoNode
from emulator.pcap import PcapWriter
from emulator.scheduler import Scheduler, TimerHandle
from emulator.trace import BaseTrace, Trace, TraceRecord

EventHook = Callable[[TraceRecord], None]


class _NodeSlot:
    __slots__ = ("addresses", "alive", "name", "node", "timer", "timer_at")

    def __init__(self, name: str, node: SansIoNode, addresses: list[str]) -> None:
        self.name = name
        self.node = node
        self.addresses = addresses
        self.timer: TimerHandle | None = None
        self.timer_at: float | None = None
        self.alive = True


class SimNetwork:
    """Wires sans-I/O nodes together on a virtual-time scheduler."""

    def __init__(
        self,
        seed: int = 0,
        *,
        scheduler: Scheduler | None = None,
        trace: BaseTrace | None = None,
        pcap: PcapWriter | None = None,
        trace_datagrams: bool = True,
        strict_events: bool = False,
    ) -> None:
        self.seed = seed
        self.scheduler = scheduler or Scheduler()
        self.trace: BaseTrace = trace if trace is not None else Trace()
        self.pcap = pcap
        self.trace_datagrams = trace_datagrams
        self.strict_events = strict_events
        """Check every recorded event against :mod:`cgw_peer.events`; a mismatch raises ``AssertionError``."""
        self._nodes: dict[str, _NodeSlot] = {}
        self._by_ip: dict[str, _NodeSlot] = {}
        self._links: dict[tuple[str, str], Link] = {}
        self._plans: dict[tuple[str, str], FaultPlan] = {}
        self._hooks: list[EventHook] = []
        self.datagrams_sent = 0
        self.datagrams_delivered = 0
        self.datagrams_lost = 0

    # -- topology ---------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.scheduler.now

    def add_node(self, name: str, node: SansIoNode, addresses: list[str]) -> None:
        if name in self._nodes:
            raise ValueError(f"node {name!r} already exists")
        slot = _NodeSlot(name, node, list(addresses))
        self._nodes[name] = slot
        for ip in addresses:
            if ip in self._by_ip:
                raise ValueError(f"address {ip} already belongs to node {self._by_ip[ip].name!r}")
            self._by_ip[ip] = slot

    def node(self, name: str) -> SansIoNode:
        return self._nodes[name].node

    def set_faults(self, src_ip: str, dst_ip: str, plan: FaultPlan) -> None:
        """Set the fault plan for one direction (``src_ip`` -> ``dst_ip``)."""
        self._plans[(src_ip, dst_ip)] = plan
        link = self._links.get((src_ip, dst_ip))
        if link is not None:
            link.plan = plan

    def link(self, src_ip: str, dst_ip: str) -> Link:
        key = (src_ip, dst_ip)
        link = self._links.get(key)
        if link is None:
            # String seeds are hashed with SHA-512 by random.Random: stable across runs and Python builds.
            rng = random.Random(f"{self.seed}:{src_ip}->{dst_ip}")
            link = Link(self._plans.get(key, PERFECT), rng)
            self._links[key] = link
        return link

    def on_event(self, hook: EventHook) -> None:
        """Call ``hook`` for every event any node reports (e.g. to withdraw TGW routes on ``tunnel_down``)."""
        self._hooks.append(hook)

    # -- driving ----------------------------------------------------------------------------------------

    def call(self, name: str, fn: Callable[[float], list[Action]], at: float | None = None) -> None:
        """Run ``fn(now)`` against node ``name`` (now, or at virtual time ``at``) and carry out its actions."""

        def run() -> None:
            slot = self._nodes[name]
            if not slot.alive:
                return
            self._dispatch(slot, fn(self.scheduler.now))

        if at is None:
            run()
        else:
            self.scheduler.call_at(at, run)

    def start_all(self, at: float | None = None) -> None:
        for name, slot in self._nodes.items():
            self.call(name, slot.node.start, at)

    def at(self, t: float, fn: Callable[[], Any]) -> None:
        """Schedule an arbitrary callback (a fault switch, a crash...) at virtual time ``t``."""
        self.scheduler.call_at(t, fn)

    def crash(self, name: str) -> None:
        """The node stops: its timers stop and datagrams to it are lost (a ``kill -9``)."""
        slot = self._nodes[name]
        slot.alive = False
        if slot.timer is not None:
            slot.timer.cancel()
        slot.timer = None
        slot.timer_at = None
        self._record(name, ev.node_crashed())

    def revive(self, name: str, node: SansIoNode | None = None, start: bool = True) -> None:
        """Bring a crashed node back, optionally as a fresh process (``node``), and start it."""
        slot = self._nodes[name]
        if node is not None:
            slot.node = node
        slot.alive = True
        self._record(name, ev.node_revived())
        if start:
            self.call(name, slot.node.start)
        else:
            self._rearm(slot)

    def run_until(self, t: float, max_events: int | None = 10_000_000) -> None:
        self.scheduler.run_until(t, max_events)

    # -- internals --------------------------------------------------------------------------------------

    def _dispatch(self, slot: _NodeSlot, actions: list[Action]) -> None:
        now = self.scheduler.now
        for a in actions:
            if isinstance(a, Transmit):
                self._send(slot, a, now)
            elif isinstance(a, Event):
                rec = self._record(slot.name, a)
                for hook in self._hooks:
                    hook(rec)
        self._rearm(slot)

    def _record(self, node: str, event: Event) -> TraceRecord:
        if self.strict_events:
            problems = ev.check_event(event.name, event.fields)
            if problems:
                raise AssertionError(
                    f"t={self.now:.6f} node {node}: event does not match cgw_peer.events: " + "; ".join(problems)
                )
        return self.trace.add(self.now, node, event.name, dict(event.fields))

    def _send(self, slot: _NodeSlot, tx: Transmit, now: float) -> None:
        self.datagrams_sent += 1
        if self.pcap is not None:
            self.pcap.write_udp(now, tx.src, tx.dst, tx.data)
        dst_slot = self._by_ip.get(tx.dst[0])
        arrivals = self.link(tx.src[0], tx.dst[0]).transmit(tx.data, tx.kind, now)
        if self.trace_datagrams:
            self._record(
                slot.name,
                ev.datagram_sent(
                    kind=tx.kind,
                    src=f"{tx.src[0]}:{tx.src[1]}",
                    dst=f"{tx.dst[0]}:{tx.dst[1]}",
                    len=len(tx.data),
                    lost=not arrivals,
                ),
            )
        if not arrivals or dst_slot is None:
            self.datagrams_lost += 1
            return
        for at in arrivals:
            self.scheduler.call_at(at, self._deliver, dst_slot, tx.data, tx.src, tx.dst)

    def _deliver(self, slot: _NodeSlot, data: bytes, src: Address, dst: Address) -> None:
        if not slot.alive:
            self.datagrams_lost += 1
            return
        self.datagrams_delivered += 1
        self._dispatch(slot, slot.node.receive_datagram(data, src, dst, self.scheduler.now))

    def _rearm(self, slot: _NodeSlot) -> None:
        if not slot.alive:
            return
        at = slot.node.next_deadline()
        if at == slot.timer_at and slot.timer is not None and not slot.timer.cancelled:
            return
        if slot.timer is not None:
            slot.timer.cancel()
        slot.timer_at = at
        slot.timer = None if at is None else self.scheduler.call_at(at, self._fire, slot)

    def _fire(self, slot: _NodeSlot) -> None:
        slot.timer = None
        slot.timer_at = None
        if not slot.alive:
            return
        self._dispatch(slot, slot.node.handle_timer(self.scheduler.now))
