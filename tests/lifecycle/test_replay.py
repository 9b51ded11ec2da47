"""Replayed packets are not trusted (issue 13), both IKE versions, virtual time.

A CGW is killed; an attacker replays its captured, authenticated liveness requests from another address every
2 s. The AWS side must still declare the peer dead on time (last fresh message + DPDTimeoutSeconds), must not
move its idea of the peer's address (NAT-T: only a fresh authenticated message may, RFC 3947 §5.2 / RFC 7296
§2.23), and must not answer the storm without limit."""

from __future__ import annotations

import pytest

from cgw_peer.config import Behaviour
from emulator.link import FaultPlan
from tests.lifecycle.pair import AWS_IP, CGW_IP, Pair

ATTACKER = ("192.0.2.66", 500)


def _capture(p: Pair, kinds: set[str]) -> list[tuple[float, bytes, tuple[str, int]]]:
    """Every CGW->AWS datagram of these kinds, with its source address (a spy on the link, dropping nothing)."""
    seen: list[tuple[float, bytes, tuple[str, int]]] = []

    def spy(data: bytes, kind: str, now: float) -> bool:
        if kind in kinds:
            seen.append((now, data, (CGW_IP, 4500 if data[:4] == b"\x00\x00\x00\x00" else 500)))
        return False

    p.net.set_faults(CGW_IP, AWS_IP, FaultPlan(drop_if=spy))
    return seen


def _replay_every(p: Pair, seen: list[tuple[float, bytes, tuple[str, int]]], start: float, until: float) -> None:
    """From ``start``, one captured datagram every 2 s (cycling through the capture), from the attacker's
    address (same port as the original, as a NAT would rewrite it)."""
    aws_addr = (AWS_IP, 500)

    def inject(i: int, now: float) -> list:  # type: ignore[type-arg]
        _, data, (_, port) = seen[i % len(seen)]
        dst = (AWS_IP, port)
        return p.node("aws").receive_datagram(data, (ATTACKER[0], port), dst if port != 500 else aws_addr, now)

    t, i = start, 0
    while t < until:
        p.net.call("aws", lambda now, i=i: inject(i, now), at=t)
        t += 2.0
        i += 1


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("natt", [False, True])
def test_replayed_liveness_requests_do_not_keep_a_dead_peer_alive(version: int, natt: bool) -> None:
    # The CGW probes AWS itself every 10 s (so there are liveness requests to capture); AWS's probes are answered.
    cgw = Behaviour(dpd_delay=5.0, dpd_interval=5.0, restart_backoff_jitter=0.0)
    p = Pair(version, cgw_beh=cgw, cgw_extra={"force_encap": natt})
    kind = "dpd_request" if version == 1 else "liveness_request"
    seen = _capture(p, {kind})
    p.crash("cgw", 42)
    # Replays from 43 to 200, every 2 s.
    p.net.at(43.0, lambda: _replay_every(p, seen, 43.0, 200.0))
    p.run(220)
    assert seen, "nothing captured"
    last_fresh = max(t for t, _, _ in seen)
    # The last fresh message from the CGW: its last liveness request or AWS's last answered probe, before 42.
    (to,) = p.sel("dpd_timeout")
    assert to.fields["last_inbound"] <= 42.0 and to.fields["last_inbound"] >= last_fresh - 1e-9
    assert to.t == pytest.approx(to.fields["last_inbound"] + 40.0)
    assert p.node("aws").status.status.value == "DOWN"
    # Never believed: every replay was dropped, or (IKEv2, the peer's very last request) answered within limits.
    drops = [r.fields["reason"] for r in p.sel("datagram_dropped") if r.t >= 43]
    assert drops and set(drops) <= {"replayed", "old_message_id", "resend_limited", "unknown_spi"}
    # AWS's own traffic never went to the attacker.
    assert not [r for r in p.sel("datagram_sent") if r.fields["dst"].startswith(ATTACKER[0])]
    cached = p.sel("response_retransmitted")
    assert len(cached) <= p.aws_cfg.behaviour.cached_answer_limit  # type: ignore[operator]
