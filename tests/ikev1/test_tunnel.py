"""Tunnel set-up in virtual time: both roles, proposal selection as AWS does it, failures that stay clean."""

from __future__ import annotations

import pytest

from cgw_peer.config import Behaviour, PeerConfig, Role, StartupAction, TunnelOptions
from cgw_peer.errors import ConfigError
from cgw_peer.lifecycle.status import MSG_UP, PhaseState, Status
from cgw_peer.peer import create_peer
from tests.ikev1.helpers import AWS_ADDR, CGW_ADDR, aws_config, cgw_config, make_net, sel, sent, times


def test_startup_add_cgw_initiates_tunnel_up_at_zero() -> None:
    net, aws, cgw = make_net()
    net.start_all()
    net.run_until(1)
    kinds = [r.fields["kind"] for r in sel(net, "datagram_sent")]
    assert kinds == [f"main_mode_{i}" for i in range(1, 7)] + [f"quick_mode_{i}" for i in range(1, 4)]
    assert [r.node for r in sel(net, "datagram_sent")][:2] == ["cgw", "aws"]  # AWS waits (StartupAction add)
    assert times(net, "tunnel_up") == [0.0, 0.0]
    for p in (aws, cgw):
        st = p.status
        assert (st.status, st.status_message, st.phase1_state, st.phase2_state) == (
            Status.UP,
            MSG_UP,
            PhaseState.ESTABLISHED,
            PhaseState.ESTABLISHED,
        )
        assert len(p.children) == 1 and p.counters == {}
    a, c = aws.children[0], cgw.children[0]
    # The SA pair mirrors: my inbound SPI is the peer's outbound one, and so are the keys.
    assert (a.spi_in, a.spi_out, a.keys_in, a.keys_out) == (c.spi_out, c.spi_in, c.keys_out, c.keys_in)
    assert len(a.keys_in) == 16 + 20
    ike = {r.node: r.fields for r in sel(net, "ike_sa_established")}
    same = ("spi_i", "spi_r", "version", "proposal", "nat")
    assert {k: ike["aws"][k] for k in same} == {k: ike["cgw"][k] for k in same} and ike["aws"]["version"] == 1
    # Each side's view: who initiated, and the addresses from its own side.
    assert (ike["cgw"]["initiator"], ike["aws"]["initiator"]) == (True, False)
    assert (ike["aws"]["local"], ike["aws"]["remote"]) == (ike["cgw"]["remote"], ike["cgw"]["local"])
    # The child SA event carries the ESP keys, mirrored between the sides (enc 16 + integ 20 for aes128-sha1).
    ch = {r.node: r.fields for r in sel(net, "child_sa_established")}
    assert (ch["aws"]["enc_in"], ch["aws"]["integ_in"]) == (ch["cgw"]["enc_out"], ch["cgw"]["integ_out"])
    assert bytes.fromhex(ch["aws"]["enc_in"] + ch["aws"]["integ_in"]) == a.keys_in
    assert len(ch["aws"]["enc_in"]) == 32 and len(ch["aws"]["integ_in"]) == 40 and ch["aws"]["encap"] is False
    keys = sel(net, "sa_keys")
    assert keys[0].fields == keys[1].fields and len(keys[0].fields["enc_key"]) == 32
    assert aws.ike_spis() == cgw.ike_spis() and len(aws.ike_spis()) == 2


def test_aws_waits_when_nobody_initiates() -> None:
    net, aws, cgw = make_net(cgw_cfg=cgw_config(initiate=False))
    net.start_all()
    net.run_until(100)
    assert sel(net, "datagram_sent") == []
    assert aws.status.status is Status.DOWN and aws.next_deadline() is None
    net.call("cgw", cgw.initiate, at=100)
    net.run_until(101)
    assert times(net, "tunnel_up") == [100.0, 100.0]


def test_aws_role_as_initiator() -> None:
    # AWS offers its lowest PFS group first (one KE per Quick Mode), so restrict it to what the CGW accepts.
    aws_cfg = aws_config(initiate=True, options=TunnelOptions(phase2_dh_group_numbers=(14, 19)))
    net, aws, cgw = make_net(aws_cfg=aws_cfg, cgw_cfg=cgw_config(initiate=False))
    net.start_all()
    net.run_until(1)
    assert sent(net, "main_mode_1", "aws") and not sent(net, "main_mode_1", "cgw")
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP


def test_startup_start_is_refused_for_ikev1() -> None:
    with pytest.raises(ConfigError) as e:
        TunnelOptions(startup_action=StartupAction.START)
    assert e.value.field == "StartupAction"


@pytest.mark.parametrize(
    ("ike", "esp", "want_ike", "want_esp"),
    [
        # AWS evaluates starting with its lowest configured value, whatever the CGW's order.
        (
            ("aes256-sha512-ecp256", "aes128-sha256-modp2048", "aes128-sha1-modp2048"),
            ("aes256-sha256-modp2048", "aes128-sha1-modp2048"),
            "aes128-sha1-modp2048",
            "aes128-sha1-modp2048",
        ),
        (
            ("aes256-sha256-ecp256",),
            ("aes256gcm16-ecp256", "aes128-sha256-ecp256"),
            "aes256-sha256-ecp256",
            "aes128-sha256-ecp256",
        ),
        (
            ("aes256-aes128-sha384-sha256-ecp384-modp2048",),
            ("aes256gcm16-modp2048",),
            "aes128-sha256-modp2048",
            "aes256gcm16-modp2048",
        ),
    ],
)
def test_aws_picks_lowest_configured(ike: tuple[str, ...], esp: tuple[str, ...], want_ike: str, want_esp: str) -> None:
    net, aws, _cgw = make_net(cgw_cfg=cgw_config(proposals=ike, esp_proposals=esp))
    net.start_all()
    net.run_until(1)
    assert {r.fields["proposal"] for r in sel(net, "ike_sa_established")} == {want_ike}
    assert {r.fields["proposal"] for r in sel(net, "child_sa_established")} == {want_esp}
    assert aws.status.status is Status.UP


def test_cgw_as_responder_prefers_its_own_order() -> None:
    aws_cfg = aws_config(initiate=True)
    cgw_cfg = cgw_config(initiate=False, proposals=("aes256-sha256-ecp256", "aes128-sha1-modp2048"))
    net, _aws, _cgw = make_net(aws_cfg, cgw_cfg)
    net.start_all()
    net.run_until(1)
    assert {r.fields["proposal"] for r in sel(net, "ike_sa_established")} == {"aes256-sha256-ecp256"}


def test_no_proposal_chosen() -> None:
    aws_cfg = aws_config(options=TunnelOptions(phase1_encryption_algorithms=("AES256",)))
    net, aws, cgw = make_net(aws_cfg, cgw_config(proposals=("aes128-sha256-modp2048",)))
    net.start_all()
    net.run_until(300)
    assert next(r.fields for r in sel(net, "negotiation_failed", "cgw")) == {
        "exchange": "main_mode",
        "reason": "no_proposal_chosen",
    }
    assert sel(net, "negotiation_failed", "aws")[0].fields["reason"] == "no_proposal_chosen"
    assert len(sent(net, "informational", "aws")) == 1
    assert sel(net, "tunnel_up") == [] and aws.ike_spis() == set() and cgw.ike_spis() == set()
    assert cgw.counters == {"ike:no_proposal_chosen": 1} and cgw.next_deadline() is None


def test_esp_proposal_mismatch_in_quick_mode() -> None:
    aws_cfg = aws_config(options=TunnelOptions(phase2_dh_group_numbers=(14,)))
    net, _aws, _cgw = make_net(aws_cfg, cgw_config(esp_proposals=("aes128-sha1-ecp256",)))
    net.start_all()
    net.run_until(1)
    assert len(sel(net, "ike_sa_established")) == 2
    assert [r.fields for r in sel(net, "negotiation_failed", "cgw")] == [
        {"exchange": "quick_mode", "reason": "no_proposal_chosen"}
    ]
    assert sel(net, "tunnel_up") == []


def test_wrong_psk_fails_cleanly() -> None:
    net, aws, _cgw = make_net(cgw_cfg=cgw_config(psk=b"not.the.right.key"))
    net.start_all()
    net.run_until(170)
    drops = [r for r in sel(net, "datagram_dropped", "aws") if r.t < 165]
    # MM5 and its 5 retransmissions: dropped by the responder (garbage after decryption, or HASH_I wrong);
    # after its 30 s half-open timeout the responder no longer knows the cookies.
    assert len(drops) == 6
    assert {d.fields["reason"] for d in drops if d.t < 30} <= {"decrypt_failed", "bad_hash"}
    assert {d.fields["reason"] for d in drops if d.t > 30} == {"unknown_spi"}
    # strongSwan's schedule: 4, 7.2, 12.96, 23.33, 41.99, 75.58 s, then give up.
    mm5 = [round(r.t, 3) for r in sent(net, "main_mode_5", "cgw") if r.t < 165]
    assert mm5 == [0.0, 4.0, 11.2, 24.16, 47.488, 89.478]
    fail = sel(net, "negotiation_failed", "cgw")
    assert len(fail) == 1 and fail[0].t == pytest.approx(165.062, abs=1e-3)
    assert fail[0].fields == {"exchange": "main_mode", "reason": "peer_not_responding", "retransmits": 5}
    # The CGW keeps trying (it initiates at start-up), with backoff.
    assert len(sel(net, "restart_scheduled", "cgw")) == 1
    assert sel(net, "tunnel_up") == [] and sel(net, "ike_sa_established") == []
    assert aws.status.status is Status.DOWN
    assert not any(k.startswith("dropped:internal") for k in aws.counters)


def test_create_peer_factory_and_config_errors() -> None:
    import random

    p = create_peer(PeerConfig(role=Role.CGW), local=CGW_ADDR, remote=AWS_ADDR, rng=random.Random(0))
    assert p.status.status is Status.DOWN
    with pytest.raises(ConfigError) as e:
        create_peer(
            cgw_config(proposals=("aes128-md5-modp2048",)), local=CGW_ADDR, remote=AWS_ADDR, rng=random.Random(0)
        )
    assert e.value.field == "proposals[0]" and "md5" in str(e.value)


def test_custom_ports_carry_the_non_esp_marker() -> None:
    import random

    from cgw_peer.ikev1.peer import IkeV1Peer
    from emulator.simnet import SimNetwork

    aws = IkeV1Peer(aws_config(), local=("203.0.113.1", 5500), remote=("198.51.100.1", 6500), rng=random.Random(1))
    cgw = IkeV1Peer(cgw_config(), local=("198.51.100.1", 6500), remote=("203.0.113.1", 5500), rng=random.Random(2))
    net = SimNetwork(seed=1)
    net.add_node("aws", aws, ["203.0.113.1"])
    net.add_node("cgw", cgw, ["198.51.100.1"])
    net.start_all()
    net.run_until(1)
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP
    # Every datagram (MM1 included) starts with the 4-byte zero marker (real-peers.md §1.7).
    pcap_free = [r for r in sel(net, "datagram_sent")]
    assert len(pcap_free) == 9
    raw = aws.receive_datagram(b"\x01\x02\x03\x04" + bytes(40), ("198.51.100.1", 6500), ("203.0.113.1", 5500), 1.0)
    assert [a.fields["reason"] for a in raw] == ["esp_on_ike_socket"]  # type: ignore[union-attr]


def test_force_encap_floats_to_4500() -> None:
    net, aws, _cgw = make_net(cgw_cfg=cgw_config(force_encap=True))
    net.start_all()
    net.run_until(11)
    mm = sel(net, "datagram_sent")
    assert [r.fields["dst"] for r in mm[:4]] == ["203.0.113.1:500", "198.51.100.1:500"] * 2
    assert mm[4].fields["kind"] == "main_mode_5" and mm[4].fields["src"] == "198.51.100.1:4500"
    assert mm[4].fields["dst"] == "203.0.113.1:4500" and mm[5].fields["dst"] == "198.51.100.1:4500"
    assert aws.status.status is Status.UP and aws.children[0].encap == 3  # UDP-Encapsulated-Tunnel (RFC 3947)
    # DPD keeps running on 4500 after the float.
    dpd = sent(net, "dpd_request", "aws")
    assert [r.t for r in dpd] == [10.0] and dpd[0].fields["src"] == "203.0.113.1:4500"


def test_keepalive_is_not_liveness() -> None:
    net, aws, _cgw = make_net(cgw_cfg=cgw_config(force_encap=True))
    net.start_all()
    net.run_until(1)
    acts = aws.receive_datagram(b"\xff", ("198.51.100.1", 4500), ("203.0.113.1", 4500), 5.0)
    assert acts == [] and aws.counters["nat_keepalive_received"] == 1
    assert aws.liveness.last_inbound_at == 0.0


def test_behaviour_without_dpd_vendor_id_disables_dpd() -> None:
    net, aws, _cgw = make_net(cgw_cfg=cgw_config(behaviour=Behaviour(send_dpd_vendor_id=False)))
    net.start_all()
    net.run_until(100)
    assert sel(net, "dpd_request_sent") == [] and aws.status.status is Status.UP


@pytest.mark.parametrize(
    ("lost", "resent_by", "resent_kind"),
    [
        ("main_mode_2", "cgw", "main_mode_1"),  # the initiator retransmits its request
        ("main_mode_6", "cgw", "main_mode_5"),  # ...and the responder answers the retransmission with MM6 again
        ("quick_mode_2", "cgw", "quick_mode_1"),
        ("quick_mode_3", "aws", "quick_mode_2"),  # the last message: the responder retransmits QM2
    ],
)
def test_lost_negotiation_message_is_retransmitted(lost: str, resent_by: str, resent_kind: str) -> None:
    from emulator.link import FaultPlan
    from tests.ikev1.helpers import AWS_IP, CGW_IP

    net, aws, cgw = make_net()
    plan = FaultPlan(drop_kinds=frozenset({lost}), drop_kinds_window=(0.0, 1.0))
    net.set_faults(CGW_IP, AWS_IP, plan)
    net.set_faults(AWS_IP, CGW_IP, plan)
    net.start_all()
    net.run_until(10)
    # strongSwan's first retransmission timeout is 4 s.
    assert [r.t for r in sent(net, resent_kind, resent_by)] == [0.0, 4.0]
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP
    assert len(aws.children) == 1 and len(cgw.children) == 1
    assert aws.children[0].keys_in == cgw.children[0].keys_out


def test_phase_states_while_negotiating() -> None:
    from emulator.link import FaultPlan
    from tests.ikev1.helpers import AWS_IP, CGW_IP

    net, _aws, cgw = make_net()
    net.set_faults(AWS_IP, CGW_IP, FaultPlan(drop_kinds=frozenset({"quick_mode_2"}), drop_kinds_window=(0, 1)))
    net.set_faults(CGW_IP, AWS_IP, FaultPlan())
    net.start_all()
    net.run_until(1)
    st = cgw.status
    assert (st.status, st.phase1_state, st.phase2_state) == (
        Status.DOWN,
        PhaseState.ESTABLISHED,
        PhaseState.NEGOTIATING,
    )
    net.run_until(5)
    assert cgw.status.phase2_state is PhaseState.ESTABLISHED and cgw.status.last_status_change == 4.0


def test_strongswan_profile_skips_probes_while_rekeying() -> None:
    from cgw_peer.config import PROFILES
    from emulator.link import FaultPlan
    from tests.ikev1.helpers import AWS_IP, CGW_IP

    opts = TunnelOptions(
        phase1_lifetime_seconds=1000, phase2_lifetime_seconds=900, rekey_margin_time_seconds=60, rekey_fuzz_percentage=0
    )
    # The CGW (strongSwan profile: no DPD while an IKEv1 SA is rekeying) rekeys; AWS answers slowly.
    cgw_cfg = cgw_config(options=opts, behaviour=PROFILES["strongswan"])
    aws_cfg = aws_config(options=opts, behaviour=Behaviour(rekey_initiator=False, dpd_enabled=False))
    net, _aws, cgw = make_net(aws_cfg, cgw_cfg)
    net.set_faults(AWS_IP, CGW_IP, FaultPlan(drop_kinds=frozenset({"quick_mode_2"}), drop_kinds_window=(839, 849)))
    net.start_all()
    net.run_until(900)
    assert times(net, "rekey_started", "cgw")[0] == 840.0
    assert cgw.counters.get("dpd:probe_skipped_rekey", 0) >= 1
    assert sel(net, "dpd_timeout") == [] and cgw.status.status is Status.UP


def test_quick_mode_given_up_is_retried_by_restart() -> None:
    from emulator.link import FaultPlan
    from tests.ikev1.helpers import AWS_IP, CGW_IP

    net, aws, cgw = make_net()
    # AWS never sees Quick Mode for 300 s: the CGW gives up (165 s budget) and retries with backoff.
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(drop_kinds=frozenset({"quick_mode_1"}), drop_kinds_window=(0, 300)))
    net.start_all()
    net.run_until(600)
    assert next(r.fields for r in sel(net, "negotiation_failed", "cgw")) == {
        "exchange": "quick_mode",
        "reason": "peer_not_responding",
        "retransmits": 5,
    }
    assert sel(net, "restart_scheduled", "cgw")
    assert cgw.status.status is Status.UP and aws.status.status is Status.UP
    assert len(sel(net, "ike_sa_established", "cgw")) == 1  # phase 1 was kept, only Quick Mode was redone
