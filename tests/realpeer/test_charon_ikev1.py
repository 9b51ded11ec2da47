"""Our IKEv1 peer (``awsnetemu vpn`` on real UDP, in its own namespace) against strongSwan charon.

Oracles: charon's own view (vici ``list-sas`` and its log), a capture taken on the veth by dumpcap and
decrypted by tshark with the key tables OUR peer wrote (``--keys``), and ike-scan.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.realpeer.harness import (
    CHARON_IP,
    CHARON_NET,
    OUR_IP,
    OUR_NET,
    Charon,
    Emulator,
    Lab,
    conf,
    emulator_args,
    require_tools,
    tshark_count,
    tshark_fields,
    wait_until,
)

pytestmark = pytest.mark.realpeer

# strongSwan proposal -> what charon's list-sas reports (encryption, key size, DH group)
PROPOSALS = {
    "aes128-sha1-modp2048": ("AES_CBC", "128", "MODP_2048"),
    "aes256-sha256-modp2048": ("AES_CBC", "256", "MODP_2048"),
    "aes128-sha256-ecp256": ("AES_CBC", "128", "ECP_256"),
}

DPD_FIELDS = [
    "ip.src",
    "isakmp.notify.msgtype",
    "isakmp.notify.data.dpd.are_you_there",
    "isakmp.notify.data.dpd.are_you_there_ack",
]
R_U_THERE, R_U_THERE_ACK = "36136", "36137"


def check_established(charon: Charon, ours: Emulator, proposal: str) -> dict[str, Any]:
    """Both sides agree the tunnel is up, with the proposal asked for."""
    sa = charon.wait_state("ESTABLISHED", 10)
    assert sa["version"] == "1"
    encr, keysize, group = PROPOSALS[proposal]
    assert sa["encr-alg"] == encr and sa["encr-keysize"] == keysize and sa["dh-group"] == group, sa
    ours.wait_event("ike_sa_established", 5)
    ours.wait_event("tunnel_up", 5)

    def installed() -> dict[str, Any] | None:
        children = (charon.list_sas().get("vpn") or {}).get("child-sas") or {}
        return next((c for c in children.values() if c.get("state") == "INSTALLED"), None)

    child = wait_until(installed, 5, "an INSTALLED CHILD_SA at charon")
    assert child["encap"] == "yes", child  # ESP in UDP 4500 (kernel-libipsec)
    return sa


@pytest.mark.parametrize("proposal", list(PROPOSALS))
def test_charon_initiates_to_our_aws_endpoint(lab: Lab, proposal: str) -> None:
    """StartupAction=add: the AWS endpoint waits; charon (the CGW) initiates Main Mode + Quick Mode."""
    ours = lab.start_emulator(emulator_args("aws", proposal=proposal))
    charon = lab.start_charon(conf(start_action="start", proposals=proposal, esp_proposals=proposal))
    sa = check_established(charon, ours, proposal)
    assert sa["initiator"] == "yes"
    spi = ours.wait_event("ike_sa_established")
    assert spi["spi_i"] == sa["initiator-spi"] and spi["spi_r"] == sa["responder-spi"]
    assert "tunnel UP" in ours.stderr()


@pytest.mark.parametrize("proposal", list(PROPOSALS))
def test_our_cgw_initiates_to_charon(lab: Lab, proposal: str) -> None:
    charon = lab.start_charon(conf(start_action="none", proposals=proposal, esp_proposals=proposal))
    ours = lab.start_emulator(emulator_args("cgw", proposal=proposal))
    sa = check_established(charon, ours, proposal)
    assert "initiator" not in sa or sa["initiator"] != "yes"
    spi = ours.wait_event("ike_sa_established")
    assert spi["spi_i"] == sa["initiator-spi"]


def dpd_rows(cap: Path, keys: Path) -> list[list[str]]:
    rows = tshark_fields(cap, DPD_FIELDS, "isakmp.exchangetype==5", keys_dir=keys)
    return [r + [""] * (len(DPD_FIELDS) - len(r)) for r in rows]


def assert_dpd_exchange(cap: Path, keys: Path, prober_ip: str, probe_seqs: list[int]) -> None:
    """In the capture, decrypted with our keys: each R-U-THERE from ``prober_ip`` with a seq in
    ``probe_seqs`` is answered by an ACK with the same seq from the other side; nothing is malformed."""
    rows = dpd_rows(cap, keys)
    probes = [int(r[2]) for r in rows if r[0] == prober_ip and r[1] == R_U_THERE]
    acks = [int(r[3]) for r in rows if r[0] != prober_ip and r[1] == R_U_THERE_ACK]
    assert probes, f"no decrypted R-U-THERE from {prober_ip}: {rows}"
    for seq in probe_seqs:
        assert seq in probes and seq in acks, (seq, probes, acks)
    assert tshark_count(cap, "_ws.malformed", keys_dir=keys) == 0
    assert tshark_count(cap, "isakmp", keys_dir=keys) >= 9  # MM 6 + QM 3 at least


def test_dpd_charon_probes_we_ack(lab: Lab) -> None:
    """charon probes every second while idle (our own probes are 10 s away): each R-U-THERE is answered with
    its own sequence number, as our events, charon's log and the decrypted capture all show."""
    cap = lab.start_capture()
    ours = lab.start_emulator(emulator_args("aws", extra=["--dpd-delay", "10", "--dpd-interval", "10"]))
    charon = lab.start_charon(conf(start_action="start", dpd_delay="1s", dpd_timeout="20s", enc_log=4))
    check_established(charon, ours, "aes128-sha1-modp2048")
    wait_until(lambda: len(ours.events("dpd_ack_sent")) >= 2, 8, "two DPD ACKs sent by us")
    charon.wait_log(r"parsed INFORMATIONAL_V1 request \d+ \[ HASH N\(DPD_ACK\) \]", 3)
    cap.stop()
    received = [e["seq"] for e in ours.events("dpd_request_received")]
    acked = [e["seq"] for e in ours.events("dpd_ack_sent")]
    assert acked[:2] == received[:2]
    assert not ours.events("dpd_request_sent")  # our probes were never due
    assert "invalid DPD sequence number" not in charon.log()
    # charon's log: it generated R-U-THEREs with the numbers we received and parsed our ACKs with them
    notes = charon.dpd_notifies()
    for seq in acked[:2]:
        assert ("out", 36136, seq) in notes and ("in", 36137, seq) in notes, (seq, notes)
    assert_dpd_exchange(cap.path, ours.keys_dir, CHARON_IP, acked[:2])


def test_dpd_we_probe_charon_acks(lab: Lab) -> None:
    """Our CGW probes every second while idle; charon (dpd_delay 30 s, so it never probes) acknowledges."""
    cap = lab.start_capture()
    charon = lab.start_charon(conf(start_action="none", dpd_delay="30s", dpd_timeout="90s", enc_log=4))
    ours = lab.start_emulator(
        emulator_args("cgw", extra=["--dpd-delay", "1", "--dpd-interval", "1", "--dpd-timeout", "10"])
    )
    check_established(charon, ours, "aes128-sha1-modp2048")
    wait_until(lambda: len(ours.events("dpd_ack_received")) >= 2, 8, "two DPD ACKs received by us")
    cap.stop()
    sent = [e["seq"] for e in ours.events("dpd_request_sent")]
    acked = [e["seq"] for e in ours.events("dpd_ack_received")]
    assert acked[:2] == sent[:2] and sent[1] == sent[0] + 1  # RFC 3706 §7: +1 per acknowledged probe
    log = charon.log()
    assert log.count("[ HASH N(DPD) ]") >= 2 and "N(DPD_ACK)" in log
    assert "sending DPD request" not in log
    notes = charon.dpd_notifies()
    for seq in acked[:2]:
        assert ("in", 36136, seq) in notes and ("out", 36137, seq) in notes, (seq, notes)
    assert_dpd_exchange(cap.path, ours.keys_dir, OUR_IP, acked[:2])


# -- DPD timeouts on our side (AWS role, DPDTimeoutSeconds=30, the AWS minimum) ---------------------------


def _dead_lab(tmp: Path, action: str) -> tuple[Lab, Charon, Emulator]:
    lab = Lab(tmp / action).setup()
    ours = lab.start_emulator(
        emulator_args(
            "aws",
            extra=[
                "--dpd-timeout-seconds", "30", "--dpd-timeout-action", action, "--dpd-delay", "2",
                "--dpd-interval", "2", "--retransmit-timeout", "1", "--retransmit-base", "1.4",
                "--retransmit-tries", "3",
            ],
        )
    )  # fmt: skip
    charon = lab.start_charon(conf(start_action="start", dpd_delay="2s", dpd_timeout="60s"))
    return lab, charon, ours


def test_charon_killed_our_dpd_timeout_actions(tmp_path: Path) -> None:
    """kill -9 of charon: our DPD timeout fires at last inbound + DPDTimeoutSeconds for each action, then
    clear takes the tunnel down and withdraws routes, restart re-initiates (and re-establishes once charon
    is back), none keeps the tunnel up. The three run side by side (each in its own namespaces)."""
    require_tools()
    labs: dict[str, tuple[Lab, Charon, Emulator]] = {}
    try:
        for action in ("clear", "restart", "none"):
            labs[action] = _dead_lab(tmp_path, action)
        for _, charon, ours in labs.values():
            check_established(charon, ours, "aes128-sha1-modp2048")
        # let DPD run (both sides probe after 2 s idle) so the last inbound message is a DPD one
        for _, _, ours in labs.values():
            wait_until(lambda o=ours: o.events("dpd_ack_received") or o.events("dpd_ack_sent"), 6, "DPD traffic")
        for _, charon, _ in labs.values():
            charon.kill()
        timeouts: dict[str, dict[str, Any]] = {}
        for action, (_, _, ours) in labs.items():
            timeouts[action] = ours.wait_event("dpd_timeout", 40)
        for action, (_, _, ours) in labs.items():
            ev = timeouts[action]
            assert ev["action"] == action
            # the last datagram charon sent us, from our own capture (an oracle independent of the engine)
            last_in = max(t for t, src, *_ in ours.datagrams() if src == CHARON_IP and t < ev["t"])
            established = ours.wait_event("tunnel_up")["t"]
            assert last_in > established + 1.0  # a DPD message, not the end of Quick Mode
            assert abs(ev["t"] - (last_in + 30.0)) < 0.5, (action, ev, last_in)
        # clear: down, routes withdrawn, and no re-initiation
        _, _, ours = labs["clear"]
        t_dead = timeouts["clear"]["t"]
        ours.wait_event("tunnel_down", 3, after=t_dead - 0.01)
        ours.wait_event("routes_withdrawn", 3, after=t_dead - 0.01)
        # none: the tunnel stays up (no tunnel_down at all)
        _, _, ours_none = labs["none"]
        # restart: re-initiates with backoff; bring charon back as a pure responder and watch it come up
        lab, charon, ours_r = labs["restart"]
        t_dead_r = timeouts["restart"]["t"]
        sched = ours_r.wait_event("restart_scheduled", 3, after=t_dead_r - 0.01, attempt=1)
        assert sched["at"] > t_dead_r  # backoff: not immediately
        # charon is still dead: the first attempt (Main Mode 1 and its retransmissions) fails, and the next
        # one is scheduled further out
        sched1 = ours_r.wait_event("restart_scheduled", 15, after=t_dead_r - 0.01, attempt=2)
        assert sched1["at"] - sched1["t"] > 1.0 >= sched["at"] - sched["t"]  # 1 s then 2 s, minus jitter
        mm1 = [d for d in ours_r.datagrams() if d[1] == OUR_IP and sched["at"] <= d[0] < sched1["t"]]
        assert len(mm1) >= 2 and all(d[5][18] == 2 for d in mm1)  # exchange type 2: Main Mode, retransmitted
        charon.restart(conf(start_action="none", dpd_delay="2s", dpd_timeout="60s"))
        up = ours_r.wait_event("tunnel_up", 25, after=sched1["t"])
        charon.wait_state("ESTABLISHED", 5)
        # our side initiated the new SA (charon is now only a responder)
        assert charon.list_sas()["vpn"].get("initiator") != "yes"
        assert up["t"] > sched1["t"]
        time.sleep(0.5)
        out_after = [d for d in labs["clear"][2].datagrams() if d[1] == OUR_IP and d[0] > t_dead + 0.01]
        assert out_after == [], "clear must not re-initiate"
        assert not ours_none.events("tunnel_down")
    finally:
        for lab, _, _ in labs.values():
            lab.cleanup()


# -- charon's DPD against our (killed) peer, and charon's clean stop --------------------------------------


@pytest.mark.parametrize("action", ["clear", "restart"])
def test_our_peer_killed_charon_dpd_action(lab: Lab, action: str) -> None:
    charon = lab.start_charon(
        conf(start_action="none", dpd_delay="1s", dpd_timeout="4s", dpd_action=action, keyingtries=0)
    )
    ours = lab.start_emulator(emulator_args("cgw", extra=["--dpd-delay", "10", "--dpd-interval", "10"]))
    check_established(charon, ours, "aes128-sha1-modp2048")
    mark = len(charon.log())
    ours.kill()
    charon.wait_log(r"DPD check timed out, enforcing DPD action", 10, start=mark)
    if action == "clear":
        charon.wait_down(3)
    else:
        charon.wait_log(r"restarting CHILD_SA tun1", 3, start=mark)
        charon.wait_log(r"initiating Main Mode IKE_SA vpn\[\d+\]", 3, start=mark)
        # our peer comes back as a pure responder; charon's retries bring the tunnel up again
        ours2 = lab.start_emulator(
            emulator_args("cgw", extra=["--initiate", "no", "--dpd-delay", "10", "--dpd-interval", "10"]),
            name="ours2",
        )
        ours2.wait_event("tunnel_up", 15)
        sa = charon.wait_state("ESTABLISHED", 5)
        assert sa["initiator"] == "yes"


def test_charon_sigterm_deletes_take_our_tunnel_down(lab: Lab) -> None:
    charon = lab.start_charon(conf(start_action="none"))
    ours = lab.start_emulator(emulator_args("cgw"))
    check_established(charon, ours, "aes128-sha1-modp2048")
    up_at = ours.wait_event("tunnel_up")["t"]
    charon.stop()
    ours.wait_event("delete_received", 5, after=up_at)
    down = ours.wait_event("tunnel_down", 5, after=up_at)
    assert not ours.events("dpd_timeout")
    assert "delete" in str(down.get("reason", "")).lower()


def test_our_sigterm_sends_deletes(lab: Lab) -> None:
    """Our clean shutdown (SIGTERM) sends Deletes that charon acts on: its IKE SA goes away at once."""
    charon = lab.start_charon(conf(start_action="none", dpd_delay="30s"))
    ours = lab.start_emulator(emulator_args("cgw"))
    check_established(charon, ours, "aes128-sha1-modp2048")
    mark = len(charon.log())
    assert ours.stop() == 0
    charon.wait_log(r"received DELETE for IKE_SA vpn\[\d+\]", 5, start=mark)
    charon.wait_down(3)


def test_ike_scan_sees_main_mode_and_dpd_vendor_id(lab: Lab) -> None:
    """ike-scan from the charon namespace (charon not running) against our AWS responder."""
    ours = lab.start_emulator(emulator_args("aws"))
    res = lab.run_in("charon", ["ike-scan", "--trans=(1=7,14=128,2=2,3=1,4=14)", "-M", OUR_IP])
    out = res.stdout
    assert "Main Mode Handshake returned" in out, out + res.stderr
    assert "Enc=AES" in out and "KeyLength=128" in out and "Group=14:modp2048" in out and "Auth=PSK" in out
    assert "afcad71368a1f1c96b8696fc77570100" in out and "Dead Peer Detection" in out
    assert "1 returned handshake" in out
    assert ours.events("datagram_dropped") == [] or all(
        e.get("reason") != "internal_error" for e in ours.events("datagram_dropped")
    )


def test_fault_plan_dropping_our_acks_makes_charon_declare_us_dead(lab: Lab) -> None:
    """Real-time fault injection (``--faults``): our R-U-THERE-ACKs never leave, so charon, probing every
    second, declares us dead after its 4 s dpd_timeout although our process is alive and answering."""
    charon = lab.start_charon(conf(start_action="none", dpd_delay="1s", dpd_timeout="4s", dpd_action="clear"))
    ours = lab.start_emulator(
        emulator_args("cgw", extra=["--dpd-delay", "30", "--dpd-interval", "30", "--dpd-timeout", "60",
                                    "--faults", '{"drop_kinds": ["dpd_ack"]}'])
    )  # fmt: skip
    check_established(charon, ours, "aes128-sha1-modp2048")
    charon.wait_log(r"DPD check timed out, enforcing DPD action", 10)
    charon.wait_down(3)
    acked = ours.events("dpd_ack_sent")
    dropped = ours.events("fault_dropped", kind="dpd_ack")
    assert len(acked) >= 3 and len(dropped) == len(acked)
    assert "N(DPD_ACK)" not in charon.log()  # charon never saw a single ACK


def test_charon_rekeys_child_sa_every_few_seconds_tunnel_stays_up(lab: Lab) -> None:
    """charon (the CGW) rekeys its CHILD_SA with a new Quick Mode every 3 s; our AWS endpoint must follow
    each rekey and keep the tunnel up (charon keeps an INSTALLED CHILD_SA, we never report tunnel_down)."""
    ours = lab.start_emulator(emulator_args("aws", extra=["--dpd-delay", "10", "--dpd-interval", "10"]))
    charon = lab.start_charon(conf(start_action="start", child_rekey_time="3s"))
    check_established(charon, ours, "aes128-sha1-modp2048")
    charon.wait_log(r"CHILD_SA tun1\{\d+\} established", 5)
    time.sleep(7.5)  # two rekeys by charon
    assert len(ours.events("child_sa_established")) >= 3
    assert not ours.events("tunnel_down")
    states = [c["state"] for c in (charon.list_sas()["vpn"].get("child-sas") or {}).values()]
    assert "INSTALLED" in states, states


def test_force_encap_makes_charon_see_nat_and_float(lab: Lab) -> None:
    """``--force-encap`` (strongSwan's ``encap = yes`` on our side): charon, configured without encap, sees
    our faked NAT-D (RFC 3947 §3.2), reports us behind NAT and runs ESP in UDP on 4500."""
    charon = lab.start_charon(conf(start_action="none", encap=False))
    ours = lab.start_emulator(emulator_args("cgw", extra=["--force-encap"]))
    sa = check_established(charon, ours, "aes128-sha1-modp2048")
    assert sa["remote-port"] == "4500" and sa["local-port"] == "4500"
    assert "remote host is behind NAT" in charon.log()
    dports = {d[4] for d in ours.datagrams() if d[1] == OUR_IP}
    assert dports == {500, 4500}  # Main Mode 1-4 on 500, the rest floated


def test_charon_narrows_our_quick_mode_selectors(lab: Lab) -> None:
    """Our CGW offers wider client identities than charon's policy (10.2.0.0/16 where charon has 10.2.0.0/24):
    charon, as Quick Mode responder, returns the narrowed identity; we accept a subset of our offer (RFC 2409
    §5.5) and report the narrowed selectors. charon's list-sas shows the same ones."""
    charon = lab.start_charon(conf(start_action="none"))
    args = emulator_args("cgw")
    args[args.index("--remote-ts") + 1] = "10.2.0.0/16"
    ours = lab.start_emulator(args)
    check_established(charon, ours, "aes128-sha1-modp2048")
    ev = ours.wait_event("child_sa_established")
    assert (ev["ts_local"], ev["ts_remote"]) == (["10.1.0.0-10.1.0.255[0/0-65535]"], ["10.2.0.0-10.2.0.255[0/0-65535]"])
    children = (charon.list_sas().get("vpn") or {}).get("child-sas") or {}
    child = next(iter(children.values()))
    assert child["local-ts"] == [CHARON_NET] and child["remote-ts"] == [OUR_NET], child
    assert not ours.events("negotiation_failed")
