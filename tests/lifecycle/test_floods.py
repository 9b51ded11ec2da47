"""Half-open floods (issue 13), both IKE versions: a cap per source and in total, IKEv2 cookies above a threshold,
per-datagram work independent of the number of SAs held, and the established tunnel stays up.

The engines are driven directly with crafted requests (the first message of a fresh initiator, with a new
initiator SPI each time: what a flood looks like on the wire). The real-UDP version is in
``tests/drivers/test_floods_udp.py``."""

from __future__ import annotations

import random

import pytest

from cgw_peer.config import Behaviour, Role
from cgw_peer.peer import create_peer
from emulator.actions import Transmit
from tests.lifecycle.pair import AWS_IP, Pair, options, peer_config


def first_message(version: int, seed: int = 7) -> bytes:
    """The first datagram of a fresh CGW initiator (MM1 / IKE_SA_INIT)."""
    cfg = peer_config(Role.CGW, version, options(version), Behaviour())
    peer = create_peer(cfg, local=("192.0.2.1", 500), remote=(AWS_IP, 500), rng=random.Random(seed))
    (tx,) = [a for a in peer.start(0.0) if isinstance(a, Transmit)]
    return tx.data


def flood(p: Pair, version: int, n: int, at: float, sources: int) -> None:
    """``n`` requests with distinct initiator SPIs from ``sources`` addresses, all at ``at``."""
    base = first_message(version)
    rng = random.Random(1)
    aws = p.node("aws")

    def go(now: float) -> list:  # type: ignore[type-arg]
        for i in range(n):
            data = rng.randbytes(8) + base[8:]
            src = (f"10.{(i % sources) // 250}.{(i % sources) % 250}.1", 500)
            aws.receive_datagram(data, src, (AWS_IP, 500), now)
        return []

    p.net.call("aws", go, at=at)


@pytest.mark.parametrize("version", [1, 2])
def test_flood_from_many_sources_is_capped_and_the_tunnel_stays_up(version: int) -> None:
    aws_beh = Behaviour(restart_backoff_jitter=0.0, half_open_limit=2000, half_open_limit_per_source=8)
    p = Pair(version, aws_beh=aws_beh)
    flood(p, version, 10_000, at=15.0, sources=1000)
    p.run(16.0)
    aws = p.node("aws")
    aws.verify_indexes()  # type: ignore[attr-defined]
    c = aws.counters
    if version == 1:
        # IKEv1 has no cookie exchange: the caps decide (1000 sources x 8 > 2000 in total).
        assert c["dropped:half_open_limit"] == 8000 and "dropped:half_open_limit_per_source" not in c
        assert len(aws.ike_spis()) == 2 + 2 * 2000  # the tunnel's ISAKMP SA + 2000 half-open ones
    else:
        # IKEv2: above cookie_threshold (10) every request must first return a cookie; a flood never does.
        assert c["cookie_sent"] == 10_000 - 10 and len(aws.ike_spis()) == 2 + 2 * 10
    p.run(200.0)
    # The tunnel never noticed: AWS's probes answered all along, nothing timed out, the half-open SAs expired.
    assert p.sel("dpd_timeout") == [] and p.node("aws").status.status.value == "UP"
    assert len(p.node("aws").ike_spis()) == 2
    assert p.times("dpd_ack_received")[-1] >= 190.0
    half_expired = c.get("ike:half_open_expired", 0) + c.get("half_open_expired", 0)
    assert half_expired == (2000 if version == 1 else 10)


@pytest.mark.parametrize("version", [1, 2])
def test_flood_from_one_source_hits_the_per_source_cap(version: int) -> None:
    aws_beh = Behaviour(restart_backoff_jitter=0.0, half_open_limit_per_source=64, cookie_threshold=None)
    p = Pair(version, aws_beh=aws_beh)
    flood(p, version, 500, at=15.0, sources=1)
    p.run(16.0)
    aws = p.node("aws")
    assert aws.counters["dropped:half_open_limit_per_source"] == 500 - 64
    assert len(aws.ike_spis()) == 2 + 2 * 64
    aws.verify_indexes()  # type: ignore[attr-defined]
    # The real CGW (another source) is not affected: its next probes are answered.
    p.run(60.0)
    assert p.sel("dpd_timeout") == [] and aws.status.status.value == "UP"


def test_cookie_threshold_none_and_always() -> None:
    """``ikev2_require_cookie`` demands a cookie from the first request; ``cookie_threshold=None`` never by
    itself. A real initiator returns the cookie and the tunnel comes up either way (RFC 7296 §2.6)."""
    for beh in (Behaviour(ikev2_require_cookie=True), Behaviour(cookie_threshold=None)):
        p = Pair(2, aws_beh=beh)
        p.run(5.0)
        assert p.node("aws").status.status.value == "UP"
        got = p.sel("cookie_received", "cgw")
        assert len(got) == (1 if beh.ikev2_require_cookie else 0)
