"""Issue 13 on real UDP (loopback): replayed liveness messages from another address, a replay under NAT-T, and a
half-open flood of 10,000 requests, each against a real AWS endpoint and CGW run by the asyncio driver.

Bounds come from the protocol: the AWS side declares a silent peer dead DPDTimeoutSeconds (30, AWS's minimum)
after the last fresh authenticated message, give or take the driver's timer slack; the flood must not cost the
established tunnel a single DPD timeout within that timeout."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest

from cgw_peer.config import Behaviour, IkeVersion, PeerConfig, Role, TrafficSelector, TunnelOptions
from cgw_peer.peer import IkePeer, create_peer
from emulator.actions import Address, Event, Transmit
from emulator.drivers.asyncio_udp import PeerHandle, UdpDriver

PSK = b"udp.hardening.psk"
TIMEOUT = 30.0  # DPDTimeoutSeconds (AWS's minimum)
SLACK = 0.05  # the driver's default timer slack


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _cfg(role: Role, version: int, beh: Behaviour, **kw: Any) -> PeerConfig:
    opts = TunnelOptions(
        ike_versions=(IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2,),
        phase1_encryption_algorithms=("AES128",),
        phase1_integrity_algorithms=("SHA2-256",),
        phase1_dh_group_numbers=(19,),
        phase2_dh_group_numbers=(19,),
        dpd_timeout_seconds=int(TIMEOUT),
    )
    ts = (TrafficSelector("10.0.0.0/16"), TrafficSelector("192.168.0.0/24"))
    lts, rts = ts if role is Role.AWS else ts[::-1]
    return PeerConfig(
        role=role,
        ike_version=IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2,
        options=opts,
        behaviour=beh,
        psk=PSK,
        local_ts=lts,
        remote_ts=rts,
        **kw,
    )


class Run:
    """An AWS endpoint (127.0.0.1) and a CGW (127.0.0.<n>) on one driver, with every event and datagram kept."""

    def __init__(self, version: int, cgw_ip: str, *, force_encap: bool = False) -> None:
        self.version = version
        self.events: list[tuple[str, float, Event]] = []
        self.out: list[tuple[float, Address, Address, bytes]] = []
        self.aws_addr = ("127.0.0.1", free_port("127.0.0.1"))
        self.cgw_addr = (cgw_ip, free_port(cgw_ip))
        self.d = UdpDriver(on_event=self._ev, on_datagram=self._dg)
        aws_beh = Behaviour(dpd_delay=1.0, dpd_interval=1.0)
        cgw_beh = Behaviour(dpd_delay=0.5, dpd_interval=0.5, dpd_timeout=TIMEOUT)
        self.aws: IkePeer = create_peer(
            _cfg(Role.AWS, version, aws_beh), local=self.aws_addr, remote=self.cgw_addr, rng=random.Random(1)
        )
        self.cgw: IkePeer = create_peer(
            _cfg(Role.CGW, version, cgw_beh, force_encap=force_encap),
            local=self.cgw_addr,
            remote=self.aws_addr,
            rng=random.Random(2),
        )
        self.h_aws = self.d.add_peer(self.aws, name="aws", local=self.aws_addr, remote=self.cgw_addr, natt=False)
        self.h_cgw: PeerHandle | None = self.d.add_peer(
            self.cgw, name="cgw", local=self.cgw_addr, remote=self.aws_addr, natt=False
        )

    def _ev(self, h: PeerHandle | None, t: float, ev: Event) -> None:
        self.events.append((h.name if h else "-", t, ev))

    def _dg(self, t: float, direction: str, src: Address, dst: Address, data: bytes) -> None:
        if direction == "out":
            self.out.append((t, src, dst, data))

    def sel(self, name: str, node: str = "aws") -> list[tuple[float, Event]]:
        return [(t, e) for n, t, e in self.events if n == node and e.name == name]

    async def up(self) -> None:
        self.d.start_peer(self.h_aws)
        assert self.h_cgw is not None
        self.d.start_peer(self.h_cgw)
        await until(lambda: self.sel("tunnel_up") and self.sel("tunnel_up", "cgw"), 10.0, "tunnel up")

    def kill_cgw(self) -> float:
        """The CGW process dies (its datagrams stop, AWS's go nowhere). Returns the driver time."""
        assert self.h_cgw is not None
        self.d.remove_peer(self.h_cgw)
        self.h_cgw = None
        return self.d.now()


async def until(cond: Any, timeout: float, what: str) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def replay_scenario(version: int, cgw_ip: str, force_encap: bool) -> None:
    r = Run(version, cgw_ip, force_encap=force_encap)
    await r.up()
    await asyncio.sleep(2.0)  # a few liveness exchanges to capture
    captured = [data for _t, src, _dst, data in r.out if src == r.cgw_addr and len(data) > 40]
    assert captured, "nothing to replay"
    killed = r.kill_cgw()
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.66", 0))
    attacker.setblocking(False)
    try:
        # Replay every captured datagram over and over, one every 0.2 s, until AWS gives up on the peer.
        i = 0
        end = asyncio.get_running_loop().time() + TIMEOUT + 8.0
        while not r.sel("dpd_timeout") and asyncio.get_running_loop().time() < end:
            attacker.sendto(captured[i % len(captured)], r.aws_addr)
            i += 1
            await asyncio.sleep(0.2)
    finally:
        attacker.close()
    ((t_dead, ev),) = r.sel("dpd_timeout")
    last = ev.fields["last_inbound"]
    # Declared dead on time: the last fresh message came before the kill, and the verdict DPDTimeoutSeconds later
    # (the driver rounds timer wake-ups up by at most its slack), however many replays arrived meanwhile.
    assert last <= killed + 1e-6
    assert last + TIMEOUT - 1e-6 <= t_dead <= last + TIMEOUT + SLACK + 0.5
    # Every replay was dropped with a typed reason or (IKEv2, the last request) answered from the cache within
    # limits; none was believed: no fresh receipt after the kill.
    assert any(t > killed for t, _e in r.sel("datagram_dropped"))
    believed = ("dpd_request_received", "dpd_ack_received", "delete_received", "ike_sa_established")
    assert not [e.name for n, t, e in r.events if n == "aws" and t > killed and e.name in believed]
    per_request: dict[tuple[object, object], int] = {}
    for _t, e in r.sel("response_retransmitted"):
        key = (e.fields["kind"], e.fields["message_id"])
        per_request[key] = per_request.get(key, 0) + 1
    assert all(n <= (r.aws.config.behaviour.cached_answer_limit or 0) for n in per_request.values()), per_request
    # Neither a replay nor a NAT-T replay moved AWS's idea of the peer: nothing on the established IKE SA went to
    # the attacker (a replayed first message may get a fresh answer of its own, with a new responder SPI).
    (_t0, est), *_ = r.sel("ike_sa_established")
    spi_r = bytes.fromhex(est.fields["spi_r"])
    to_attacker = [d for _t, _src, dst, d in r.out if dst[0] == "127.0.0.66"]
    assert not [d for d in to_attacker if spi_r in d[:24]]
    await r.d.aclose()


@pytest.mark.asyncio
async def test_replayed_liveness_messages_from_another_address() -> None:
    """A killed CGW whose captured liveness messages are replayed from another address is declared dead on time,
    in both IKE versions, with and without NAT-T (forced UDP encapsulation); the replay never moves AWS's idea
    of the peer's address. The four runs share one event loop (one timeout's worth of wall time)."""
    await asyncio.gather(
        replay_scenario(1, "127.0.0.2", False),
        replay_scenario(2, "127.0.0.3", False),
        replay_scenario(1, "127.0.0.4", True),
        replay_scenario(2, "127.0.0.5", True),
    )


def _first_message(version: int) -> bytes:
    cfg = _cfg(Role.CGW, version, Behaviour())
    peer = create_peer(cfg, local=("127.0.0.9", 40000), remote=("127.0.0.1", 40001), rng=random.Random(9))
    (tx,) = [a for a in peer.start(0.0) if isinstance(a, Transmit)]
    return tx.data


async def flood_scenario(version: int, cgw_ip: str) -> None:
    r = Run(version, cgw_ip)
    await r.up()
    base = _first_message(version)
    rng = random.Random(5)
    # From the CGW's own address (an attacker behind the same NAT, or spoofing it: the driver delivers only what
    # comes from the tunnel's peer address to the engine), 100 source ports, 10,000 requests with fresh SPIs.
    socks = []
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((cgw_ip, 0))
        s.setblocking(False)
        socks.append(s)
    try:
        t_flood = r.d.now()
        sent = 0
        for i in range(10_000):
            # Keep the non-ESP marker of a non-500 port (the template has it) and change the initiator SPI.
            data = base[:4] + rng.randbytes(8) + base[12:]
            while True:
                try:
                    socks[i % 100].sendto(data, r.aws_addr)
                    sent += 1
                    break
                except BlockingIOError:  # our send buffer is full: let the loop drain the receiver first
                    await asyncio.sleep(0.005)
            if i % 500 == 499:
                await asyncio.sleep(0.01)  # let the loop read: the socket buffer is finite
        # The established tunnel lives through it: keep going for 5 s of liveness after the flood.
        await asyncio.sleep(5.0)
    finally:
        for s in socks:
            s.close()
    assert sent == 10_000
    c = r.aws.counters
    refused = c.get("dropped:half_open_limit_per_source", 0) + c.get("cookie_sent", 0)
    assert refused >= 9_000, c
    assert not r.sel("dpd_timeout") and not r.sel("dpd_timeout", "cgw")
    assert r.aws.status.status.value == r.cgw.status.status.value == "UP"
    # Memory bounded by the caps: at most the per-source limit (or the cookie threshold) of half-open SAs.
    beh = r.aws.config.behaviour
    assert len(r.aws.ike_spis()) <= 2 + 2 * max(beh.half_open_limit_per_source or 0, beh.cookie_threshold or 0)
    r.aws.verify_indexes()  # type: ignore[attr-defined]
    # AWS kept answering the real CGW all through: liveness exchanges after the flood started.
    answered = [t for t, _e in r.sel("dpd_ack_received", "cgw") if t > t_flood]
    assert len(answered) >= 4
    await r.d.aclose()


@pytest.mark.asyncio
async def test_half_open_flood_of_10000_requests_leaves_the_tunnel_up() -> None:
    await asyncio.gather(flood_scenario(1, "127.0.0.6"), flood_scenario(2, "127.0.0.7"))
