"""Half-open floods (issue 13): the cost of one new IKE request with 0 and with 10,000 half-open SAs held.

The AWS endpoint of each version receives requests with fresh initiator SPIs (the first message of a fresh
initiator: IKEv1 MM1, IKEv2 IKE_SA_INIT), each of which creates a half-open SA. With the limits raised and
IKEv2 cookies off, nothing refuses them: what is measured is the engine's per-request work, which must not grow
with the number of SAs already held (before the fix every datagram scanned every SA: 0.34 -> 4.19 ms per IKEv1
request and 1.2 -> 7.1 ms per IKEv2 request at 8,000). Target: the rate with 10,000 held is at least 0.8 of the
rate with none held, both measured in this run, interleaved.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

from bench.common import Row
from cgw_peer.config import Behaviour, IkeVersion, PeerConfig, Role, TunnelOptions
from cgw_peer.peer import IkePeer, create_peer
from emulator.actions import Transmit

AWS = ("203.0.113.1", 500)
HELD = 10_000
ROUNDS = 5


def _opts(version: int) -> TunnelOptions:
    return TunnelOptions(
        ike_versions=(IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2,),
        phase1_encryption_algorithms=("AES128",),
        phase1_integrity_algorithms=("SHA2-256",),
        phase1_dh_group_numbers=(19,),
    )


def _aws(version: int) -> IkePeer:
    beh = Behaviour(half_open_limit=10 * HELD, half_open_limit_per_source=None, cookie_threshold=None)
    cfg = PeerConfig(
        role=Role.AWS,
        ike_version=IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2,
        options=_opts(version),
        behaviour=beh,
    )
    return create_peer(cfg, local=AWS, remote=("198.51.100.1", 500), rng=random.Random(1))


def _first(version: int) -> bytes:
    cfg = PeerConfig(
        role=Role.CGW, ike_version=IkeVersion.IKEV1 if version == 1 else IkeVersion.IKEV2, options=_opts(version)
    )
    peer = create_peer(cfg, local=("198.51.100.1", 500), remote=AWS, rng=random.Random(2))
    (tx,) = [a for a in peer.start(0.0) if isinstance(a, Transmit)]
    return tx.data


def _request_rate(version: int, held: int, n: int) -> float:
    """Requests/s (CPU time) for ``n`` new requests into an endpoint already holding ``held`` half-open SAs."""
    aws = _aws(version)
    base = _first(version)
    rng = random.Random(3)
    src = ("198.51.100.7", 500)
    for _ in range(held):
        aws.receive_datagram(rng.randbytes(8) + base[8:], src, AWS, 1.0)
    datagrams = [rng.randbytes(8) + base[8:] for _ in range(n)]
    recv: Callable[..., object] = aws.receive_datagram
    t0 = time.process_time()
    for d in datagrams:
        recv(d, src, AWS, 2.0)
    dt = time.process_time() - t0
    assert len(aws.ike_spis()) >= 2 * (held + n) - 2, "every request should have been kept"
    aws.verify_indexes()  # type: ignore[attr-defined]
    return n / dt


def run(quick: bool) -> list[Row]:
    load = os.getloadavg()[0]
    rows: list[Row] = []
    for version, n in ((1, 2000), (2, 300)):
        if quick:
            n //= 4
        empty: list[float] = []
        full: list[float] = []
        for _ in range(2 if quick else ROUNDS):  # interleaved rounds; the best of each
            empty.append(_request_rate(version, 0, n))
            full.append(_request_rate(version, HELD if not quick else HELD // 4, n))
        e, f = max(empty), max(full)
        ratio = f / e
        what = "MM1" if version == 1 else "IKE_SA_INIT (with DH)"
        rows.append(
            Row(
                f"IKEv{version} new {what} requests/s, 0 vs {HELD:,} half-open SAs held",
                f,
                "req/s",
                ">= 0.8x empty",
                ratio >= 0.8,
                f"{e:,.0f}/s with none held (ratio {ratio:.2f}); load average {load:.2f}",
            )
        )
    return rows
