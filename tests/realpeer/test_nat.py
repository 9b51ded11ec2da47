"""A real NAT in the path (nftables source NAT inside one lab namespace: IKE's port 500 leaves as 30500, 4500
as 34500) between charon and our peer, both directions of "who is behind the NAT", IKEv1 and IKEv2.

Oracles: charon's own NAT detection (vici ``nat-local`` / ``nat-remote``), the capture on the veth (where
the translated ports are visible), and charon's log. What it shows: NAT-D detects the NAT on the right side,
both float to 4500 with the non-ESP marker, a NAT-rewritten source port on 500 is not mistaken for an
encapsulation port, the side behind the NAT sends 0xFF keepalives (RFC 3948 §2.3), and DPD / liveness work
through the translation.
"""

from __future__ import annotations

import time

import pytest

from tests.realpeer.harness import CHARON_IP, OUR_IP, Lab, conf, emulator_args, tshark_count, wait_until

pytestmark = pytest.mark.realpeer

KEEPALIVE = "udpencap.nat_keepalive"  # tshark's own dissection of a one-octet 0xFF datagram on 4500


@pytest.mark.parametrize("version", [1, 2])
def test_charon_behind_nat_initiates_to_our_aws_endpoint(lab: Lab, version: int) -> None:
    lab.snat("charon")
    cap = lab.start_capture()
    # our checks every 2 s leave charon 2 s without outbound IKE: its 1 s keepalives are due in each gap
    ours = lab.start_emulator(emulator_args("aws", version=version, extra=["--dpd-delay", "2", "--dpd-interval", "2"]))
    charon = lab.start_charon(conf(version=version, start_action="start", keep_alive="1s", dpd_delay="30s"))
    sa = charon.wait_state("ESTABLISHED", 10)
    assert sa.get("nat-local") == "yes" and sa.get("nat-remote") != "yes", sa
    assert sa["local-port"] == "4500" and sa["remote-port"] == "4500", sa
    ev = ours.wait_event("ike_sa_established", 5)
    if version == 2:
        assert ev["nat"] is True and ev["remote"] == f"{CHARON_IP}:34500", ev
    ours.wait_event("tunnel_up", 5)
    # our liveness checks reach charon through the NAT and are answered
    wait_until(lambda: len(ours.events("dpd_ack_received")) >= 2, 10, "two liveness answers through the NAT")
    cap.stop()
    assert tshark_count(cap.path, f"ip.src == {CHARON_IP} && udp.srcport == 34500 && {KEEPALIVE}") >= 1
    assert tshark_count(cap.path, f"ip.src == {CHARON_IP} && udp.srcport == 30500") >= 1  # the NAT was there
    assert not ours.events("datagram_dropped"), ours.events("datagram_dropped")
    assert not ours.events("tunnel_down")


def test_our_cgw_behind_nat_ikev2_sends_keepalives(lab: Lab) -> None:
    lab.snat("ours")
    cfg = lab.workdir / "nat-keepalive.yaml"
    cfg.write_text("behaviour:\n  nat_keepalive: 1\n")
    cap = lab.start_capture(side="charon")
    charon = lab.start_charon(conf(version=2, start_action="none", dpd_delay="30s"))
    ours = lab.start_emulator(emulator_args("cgw", version=2, extra=["--config", str(cfg)]))
    sa = charon.wait_state("ESTABLISHED", 10)
    assert sa.get("nat-remote") == "yes" and sa.get("nat-local") != "yes", sa
    assert sa["remote-port"] == "34500", sa
    ev = ours.wait_event("ike_sa_established", 5)
    assert ev["nat"] is True and ev["local"] == f"{OUR_IP}:4500", ev
    ours.wait_event("tunnel_up", 5)
    time.sleep(3.5)
    cap.stop()
    n = tshark_count(cap.path, f"ip.src == {OUR_IP} && udp.srcport == 34500 && {KEEPALIVE}")
    assert 2 <= n <= 6, n
    assert tshark_count(cap.path, "_ws.malformed") == 0
    assert charon.ike_state() == "ESTABLISHED"
    assert not ours.events("datagram_dropped")
