"""Our IKEv2 peer (``awsnetemu vpn --ike-version 2`` on real UDP, in its own namespace) against strongSwan
charon with ``version = 2``.

Oracles: charon's own view (vici ``list-sas``, its log), a dumpcap capture on the veth decrypted by tshark
with the ``ikev2_decryption_table`` OUR peer wrote, and our own pcap for timing.
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
    PSK,
    Charon,
    Emulator,
    Lab,
    conf,
    require_tools,
    tshark_count,
    tshark_fields,
    wait_until,
)

pytestmark = pytest.mark.realpeer

# strongSwan IKE proposal, ESP proposal -> what charon's list-sas reports.
PROPOSALS = {
    "cbc": ("aes128-sha256-modp2048", "aes128-sha256-modp2048", ("AES_CBC", "128", "MODP_2048")),
    "gcm": ("aes256gcm16-prfsha256-ecp256", "aes256gcm16-ecp256", ("AES_GCM_16", "256", "ECP_256")),
}


def v2_args(role: str, kind: str = "cbc", extra: list[str] | None = None) -> list[str]:
    ike, esp, _ = PROPOSALS[kind]
    args = [
        "--role", role, "--local", OUR_IP, "--remote", CHARON_IP, "--ike-version", "2", "--psk", PSK,
        "--proposal", ike, "--esp-proposal", esp, "--local-ts", OUR_NET, "--remote-ts", CHARON_NET,
        "--ike-versions", "ikev2",
    ]  # fmt: skip
    return args + (extra or [])


def v2_conf(kind: str = "cbc", **kw: Any) -> Any:
    ike, esp, _ = PROPOSALS[kind]
    return conf(version=2, proposals=ike, esp_proposals=esp, **kw)


def check_established(charon: Charon, ours: Emulator, kind: str) -> dict[str, Any]:
    sa = charon.wait_state("ESTABLISHED", 10)
    assert sa["version"] == "2"
    encr, keysize, group = PROPOSALS[kind][2]
    assert sa["encr-alg"] == encr and sa["encr-keysize"] == keysize and sa["dh-group"] == group, sa
    ev = ours.wait_event("ike_sa_established", 5)
    assert ev["spi_i"] == sa["initiator-spi"] and ev["spi_r"] == sa["responder-spi"]
    ours.wait_event("tunnel_up", 5)
    children = wait_until(lambda: (charon.list_sas().get("vpn") or {}).get("child-sas"), 5, "charon CHILD_SA")
    child = next(iter(children.values()))
    assert child["state"] == "INSTALLED" and child["encap"] == "yes", child
    our_child = ours.wait_event("child_sa_established", 5)
    assert {our_child["spi_in"], our_child["spi_out"]} == {child["spi-in"], child["spi-out"]}
    return sa


@pytest.mark.parametrize("kind", list(PROPOSALS))
def test_charon_initiates_to_our_aws_endpoint(lab: Lab, kind: str) -> None:
    """StartupAction=add: our AWS endpoint waits; charon initiates IKE_SA_INIT + IKE_AUTH (NAT-T forced by
    charon's encap=yes, so IKE_AUTH floats to 4500 with the non-ESP marker)."""
    ours = lab.start_emulator(v2_args("aws", kind))
    charon = lab.start_charon(v2_conf(kind, start_action="start"))
    sa = check_established(charon, ours, kind)
    assert sa["initiator"] == "yes"
    assert sa["remote-port"] == "4500"


@pytest.mark.parametrize("kind", list(PROPOSALS))
def test_our_aws_endpoint_starts(lab: Lab, kind: str) -> None:
    """StartupAction=start: the AWS endpoint initiates (IKEv2 only); charon only responds."""
    charon = lab.start_charon(v2_conf(kind, start_action="none"))
    ours = lab.start_emulator(v2_args("aws", kind, ["--startup-action", "start", "--force-encap"]))
    sa = check_established(charon, ours, kind)
    assert sa.get("initiator") != "yes"
    ev = ours.wait_event("ike_sa_established")
    assert ev["initiator"] is True


def _check_liveness_capture(cap: Path, keys: Path) -> None:
    """tshark decrypts every INFORMATIONAL with our key table to an empty SK payload, from both sides;
    integrity checksums correct; nothing malformed."""
    rows = tshark_fields(
        cap, ["ip.src", "isakmp.nextpayload", "isakmp.enc.icd"], "isakmp.exchangetype==37", keys_dir=keys
    )
    assert len(rows) >= 4
    assert {r[0] for r in rows} == {OUR_IP, CHARON_IP}
    assert tshark_count(cap, "_ws.malformed", keys_dir=keys) == 0
    assert tshark_count(cap, "isakmp.exchangetype==37 && isakmp.enc.decrypted", keys_dir=keys) == len(rows)
    assert tshark_count(cap, "isakmp.ikev2.integrity_checksum", keys_dir=keys) == 0  # "incorrect" expert info


def test_liveness_charon_probes_we_answer(lab: Lab) -> None:
    """charon (dpd_delay 1 s) sends empty INFORMATIONAL requests; we answer each (our own checks are 10 s away
    and never due, since every probe is inbound traffic)."""
    cap = lab.start_capture()
    charon = lab.start_charon(v2_conf("cbc", start_action="start", dpd_delay="1s"))
    ours = lab.start_emulator(v2_args("aws", "cbc", ["--dpd-delay", "10", "--dpd-interval", "10"]))
    check_established(charon, ours, "cbc")
    wait_until(lambda: len(ours.events("dpd_ack_sent")) >= 2, 10, "two liveness requests answered by us")
    charon.wait_log(r"parsed INFORMATIONAL response \d+ \[ \]", 3)
    cap.stop()
    got = [e["message_id"] for e in ours.events("dpd_request_received")]
    assert got[:2] == [e["message_id"] for e in ours.events("dpd_ack_sent")][:2]
    assert got[1] == got[0] + 1
    assert not ours.events("dpd_request_sent")
    _check_liveness_capture(cap.path, ours.keys_dir)


def test_liveness_we_probe_charon_answers(lab: Lab) -> None:
    """Our CGW checks liveness after 1 s idle; charon (dpd_delay 60 s) answers each empty request."""
    cap = lab.start_capture()
    charon = lab.start_charon(v2_conf("cbc", start_action="none", dpd_delay="60s"))
    ours = lab.start_emulator(v2_args("cgw", "cbc", ["--dpd-delay", "1", "--dpd-interval", "1"]))
    check_established(charon, ours, "cbc")
    wait_until(lambda: len(ours.events("dpd_ack_received")) >= 2, 10, "two liveness responses from charon")
    cap.stop()
    sent = [e["message_id"] for e in ours.events("dpd_request_sent")]
    acked = [e["message_id"] for e in ours.events("dpd_ack_received")]
    assert acked[:2] == sent[:2] and sent[1] == sent[0] + 1
    log = charon.log()
    assert "parsed INFORMATIONAL request" in log and "sending DPD request" not in log
    _check_liveness_capture(cap.path, ours.keys_dir)


def test_our_peer_killed_charon_dpd_action(lab: Lab) -> None:
    """kill -9 of our peer: charon's liveness check goes unanswered; after its retransmit budget (1.0 * 1.4**n,
    3 tries, about 7.1 s) it gives up and applies dpd_action=clear."""
    charon = lab.start_charon(v2_conf("cbc", start_action="start", dpd_delay="1s", dpd_action="clear"))
    ours = lab.start_emulator(v2_args("aws", "cbc", ["--dpd-delay", "30", "--dpd-interval", "30"]))
    check_established(charon, ours, "cbc")
    ours.kill()
    t0 = time.monotonic()
    charon.wait_log(r"giving up after 3 retransmits", 15)
    charon.wait_down(5)
    assert 6.0 < time.monotonic() - t0 < 13.0


def _dead_lab(tmp: Path, name: str, args: list[str]) -> tuple[Lab, Charon, Emulator]:
    lab = Lab(tmp / name).setup()
    charon = lab.start_charon(v2_conf("cbc", start_action="none", dpd_delay="60s"))
    ours = lab.start_emulator(args)
    return lab, charon, ours


def test_charon_killed_our_timeouts_and_restart(tmp_path: Path) -> None:
    """kill -9 of charon, side by side:
    * our AWS endpoint (clear, DPDTimeoutSeconds 30, probes every 2 s): dead at last inbound + 30 s, "DPD timed
      out after N retransmits", tunnel down, routes withdrawn;
    * our CGW (strongSwan model, restart, retransmits 1.0 * 1.4**n x3): dead at the probe + 7.1 s; it restarts
      with backoff and re-establishes once charon is back."""
    require_tools()
    labs: dict[str, tuple[Lab, Charon, Emulator]] = {}
    try:
        labs["aws"] = _dead_lab(tmp_path, "aws", v2_args("aws", "cbc", [
            "--startup-action", "start", "--force-encap", "--dpd-timeout-seconds", "30", "--dpd-timeout-action",
            "clear", "--dpd-delay", "2", "--dpd-interval", "2"]))  # fmt: skip
        labs["cgw"] = _dead_lab(tmp_path, "cgw", v2_args("cgw", "cbc", [
            "--dpd-timeout-action", "restart", "--dpd-delay", "2", "--retransmit-timeout", "1",
            "--retransmit-base", "1.4", "--retransmit-tries", "3"]))  # fmt: skip
        for _, charon, ours in labs.values():
            check_established(charon, ours, "cbc")
        time.sleep(1.0)
        for _, charon, _ in labs.values():
            charon.kill()
        # AWS endpoint: dead at last inbound + 30 s.
        _, _, aws = labs["aws"]
        ev = aws.wait_event("dpd_timeout", 40)
        assert ev["action"] == "clear" and ev["model"] == "aws"
        last_in = max(t for t, src, *_ in aws.datagrams() if src == CHARON_IP and t < ev["t"])
        assert abs(ev["t"] - (last_in + 30.0)) < 0.5, (ev, last_in)
        log = aws.wait_event("aws_log", 3, after=ev["t"] - 0.01)
        assert log["message"] == f"AWS tunnel DPD timed out after {ev['retransmits']} retransmits"
        aws.wait_event("tunnel_down", 3, after=ev["t"] - 0.01)
        aws.wait_event("routes_withdrawn", 3, after=ev["t"] - 0.01)
        # CGW: strongSwan model, dead when the budget is spent (first probe + 1 + 1.4 + 1.96 + 2.744 s).
        lab, charon, cgw = labs["cgw"]
        ev2 = cgw.wait_event("dpd_timeout", 20)
        assert ev2["action"] == "restart" and ev2["model"] == "strongswan" and ev2["retransmits"] == 3
        probes = [e for e in cgw.events("dpd_request_sent") if e["attempt"] == 1]
        first = max(e["t"] for e in probes if e["t"] < ev2["t"])
        assert abs(ev2["t"] - (first + 7.104)) < 0.5, (ev2, first)
        sched = cgw.wait_event("restart_scheduled", 3, after=ev2["t"] - 0.01)
        charon.restart(v2_conf("cbc", start_action="none", dpd_delay="60s"))
        up = cgw.wait_event("tunnel_up", 30, after=ev2["t"])
        assert up["t"] >= sched["at"]
        charon.wait_state("ESTABLISHED", 5)
    finally:
        for lab, _, _ in labs.values():
            lab.cleanup()


def test_charon_child_rekey_accepted(lab: Lab) -> None:
    """charon rekeys the CHILD_SA (CREATE_CHILD_SA with REKEY_SA and PFS); we answer, charon deletes the old
    SA, and both agree on the new SPIs."""
    charon = lab.start_charon(v2_conf("cbc", start_action="start", dpd_delay="60s"))
    ours = lab.start_emulator(v2_args("aws", "cbc"))
    check_established(charon, ours, "cbc")
    old = next(iter(charon.list_sas()["vpn"]["child-sas"].values()))
    res = charon.swanctl("--rekey", "--child", "tun1")
    assert res.returncode == 0, res.stderr
    done = ours.wait_event("rekey_done", 10, sa="child")
    assert done.get("initiator") is False
    ours.wait_event("delete_received", 5, protocol="esp")

    def new_child() -> dict[str, Any] | None:
        kids = (charon.list_sas().get("vpn") or {}).get("child-sas") or {}
        live = [c for c in kids.values() if c.get("state") == "INSTALLED" and c["spi-in"] != old["spi-in"]]
        return live[0] if len(kids) == 1 and live else None

    child = wait_until(new_child, 10, "charon's rekeyed CHILD_SA alone")
    assert child["dh-group"] == "MODP_2048"  # PFS
    ev = ours.events("child_sa_established")[-1]
    assert {ev["spi_in"], ev["spi_out"]} == {child["spi-in"], child["spi-out"]}
    assert ours.events("tunnel_down") == []
