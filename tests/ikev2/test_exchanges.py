"""IKEv2 exchanges driven by hand: key derivation against published vectors, message sizes, IKE_SA_INIT
variants (INVALID_KE_PAYLOAD, COOKIE, NAT-T), IKE_AUTH, both initiation directions, AES-CBC and AES-GCM."""

from __future__ import annotations

import random

import pytest

from cgw_peer.config import Role, StartupAction
from cgw_peer.crypto.keymat_v2 import skeyseed
from cgw_peer.crypto.prf import get_prf
from cgw_peer.ikev2 import codec
from cgw_peer.ikev2.constants import NON_ESP_MARKER, Encr, Exchange, Integ, Payload, Prf
from cgw_peer.ikev2.peer import ChildSa, IkeSa, IkeV2Peer, SaState
from cgw_peer.ikev2.suite import ChildSuite, IkeSuite
from emulator.actions import Event, Transmit, events, transmits

from .helpers import (
    AWS_ADDR,
    CGW_ADDR,
    config,
    converse,
    deliver,
    establish,
    kinds,
    names,
    options,
    pair,
    with_behaviour,
)

# libreswan programs/cavp/test.acvp.ikev2.json (NIST ACVP IKEv2 KDF, HMAC-SHA1), tcId 100.
ACVP = {
    "ni": "32b50d5f4a3763f3",
    "nr": "9206a04b26564cb1",
    "spi_i": "34c9e7c188868785",
    "spi_r": "3ff77d760d2b2199",
    "g_ir": "4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52",
    "g_ir_new": "863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330",
    "skeyseed": "a9a7b222b59f8f48645f28a1db5b5f5d7479cba7",
    "dkm": "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a062768b76606f9fa5e992204f"
    "c5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd11198af1670b143d384b"
    "d275c5f594cf266b05ebadca855e4249520a441a81157435a7a56cc4",
    "dkm_child": "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c5811a8e7b5d1cdabd9560b2d5e092d1f24e2d4"
    "b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf285f524aea65"
    "45b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e664994d234cb4",
    "dkm_dh": "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d37301628190e38c66232eab4b3ab14c400a5197dd3"
    "730ed4820a8a10394d51e1c0400052f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a05884d1b7d2f"
    "933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054d56fd74c",
    "skeyseed_rekey": "63e81194946ebd05df7df5ebf5d8750056bf1f1d",
}
SHA1_SUITE = IkeSuite(Encr.AES_CBC, 128, Prf.HMAC_SHA1, Integ.HMAC_SHA1_96, 14)


def _acvp_sa(peer: IkeV2Peer, initiator: bool) -> IkeSa:
    v = {k: bytes.fromhex(x) for k, x in ACVP.items()}
    sa = IkeSa(initiator, v["spi_i"], v["spi_r"], SaState.ESTABLISHED, AWS_ADDR, CGW_ADDR, 0.0)
    sa.ni, sa.nr = v["ni"], v["nr"]
    peer._install_keys(sa, SHA1_SUITE, skeyseed(SHA1_SUITE.prf, sa.ni, sa.nr, v["g_ir"]))
    return sa


def test_acvp_ike_keys_end_to_end() -> None:
    """Our IKE SA key installation from (Ni, Nr, SPIs, g^ir) gives the ACVP SKEYSEED chain, cut as RFC 7296
    §2.14 says: SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr (20+20+20+16+16+20+20 = 132 octets)."""
    aws, _ = pair()
    assert (
        skeyseed(
            get_prf("sha1"), bytes.fromhex(ACVP["ni"]), bytes.fromhex(ACVP["nr"]), bytes.fromhex(ACVP["g_ir"])
        ).hex()
        == ACVP["skeyseed"]
    )
    sa = _acvp_sa(aws, initiator=True)
    dkm = ACVP["dkm"]
    cuts = [40, 40, 40, 32, 32, 40, 40]
    parts, o = [], 0
    for c in cuts:
        parts.append(dkm[o : o + c])
        o += c
    assert sa.sk_d.hex() == parts[0]
    assert sa.keys_event["sk_ai"] == parts[1] and sa.keys_event["sk_ar"] == parts[2]
    assert sa.keys_event["sk_ei"] == parts[3] and sa.keys_event["sk_er"] == parts[4]
    assert sa.sk_pi.hex() == parts[5] and sa.sk_pr.hex() == parts[6]


@pytest.mark.parametrize("pfs", [False, True])
def test_acvp_child_keys_end_to_end(pfs: bool) -> None:
    """Child KEYMAT (§2.17) for AES-128/HMAC-SHA1-96 ESP: i->r encryption, i->r integrity, r->i ... in order."""
    aws, _ = pair()
    sa = _acvp_sa(aws, initiator=True)
    v = {k: bytes.fromhex(x) for k, x in ACVP.items()}
    suite = ChildSuite(Encr.AES_CBC, 128, Integ.HMAC_SHA1_96)
    child: ChildSa = aws._make_child(
        sa,
        b"\x00\x00\x01\x00",
        b"\x00\x00\x02\x00",
        suite,
        [],
        [],
        v["ni"],
        v["nr"],
        v["g_ir_new"] if pfs else None,
        created_by_us=True,
        we_initiated=True,
    )
    km = ACVP["dkm_dh" if pfs else "dkm_child"]
    assert child.keys["enc_out"] == km[0:32]
    assert child.keys["integ_out"] == km[32:72]
    assert child.keys["enc_in"] == km[72:104]
    assert child.keys["integ_in"] == km[104:144]


def test_acvp_rekey_skeyseed_end_to_end() -> None:
    """IKE rekey (§2.18): SKEYSEED' = prf_old(SK_d_old, g^ir(new) | Ni | Nr); the new SA's keys come from it."""
    aws, _ = pair()
    old = _acvp_sa(aws, initiator=True)
    v = {k: bytes.fromhex(x) for k, x in ACVP.items()}
    new = aws._rekeyed_ike(old, True, b"N" * 8, b"M" * 8, SHA1_SUITE, v["ni"], v["nr"], v["g_ir_new"], 0.0)
    from cgw_peer.crypto.keymat_v2 import derive_ike_keys

    expect = derive_ike_keys(
        get_prf("sha1"),
        bytes.fromhex(ACVP["skeyseed_rekey"]),
        v["ni"],
        v["nr"],
        b"N" * 8,
        b"M" * 8,
        enc_key_len=16,
        integ_key_len=20,
    )
    assert new.sk_d == expect.sk_d and new.keys_event["sk_ei"] == expect.sk_ei.hex()
    assert new.my_mid == 0 and new.peer_mid == 0 and old.state is SaState.REKEYED


@pytest.mark.parametrize(
    ("encr", "integ", "size"),
    [("AES128", "SHA2-256", 80), ("AES128-GCM-16", "SHA2-256", 57), ("AES256-GCM-16", "SHA2-512", 57)],
)
def test_liveness_message_size(encr: str, integ: str, size: int) -> None:
    """ike-dpd.md §3.4: 28+4+16+16+16 = 80 octets (CBC-128/SHA2-256-128); 28+4+8+1+16 = 57 (GCM-16)."""
    opts = options(phase1_encryption_algorithms=(encr,), phase1_integrity_algorithms=(integ,))
    aws, cgw = pair(config(Role.AWS, opts), config(Role.CGW, opts))
    establish(aws, cgw)
    out = aws.check_liveness(1.0)
    (tx,) = transmits(out)
    assert tx.kind == "liveness_request" and len(tx.data) == size
    hdr = codec.parse_header(tx.data)
    assert hdr.exchange == Exchange.INFORMATIONAL and hdr.message_id == 0 and not hdr.from_initiator
    resp = cgw.receive_datagram(tx.data, tx.src, tx.dst, 1.0)
    (rtx,) = transmits(resp)
    assert rtx.kind == "liveness_response" and len(rtx.data) == size
    back = aws.receive_datagram(rtx.data, rtx.src, rtx.dst, 1.0)
    assert names([("a", x) for x in back]) == ["dpd_ack_received"]


@pytest.mark.parametrize("encr", ["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"])
@pytest.mark.parametrize("integ", ["SHA1", "SHA2-384"])
def test_establish_each_cipher(encr: str, integ: str) -> None:
    opts = options(
        phase1_encryption_algorithms=(encr,),
        phase1_integrity_algorithms=(integ,),
        phase2_encryption_algorithms=(encr,),
        phase2_integrity_algorithms=(integ,),
        phase1_dh_group_numbers=(14,),
    )
    aws, cgw = pair(config(Role.AWS, opts), config(Role.CGW, opts))
    log = establish(aws, cgw)
    assert kinds(log) == ["ike_sa_init_request", "ike_sa_init_response", "ike_auth_request", "ike_auth_response"]
    assert names(log, "a").count("tunnel_up") == 1 and names(log, "b").count("tunnel_up") == 1
    ev = [x for _, x in log if isinstance(x, Event) and x.name == "sa_keys"]
    assert ev[0].fields == ev[1].fields
    gcm = "GCM" in encr
    assert ev[0].fields["integ_alg"] == (
        "NONE [RFC4306]"
        if gcm
        else {"SHA1": "HMAC_SHA1_96 [RFC2404]", "SHA2-384": "HMAC_SHA2_384_192 [RFC4868]"}[integ]
    )
    assert aws.status.status.value == "UP" and cgw.status.status.value == "UP"


def test_aws_startup_start_initiates_and_add_waits() -> None:
    start = options(startup_action=StartupAction.START)
    aws, cgw = pair(config(Role.AWS, start), config(Role.CGW, start, initiate=False))
    assert cgw.start(0.0) == []
    first = aws.start(0.0)
    assert [t.kind for t in transmits(first)] == ["ike_sa_init_request"]
    log = converse(aws, cgw, first, 0.0)
    assert "tunnel_up" in names(log, "a") and "tunnel_up" in names(log, "b")
    ike = aws.ike_sa()
    assert ike is not None and ike.initiator
    # StartupAction=add: the AWS endpoint sends nothing.
    aws2, _ = pair()
    assert aws2.start(0.0) == [] and aws2.next_deadline() is None


def test_invalid_ke_payload_retry() -> None:
    """The CGW guesses group 14 first; AWS only accepts 19 -> INVALID_KE_PAYLOAD(19) -> retry with 19."""
    cgw_opts = options(phase1_dh_group_numbers=(14, 19))
    aws, cgw = pair(config(Role.AWS, options(phase1_dh_group_numbers=(19,))), config(Role.CGW, cgw_opts))
    log = establish(aws, cgw)
    assert kinds(log)[:4] == [
        "ike_sa_init_request",
        "ike_sa_init_response",
        "ike_sa_init_request",
        "ike_sa_init_response",
    ]
    assert "invalid_ke_payload" in names(log, "a")
    assert aws.ike_sa() is not None and aws.ike_sa().suite.dh == 19  # type: ignore[union-attr]
    assert cgw.counters["invalid_ke_retry"] == 1 and aws.counters["invalid_ke_sent"] == 1


def test_cookie_round_trip() -> None:
    aws_cfg = with_behaviour(config(Role.AWS), ikev2_require_cookie=True)
    aws, cgw = pair(aws_cfg)
    log = establish(aws, cgw)
    assert "cookie_received" in names(log, "a") and "tunnel_up" in names(log, "b")
    # The retried IKE_SA_INIT starts with N(COOKIE) (RFC 7296 §2.6).
    second = [x for w, x in log if isinstance(x, Transmit) and x.kind == "ike_sa_init_request"][1]
    hdr = codec.parse_header(second.data)
    assert hdr.next_payload == Payload.NOTIFY
    assert aws.counters["cookie_sent"] == 1


def test_no_proposal_chosen() -> None:
    aws, cgw = pair(
        config(Role.AWS, options(phase1_encryption_algorithms=("AES256",))),
        config(Role.CGW, options(phase1_encryption_algorithms=("AES128",))),
    )
    log = establish(aws, cgw)
    assert "negotiation_failed" in names(log, "a") and "tunnel_up" not in names(log)


def test_wrong_psk_fails_authentication() -> None:
    from dataclasses import replace

    aws, cgw = pair(cgw_cfg=replace(config(Role.CGW), psk=b"another.psk.123"))
    log = establish(aws, cgw)
    assert aws.counters["authentication_failed"] == 1
    assert "tunnel_up" not in names(log)
    assert [e.fields["reason"] for e in events([x for _, x in log], "negotiation_failed")] == [
        "authentication_failed",
        "authentication_failed",
    ]


def test_force_encap_floats_to_4500_with_marker() -> None:
    aws, cgw = pair(cgw_cfg=config(Role.CGW, force_encap=True))
    log = establish(aws, cgw)
    txs = [x for _, x in log if isinstance(x, Transmit)]
    assert [t.dst[1] for t in txs] == [500, 500, 4500, 4500]
    assert [t.src[1] for t in txs] == [500, 500, 4500, 4500]
    assert all(t.data[:4] == NON_ESP_MARKER for t in txs[2:])
    assert "tunnel_up" in names(log, "b")
    # Liveness now runs on 4500 with the marker; a NAT keepalive is ignored (no reply, no liveness credit).
    (tx,) = transmits(aws.check_liveness(1.0))
    assert tx.dst == ("198.51.100.1", 4500) and tx.data[:4] == NON_ESP_MARKER
    assert cgw.receive_datagram(b"\xff", (AWS_ADDR[0], 4500), (CGW_ADDR[0], 4500), 2.0) == []


def test_nonstandard_ports_always_carry_marker() -> None:
    """real-peers.md §1.7: when either port is not 500, every IKE datagram has the marker, even IKE_SA_INIT."""
    aws = IkeV2Peer(config(Role.AWS), local=(AWS_ADDR[0], 5500), remote=(CGW_ADDR[0], 6500), rng=random.Random(1))
    cgw = IkeV2Peer(config(Role.CGW), local=(CGW_ADDR[0], 6500), remote=(AWS_ADDR[0], 5500), rng=random.Random(2))
    log = establish(aws, cgw)
    txs = [x for _, x in log if isinstance(x, Transmit)]
    assert txs and all(t.data[:4] == NON_ESP_MARKER for t in txs)
    assert {t.dst[1] for t in txs} == {5500, 6500}
    assert "tunnel_up" in names(log, "b")


def test_close_sends_delete_and_peer_logs_it() -> None:
    aws, cgw = pair()
    establish(aws, cgw)
    out = cgw.close(5.0)
    assert [t.kind for t in transmits(out)] == ["delete_request"]
    assert "tunnel_down" in [e.name for e in events(out)]
    got = aws.receive_datagram(transmits(out)[0].data, CGW_ADDR, AWS_ADDR, 5.0)
    assert [e.name for e in events(got)] == ["delete_received", "aws_log", "tunnel_down", "routes_withdrawn"]
    assert events(got, "aws_log")[0].fields["message"] == "AWS tunnel received DELETE for IKE_SA from CGW"
    assert aws.status.status.value == "DOWN" and aws.ike_spis() == set()


def test_simultaneous_initiation_leaves_one_ike_sa() -> None:
    """Both sides initiate at once (both restart, libreswan #2184): two IKE SAs come up; the one holding the
    lowest nonce is deleted by its initiator, so both sides keep the same single IKE SA and Child SA."""
    kept = set()
    for seed in range(1, 7):
        start = options(startup_action=StartupAction.START)
        aws, cgw = pair(config(Role.AWS, start), config(Role.CGW, start), seed=seed)
        a0, c0 = aws.start(0.0), cgw.start(0.0)
        a1, c1 = deliver(c0, aws, 0.0), deliver(a0, cgw, 0.0)  # each answers the other's IKE_SA_INIT
        a2, c2 = deliver(c1, aws, 0.0), deliver(a1, cgw, 0.0)  # each sends IKE_AUTH
        a3, c3 = deliver(c2, aws, 0.0), deliver(a2, cgw, 0.0)  # each answers IKE_AUTH (responder SA up)
        a4, c4 = deliver(c3, aws, 0.0), deliver(a3, cgw, 0.0)  # initiator SAs up -> duplicates resolved
        converse(aws, cgw, a4, 0.1)
        converse(cgw, aws, c4, 0.1)
        sa_a, sa_c = aws.ike_sa(), cgw.ike_sa()
        assert sa_a is not None and sa_c is not None
        assert (sa_a.spi_i, sa_a.spi_r) == (sa_c.spi_i, sa_c.spi_r), seed
        assert len(aws.ike_spis()) == 2 and len(cgw.ike_spis()) == 2
        assert len(aws.child_sas()) == 1 and len(cgw.child_sas()) == 1
        assert aws.status.status.value == "UP" and cgw.status.status.value == "UP"
        kept.add(sa_a.initiator)
    assert kept == {True, False}


def test_half_open_sa_expires() -> None:
    """An IKE_SA_INIT answered but never followed by IKE_AUTH is dropped after HALF_OPEN_TIMEOUT (30 s)."""
    aws, cgw = pair()
    resp = deliver(cgw.start(0.0), aws, 0.0)
    assert [t.kind for t in transmits(resp)] == ["ike_sa_init_response"]
    assert len(aws.ike_spis()) == 2 and aws.next_deadline() == 30.0
    assert aws.handle_timer(29.9) == [] and len(aws.ike_spis()) == 2  # an early call is a no-op
    aws.handle_timer(30.0)
    assert aws.ike_spis() == set() and aws.counters["half_open_expired"] == 1
    assert aws.next_deadline() is None and aws.status.status.value == "DOWN"
