"""Load: many IKEv1 tunnel pairs on real loopback UDP in one process, then DPD for a while.

Issue target: 10,000 pairs established, DPD every 10 s for 60 s, CPU <= 20 % of one core during the DPD
phase, RSS <= 1.5 GiB, zero spurious DPD timeouts. ``quick`` runs 200 pairs with 2 s DPD for 6 s.

Layout: AWS endpoints on 127.10.x.y, customer gateways on 127.20.x.y, ``ceil(sqrt(N))`` addresses each, so
every tunnel has its own (AWS address, CGW address) pair while sockets stay few (two per address: 500 and
4500); everything runs on one :class:`~emulator.drivers.asyncio_udp.UdpDriver` with its default settings
(``timer_slack`` 0.05 s, ``local_fastpath`` on: both ends live in this process, so a request is read by the
other end as soon as it is sent). Set-up keeps at most ``WINDOW`` negotiations in flight so the retransmission
timers measure the engine, not a self-made flood.

Baseline (same run, same driver, same sockets): the same number of pairs of a trivial keep-alive node (no
crypto, no IKE) exchanging one request/answer per pair per DPD interval. The ratio row shows what the IKE
engine costs on top of the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.common import Row, rss_bytes
from emulator.actions import Action, Address, Event, Transmit
from emulator.drivers.asyncio_udp import PeerHandle, UdpDriver

WINDOW = 400
"""Negotiations in flight during set-up."""
START_BURST = 20
"""Initiations per turn of the set-up loop before it yields to the event loop: a handshake between two peers
of one driver can complete inside the initiating call (the driver reads its own sockets right away), and a
loop that never yields would hold every timer back for the whole set-up."""
PROPOSAL = "aes128-sha1-modp2048"
ESP_PROPOSAL = "aes128-sha1"


@dataclass
class Params:
    pairs: int
    dpd: float
    """DPD delay and interval (seconds) on both sides."""
    phase: float
    """Length of the DPD phase (seconds of real time)."""
    baseline_phase: float


FULL = Params(pairs=10_000, dpd=10.0, phase=60.0, baseline_phase=20.0)
QUICK = Params(pairs=200, dpd=2.0, phase=6.0, baseline_phase=4.0)


def addresses(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (aws_ip, cgw_ip) pairs on ``ceil(sqrt(n))`` addresses per side."""
    k = max(1, math.isqrt(n - 1) + 1) if n > 1 else 1
    out = []
    for i in range(n):
        a, c = divmod(i, k)
        out.append((f"127.10.{a >> 8}.{(a & 0xFF) + 1}", f"127.20.{c >> 8}.{(c & 0xFF) + 1}"))
    return out


@dataclass
class LoadResult:
    established: int = 0
    setup_seconds: float = 0.0
    cpu_share: float = 0.0
    rss: int = 0
    events: Counter[str] = field(default_factory=Counter)
    phase_events: Counter[str] = field(default_factory=Counter)
    driver_stats: dict[str, int] = field(default_factory=dict)


PeerFactory = Callable[[str, Address, Address, int], Any]
"""``(role, local, remote, index) -> sans-I/O peer``."""


async def load(n: int, phase: float, factory: PeerFactory, up_event: str = "tunnel_up") -> LoadResult:
    """Establish ``n`` pairs (AWS side waits, CGW side initiates), then measure ``phase`` seconds."""
    res = LoadResult()
    up: set[str] = set()
    in_phase = False
    wake = asyncio.Event()

    def on_event(h: PeerHandle | None, t: float, ev: Event) -> None:
        res.events[ev.name] += 1
        if in_phase:
            res.phase_events[ev.name] += 1
        if ev.name == up_event and h is not None:
            up.add(h.name)  # both ends of a pair must report up (the responder finishes Quick Mode last)
            wake.set()

    driver = UdpDriver(on_event=on_event)
    cgws: list[PeerHandle] = []
    for i, (aws_ip, cgw_ip) in enumerate(addresses(n)):
        aws_addr, cgw_addr = (aws_ip, 500), (cgw_ip, 500)
        driver.add_peer(factory("aws", aws_addr, cgw_addr, i), name=f"aws{i}", local=aws_addr, remote=cgw_addr)
        cgws.append(
            driver.add_peer(factory("cgw", cgw_addr, aws_addr, i), name=f"cgw{i}", local=cgw_addr, remote=aws_addr)
        )
    for h in driver.peers:
        if h.name.startswith("aws"):
            driver.start_peer(h)
    # Everything created during set-up lives for the whole run: no cyclic GC passes over the growing heap
    # while it is built, then freeze it so later collections skip it (as a long-running server would).
    gc.collect()
    gc.disable()
    t0 = time.perf_counter()
    started = 0
    deadline = t0 + max(60.0, n / 50)
    while len(up) < 2 * n and time.perf_counter() < deadline:
        wake.clear()
        burst = 0
        while started < n and started - len(up) // 2 < WINDOW and burst < START_BURST:
            driver.start_peer(cgws[started])
            started += 1
            burst += 1
        if len(up) >= 2 * n:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 1.0)
    res.setup_seconds = time.perf_counter() - t0
    res.established = sum(1 for i in range(n) if f"aws{i}" in up and f"cgw{i}" in up)
    gc.collect()
    gc.freeze()
    gc.enable()
    in_phase = True
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(phase)
    res.cpu_share = (time.process_time() - c0) / (time.perf_counter() - w0)
    in_phase = False  # close() below takes every tunnel down on purpose
    res.rss = rss_bytes()
    res.driver_stats = dict(driver.stats)
    await driver.aclose()
    gc.unfreeze()
    return res


class KeepAliveNode:
    """Baseline: one 64-byte request every ``interval`` while idle, answered by the other side."""

    __slots__ = ("interval", "last_in", "local", "next_at", "remote", "spi")

    def __init__(self, local: Address, remote: Address, spi: bytes, interval: float) -> None:
        self.local, self.remote, self.spi, self.interval = local, remote, spi, interval
        self.last_in = 0.0
        self.next_at: float | None = None

    def start(self, now: float) -> list[Action]:
        self.last_in = now
        self.next_at = now + self.interval
        return [Event("tunnel_up")]

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        self.last_in = now
        self.next_at = now + self.interval
        if data[16:17] == b"Q":
            return [Transmit(data[:16] + b"A" + data[17:], dst, src, "ack")]
        return []

    def next_deadline(self) -> float | None:
        return self.next_at

    def handle_timer(self, now: float) -> list[Action]:
        if self.next_at is None or now < self.next_at:
            return []
        self.next_at = now + self.interval
        return [Transmit(self.spi + bytes(8) + b"Q" + bytes(47), self.local, self.remote, "req")]

    def ike_spis(self) -> set[bytes]:
        return {self.spi}


def baseline_factory(interval: float) -> PeerFactory:
    def make(role: str, local: Address, remote: Address, i: int) -> KeepAliveNode:
        # both sides share the initiator-style SPI, as an IKE SA's two ends share the cookies
        return KeepAliveNode(local, remote, struct.pack("!4sI", b"bsln", i), interval)

    return make


def ike_factory(dpd: float) -> PeerFactory:
    from cgw_peer.config import PROFILES, IkeVersion, PeerConfig, Role, TrafficSelector
    from cgw_peer.peer import create_peer

    def make(role: str, local: Address, remote: Address, i: int) -> Any:
        r = Role.AWS if role == "aws" else Role.CGW
        beh = replace(PROFILES["aws" if role == "aws" else "strongswan"], dpd_delay=dpd, dpd_interval=dpd)
        cfg = PeerConfig(
            role=r,
            ike_version=IkeVersion.IKEV1,
            behaviour=beh,
            psk=b"bench.psk.0123456789",
            proposals=(PROPOSAL,),
            esp_proposals=(ESP_PROPOSAL,),
            local_ts=TrafficSelector(f"10.{i >> 8 & 0xFF}.{i & 0xFF}.0/24" if role == "cgw" else "0.0.0.0/0"),
            remote_ts=TrafficSelector("0.0.0.0/0" if role == "cgw" else f"10.{i >> 8 & 0xFF}.{i & 0xFF}.0/24"),
            name=f"{role}{i}",
        )
        return create_peer(cfg, local=local, remote=remote, rng=random.Random(f"{role}:{i}"))

    return make


def run(quick: bool) -> list[Row]:
    p = QUICK if quick else FULL
    if os.geteuid() != 0:
        return [Row("load: skipped (binding UDP 500 needs root)", 0, "", ok=False)]
    base = asyncio.run(load(p.pairs, p.baseline_phase, baseline_factory(p.dpd)))
    gc.collect()
    res = asyncio.run(load(p.pairs, p.phase, ike_factory(p.dpd)))
    spurious = res.phase_events["dpd_timeout"] + res.phase_events["tunnel_down"]
    probes = res.phase_events["dpd_request_sent"]
    acks = res.phase_events["dpd_ack_received"]
    share = res.cpu_share * 100
    base_share = max(base.cpu_share * 100, 1e-6)
    ticks = p.phase / p.dpd
    return [
        Row(f"load: pairs established (of {p.pairs})", res.established, "pairs", f"= {p.pairs}",
            res.established == p.pairs),
        Row("load: setup rate", res.established / max(res.setup_seconds, 1e-9), "pairs/s",
            note=f"{res.setup_seconds:.1f} s; MM+QM over loopback UDP, {PROPOSAL} / ESP {ESP_PROPOSAL}"),
        Row(f"load: CPU during DPD phase ({p.phase:.0f} s, DPD every {p.dpd:.0f} s)", share, "% of 1 core",
            "<= 20", share <= 20.0, note=f"{probes} R-U-THERE sent ({probes / (p.pairs * ticks):.2f} per pair per "
                 f"interval), {acks} ACKs received"),
        Row("load: baseline CPU (keep-alive nodes, no IKE)", base_share, "% of 1 core",
            note=f"same driver, {p.pairs} pairs, {p.baseline_phase:.0f} s"),
        Row("load: CPU ratio IKE / baseline", share / base_share, "x"),
        Row("load: RSS", res.rss / 2**20, "MiB", "<= 1536", res.rss <= 1.5 * 2**30),
        Row("load: spurious DPD timeouts / tunnel downs", spurious, "events", "= 0", spurious == 0,
            note=f"driver: {res.driver_stats.get('unmatched', 0)} unmatched, "
                 f"{res.driver_stats.get('send_errors', 0)} send errors, "
                 f"{res.driver_stats.get('peer_errors', 0)} engine errors"),
    ]  # fmt: skip
