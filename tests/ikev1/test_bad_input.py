"""Bad input never crashes a peer: arbitrary and mutated datagrams are counted and dropped with a typed reason,
and the established tunnel stays up."""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgw_peer.config import Behaviour
from cgw_peer.ikev1.peer import IkeV1Peer
from cgw_peer.lifecycle.status import Status
from emulator.actions import Event
from tests.ikev1.helpers import AWS_ADDR, CGW_ADDR, cgw_config, make_net

NATT_SRC = (CGW_ADDR[0], 4500)
NATT_DST = (AWS_ADDR[0], 4500)


@cache
def established() -> tuple[IkeV1Peer, list[bytes]]:
    """An established AWS peer and every datagram the CGW sent it (the seed corpus for mutations)."""
    net, aws, _cgw = make_net(cgw_cfg=cgw_config(behaviour=Behaviour(dpd_delay=0.5, dpd_interval=0.5)))
    corpus: list[bytes] = []

    def spy(data: bytes, kind: str, now: float) -> bool:
        corpus.append(data)
        return False

    from emulator.link import FaultPlan

    net.set_faults(CGW_ADDR[0], AWS_ADDR[0], FaultPlan(drop_if=spy))
    net.start_all()
    net.run_until(1)
    # The CGW probes after 0.5 s of silence, so the corpus also has an encrypted Informational (an R-U-THERE).
    assert any(r.fields["kind"] == "dpd_request" for r in net.trace.select("datagram_sent", "cgw"))
    assert aws.status.status is Status.UP
    return aws, corpus


def check(aws: IkeV1Peer, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
    before_children = list(aws.children)
    actions = aws.receive_datagram(data, src, dst, 5.0)
    for a in actions:
        if isinstance(a, Event) and a.name == "datagram_dropped":
            assert isinstance(a.fields["reason"], str) and a.fields["reason"]
            assert not a.fields["reason"].startswith("internal_error"), a.fields
    assert aws.status.status is Status.UP
    assert all(c in aws.children for c in before_children)
    assert not any(k.startswith("dropped:internal_error") for k in aws.counters)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_datagrams(data: bytes) -> None:
    aws, _ = established()
    check(aws, data, CGW_ADDR, AWS_ADDR)
    check(aws, data, NATT_SRC, NATT_DST)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_mutated_datagrams(data: st.DataObject) -> None:
    aws, corpus = established()
    msg = bytearray(data.draw(st.sampled_from(corpus)))
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice_len", "splice_np"]))
    if op == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(msg) - 1))
            msg[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        msg = msg[: data.draw(st.integers(0, len(msg) - 1))]
    elif op == "extend":
        msg += data.draw(st.binary(min_size=1, max_size=40))
    elif op == "splice_len":
        # Lie in the header length or a payload length.
        i = data.draw(st.sampled_from([24, 25, 26, 27, 30, 31]))
        if i < len(msg):
            msg[i] = data.draw(st.integers(0, 255))
    else:
        msg[16] = data.draw(st.integers(0, 255))  # next payload
    check(aws, bytes(msg), CGW_ADDR, AWS_ADDR)


def test_every_drop_has_a_counter_and_event() -> None:
    aws, corpus = established()
    before = sum(v for k, v in aws.counters.items() if k.startswith("dropped:"))
    acts = aws.receive_datagram(b"\x00" * 10, CGW_ADDR, AWS_ADDR, 6.0)
    assert [a.fields["reason"] for a in acts if isinstance(a, Event)] == ["truncated_header"]
    acts = aws.receive_datagram(corpus[-1][:-1], CGW_ADDR, AWS_ADDR, 6.0)
    assert [a.fields["reason"] for a in acts if isinstance(a, Event)] == ["length_mismatch"]
    tampered = bytearray(corpus[-1])
    tampered[-20] ^= 1  # inside the ciphertext: HASH(1) no longer verifies
    acts = aws.receive_datagram(bytes(tampered), CGW_ADDR, AWS_ADDR, 6.0)
    assert [a.fields["reason"] for a in acts if isinstance(a, Event)] in (["bad_hash"], ["bad_payload_length"])
    after = sum(v for k, v in aws.counters.items() if k.startswith("dropped:"))
    assert after == before + 3
