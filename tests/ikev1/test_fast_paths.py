"""The IKEv1 speed paths agree with the plain codec and selection functions they stand in for.

* ``check_body`` raises exactly what ``parse_payload`` raises (same reason) and accepts what it accepts;
* ``encode_raw_chain`` gives the bytes of ``encode_chain``;
* ``P1Policy`` / ``P2Policy`` (memoised per configuration) return what ``select_p1`` / ``select_p2`` /
  ``p2_from_transform`` and a fresh ``encode_sa_body`` return, on the first call and on every memoised call after
  it, also when only the SPI changes between Quick Mode SA payloads;
* a tunnel set-up plus DPD exchanges give byte-identical datagrams and events for a fixed seed with the DPD
  receive fast path on and off (the generic Informational path is the oracle).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgw_peer.config import PeerConfig, Role, TunnelOptions
from cgw_peer.errors import DecodeError
from cgw_peer.ikev1 import proposals as pr
from cgw_peer.wire.constants import ProtocolId
from cgw_peer.wire.payloads import (
    Proposal,
    SaPayload,
    check_body,
    encode_body,
    encode_chain,
    encode_raw_chain,
    encode_sa_body,
    parse_payload,
    parse_sa_body,
    payload_type,
)
from tests.ikev1.test_wire import _payload

_TYPES = [1, 2, 3, 4, 5, 8, 10, 11, 12, 13, 20, 0, 6, 130, 256]


def _outcome(fn: object, *args: object) -> str:
    try:
        fn(*args)  # type: ignore[operator]
    except DecodeError as e:
        return "error:" + e.reason
    return "ok"


@settings(max_examples=300)
@given(st.sampled_from(_TYPES), st.binary(max_size=300))
def test_check_body_matches_parse_payload(ptype: int, body: bytes) -> None:
    assert _outcome(check_body, ptype, body) == _outcome(parse_payload, ptype, body)


@given(st.lists(_payload, min_size=0, max_size=6))
def test_encode_raw_chain_matches_encode_chain(payloads: list) -> None:  # type: ignore[type-arg]
    raw = [(payload_type(p), encode_body(p)) for p in payloads]
    assert encode_raw_chain(raw) == encode_chain(payloads)


# -- phase 1 ---------------------------------------------------------------------------------------------------

_P1 = pr.parse_p1_proposal("aes128-aes256-sha1-sha256-modp2048-ecp256")
_AWS_P1 = pr.P1Policy(tuple(pr.aws_p1_candidates(TunnelOptions())))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_P1), min_size=1, max_size=6, unique=True), st.sampled_from([3600, 28800, 86400]))
def test_p1_select_and_accept_match_the_plain_functions(offer: list[pr.P1Suite], life: int) -> None:
    initiator = pr.P1Policy(tuple(offer))
    body = initiator.offer_body(life)
    assert body == encode_sa_body(pr.build_p1_sa(offer, life))
    sa = parse_sa_body(body)
    want = pr.select_p1(sa, _AWS_P1.cands)
    for _ in range(2):  # computed, then memoised
        sa_p, chosen, reply = _AWS_P1.select(body)
        assert sa_p == sa
        assert chosen == want
        if want is None:
            assert reply == b""
            continue
        expect = SaPayload((Proposal(sa.proposals[0].number, ProtocolId.ISAKMP, b"", (want[2],)),))
        assert reply == encode_sa_body(expect)
        assert initiator.accept(reply) == (want[0], want[1])


def test_p1_offer_body_puts_the_last_choice_first() -> None:
    pol = pr.P1Policy(tuple(_P1))
    last = _P1[3]
    assert pol.offer_body(28800, last) == encode_sa_body(pr.build_p1_sa([last] + [c for c in _P1 if c != last], 28800))
    assert pol.offer_body(28800, None) == encode_sa_body(pr.build_p1_sa(_P1, 28800))


def test_p1_accept_rejects_what_we_did_not_offer_every_time() -> None:
    pol = pr.P1Policy(tuple(_P1[:1]))
    other = encode_sa_body(SaPayload((Proposal(1, ProtocolId.ISAKMP, b"", (_P1[5].transform(1, 28800),)),)))
    for _ in range(2):
        with pytest.raises(DecodeError, match="bad_proposal_choice"):
            pol.accept(other)
    with pytest.raises(DecodeError):
        pol.accept(b"\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00")


# -- phase 2 ---------------------------------------------------------------------------------------------------

_P2 = pr.parse_p2_proposal("aes128-aes256-aes128gcm16-sha1-sha256-modp2048") + pr.parse_p2_proposal("aes256-sha512")
_AWS_P2 = pr.P2Policy(tuple(pr.aws_p2_candidates(TunnelOptions())))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(_P2), min_size=1, max_size=5, unique=True),
    st.lists(st.binary(min_size=4, max_size=4), min_size=2, max_size=4),
    st.sampled_from([1, 3]),
)
def test_p2_select_and_answer_match_the_plain_functions(offer: list[pr.P2Suite], spis: list[bytes], encap: int) -> None:
    initiator = pr.P2Policy(tuple(offer))
    for spi in spis:  # same offer, fresh SPI each time: the memo tables are keyed without the SPI
        body = initiator.offer_body(None, spi, 3600, encap)
        assert body == encode_sa_body(pr.build_p2_sa(initiator.offer(), spi, 3600, encap))
        sa = parse_sa_body(body)
        want = pr.select_p2(sa, _AWS_P2.cands)
        choice, peer_spi, head, tail = _AWS_P2.select(body)
        if want is None:
            assert choice is None and peer_spi == spi
            continue
        suite, life, mode, prop, transform = want
        assert (choice, peer_spi) == ((suite, life, mode), prop.spi)
        ours = bytes(reversed(spi))
        reply = head + ours + tail
        assert reply == encode_sa_body(SaPayload((Proposal(prop.number, ProtocolId.ESP, ours, (transform,)),)))
        n_props, n_trans, got, their_spi = initiator.answer(reply)
        assert (n_props, n_trans, got, their_spi) == (1, 1, pr.p2_from_transform(transform), ours)


def test_p2_select_of_several_proposals_is_not_memoised_by_position() -> None:
    # Two proposals: the SPI of the second is not at offset 16, so the result must come from a full parse.
    suites = _P2[:2]
    t0, t1 = suites[0].transform(1, 3600, 1), suites[1].transform(1, 3600, 1)
    for a, b in ((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"), (b"\x00\x00\x03\x00", b"\x00\x00\x04\x00")):
        sa = SaPayload((Proposal(1, ProtocolId.ESP, a, (t0,)), Proposal(2, ProtocolId.ESP, b, (t1,))))
        pol = pr.P2Policy((suites[1],))
        choice, spi, _h, _t = pol.select(encode_sa_body(sa))
        assert choice is not None and choice[0] == suites[1] and spi == b


def test_p2_malformed_body_raises_every_time() -> None:
    pol = pr.P2Policy(tuple(_P2))
    good = pol.offer_body(None, b"\x00\x00\x10\x00", 3600, 1)
    bad = good[:-3]
    for _ in range(2):
        with pytest.raises(DecodeError):
            pol.select(bad)
        with pytest.raises(DecodeError):
            pol.answer(bad)


def test_policies_are_shared_per_configuration() -> None:
    a = PeerConfig(role=Role.CGW, proposals=("aes128-sha1-ecp256",), esp_proposals=("aes128-sha1",))
    b = PeerConfig(role=Role.CGW, proposals=("aes128-sha1-ecp256",), esp_proposals=("aes128-sha1",), name="other")
    assert pr.p1_policy(a) is pr.p1_policy(b)
    assert pr.p2_policy(a) is pr.p2_policy(b)
    assert pr.p1_policy(a).cands == pr.p1_candidates(a)
    assert pr.p2_policy(a).cands == pr.p2_candidates(a)
    aws = PeerConfig(role=Role.AWS)
    assert pr.p1_policy(aws).cands == pr.p1_candidates(aws)


# -- whole exchanges: fast path and generic path give the same bytes ----------------------------------------


def _run_pair(seed: int) -> tuple[list[bytes], list[str]]:
    from cgw_peer.config import Behaviour
    from cgw_peer.ikev1.peer import IkeV1Peer
    from emulator.actions import Transmit

    aws_cfg = PeerConfig(role=Role.AWS, behaviour=Behaviour(dpd_delay=1.0, dpd_interval=1.0))
    cgw_cfg = PeerConfig(role=Role.CGW, proposals=("aes256-sha256-ecp256",), esp_proposals=("aes256-sha256-ecp256",))
    aws = IkeV1Peer(aws_cfg, local=("203.0.113.1", 500), remote=("198.51.100.1", 500), rng=random.Random(seed))
    cgw = IkeV1Peer(cgw_cfg, local=("198.51.100.1", 500), remote=("203.0.113.1", 500), rng=random.Random(seed + 1))
    wire: list[bytes] = []
    names: list[str] = []

    def deliver(actions: list, sender: IkeV1Peer, now: float) -> None:  # type: ignore[type-arg]
        queue = [(a, sender) for a in actions if isinstance(a, Transmit)]
        while queue:
            tx, frm = queue.pop(0)
            wire.append(tx.data)
            dst = aws if frm is cgw else cgw
            out = dst.receive_datagram(tx.data, tx.src, tx.dst, now)
            names.extend(repr(a) for a in out if not isinstance(a, Transmit))
            queue += [(a, dst) for a in out if isinstance(a, Transmit)]

    deliver(cgw.start(0.0), cgw, 0.0)
    assert aws.children and cgw.children
    for _ in range(5):
        now = aws.next_deadline()
        assert now is not None
        deliver(aws.handle_timer(now), aws, now)
    assert aws.counters == {} and cgw.counters == {}
    return wire, names


def test_fast_and_generic_paths_give_identical_datagrams(monkeypatch: pytest.MonkeyPatch) -> None:
    from cgw_peer.ikev1.peer import IkeV1Peer

    fast = _run_pair(7)
    monkeypatch.setattr(IkeV1Peer, "_fast_dpd", lambda self, data, src, dst, now: False)
    generic = _run_pair(7)
    assert len(fast[0]) == 9 + 10  # Main Mode 6, Quick Mode 3, five R-U-THERE/ACK pairs
    assert sum("dpd_ack_received" in e for e in fast[1]) == 5
    assert fast == generic
