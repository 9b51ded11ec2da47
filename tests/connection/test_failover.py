"""Traffic through a two-tunnel connection in virtual time: the packets lost on failover are exactly those the
timeline says (sent between the silence and the moment the TGW stops using the dead tunnel, on that tunnel), for
each DPDTimeoutAction, both IKE versions, several rates and path delays; nothing else is lost."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

from emulator.connection import ConnectionScenario
from emulator.scenario import Scenario

TOPOLOGY = os.path.join(
    os.path.dirname(__file__), "..", "..", "emulator", "scenarios", "topologies", "connection-tgw.yaml"
)


def scenario(
    *,
    version: int = 1,
    action: str = "clear",
    rate: float = 20.0,
    delay: float = 0.01,
    crash: float = 60.001,
    revive: float | None = 120.0,
    duration: float = 150.0,
    seed: int = 1,
    routing: str = "static",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    v = f"ikev{version}"
    doc: dict[str, Any] = {
        "name": "t",
        "seed": seed,
        "duration": duration,
        "ike_version": version,
        "connection": {
            "topology": os.path.abspath(TOPOLOGY),
            "attachment": "tgw-attach-vpn",
            "routing": routing,
            "tunnel": {"IKEVersions": [v], "DPDTimeoutSeconds": 30, "DPDTimeoutAction": action},
            "cgw": {"hosts": ["192.168.10.5"]},
            "links": {
                "tunnel1": {"cgw->aws": {"delay": delay}, "aws->cgw": {"delay": delay}},
                "tunnel2": {"cgw->aws": {"delay": delay}, "aws->cgw": {"delay": delay}},
            },
        },
        "flows": [
            # Send instants offset from every timer instant of the run (0.0013 s), so no tie needs a rule.
            {"name": "down", "from": "i-app", "to": "192.168.10.5", "rate": rate, "start": 5.0013, "until": 140},
            {"name": "up", "from": "192.168.10.5", "to": "i-app", "rate": rate, "start": 5.0, "until": 140},
        ],
        "schedule": [{"at": crash, "do": "crash", "node": "cgw1"}],
    }
    if revive is not None:
        # With restart AWS calls the CGW back; otherwise the CGW initiates when it returns.
        doc["schedule"].append({"at": revive, "do": "revive", "node": "cgw1", "initiate": action != "restart"})
    doc.update(extra or {})
    return doc


def run(doc: dict[str, Any]) -> tuple[ConnectionScenario, list[Any]]:
    sc = Scenario.from_mapping(doc)
    assert isinstance(sc, ConnectionScenario)
    res = sc.run()
    return sc, list(res.trace)


def summary(trace: list[Any], name: str) -> dict[str, Any]:
    (s,) = [r.fields for r in trace if r.event == "flow_summary" and r.fields["name"] == name]
    return dict(s)


def send_times(flow: dict[str, Any], duration: float) -> list[float]:
    n = math.floor((min(flow["until"], duration) - flow["start"]) * flow["rate"] + 1e-9) + 1
    return [flow["start"] + k / flow["rate"] for k in range(n)]


CASES = [
    (1, "clear", 20.0, 0.01),
    (1, "clear", 50.0, 0.05),
    (2, "clear", 20.0, 0.01),
    (1, "none", 20.0, 0.01),
    (2, "none", 25.0, 0.02),
    (1, "restart", 20.0, 0.01),
    (2, "restart", 20.0, 0.03),
]


@pytest.mark.parametrize(("version", "action", "rate", "delay"), CASES)
def test_failover_loss_is_what_the_timeline_predicts(version: int, action: str, rate: float, delay: float) -> None:
    crash = 60.001
    doc = scenario(version=version, action=action, rate=rate, delay=delay, crash=crash)
    sc, trace = run(doc)
    # From the timeline: when AWS declared the CGW dead, and when the TGW stopped using tunnel1.
    (timeout,) = [r for r in trace if r.event == "dpd_timeout" and r.node == "aws1"]
    assert timeout.fields["action"] == action
    # The TGW stops sending into the dead tunnel when its routes leave it, or when AWS has a new SA pair with
    # the returning CGW (IKEv2's INITIAL_CONTACT replaces the SAs without taking the tunnel down).
    withdrawn = [r.t for r in trace if r.event == "tgw_routes_changed" and r.fields == {
        "attachment": "tgw-attach-vpn", "tunnel": "tunnel1", "up": False} and r.t > crash]  # fmt: skip
    renewed = [r.t for r in trace if r.event == "child_sa_established" and r.node == "aws1" and r.t > crash]
    end = min(withdrawn + renewed)
    if action == "none":
        # The routes stay: tunnel1 is blackholed until the CGW comes back at 120 with new SAs.
        assert not [t for t in withdrawn if t < 120] and 120 < end < 121
    else:
        assert end == withdrawn[0] == timeout.t  # the routes leave at the DPD timeout itself
    # The prediction: packets the VPC sent that reached the dead process's side after it died, and that the
    # TGW routed into tunnel1, i.e. sent in [crash - delay, end).
    flow = doc["flows"][0]
    lost = [t for t in send_times(flow, sc.duration) if crash - delay <= t < end]
    down_sum = summary(trace, "down")
    assert down_sum["lost"] == len(lost) > 0
    assert down_sum["drops"] == {"in_transit": len(lost)}
    assert down_sum["outages"] == 1
    (outage,) = [r.fields for r in trace if r.event == "flow_outage" and r.fields["name"] == "down"]
    assert outage["start"] == pytest.approx(lost[0]) and outage["lost"] == len(lost)
    # The CGW's own traffic moved to tunnel2 when its tunnel-1 process died (what it had sent still arrives).
    up = summary(trace, "up")
    assert up["lost"] == 0
    assert up["via"]["cgw:tunnel2"] > 0
    # Everything the TGW sent into tunnel1 after the routes left it went to tunnel2 and arrived.
    site = sc.site
    assert site is not None
    assert site.flows[0].delivered == site.flows[0].sent - len(lost)


def test_without_failure_nothing_is_lost_and_tunnel2_idles() -> None:
    doc = scenario(revive=None)
    doc["schedule"] = []
    _sc, trace = run(doc)
    for name in ("down", "up"):
        s = summary(trace, name)
        assert s["lost"] == 0 and s["outages"] == 0 and s["time_to_recover"] == 0
        assert set(s["via"]) == {"aws:tunnel1" if name == "down" else "cgw:tunnel1"}
    states = [r.fields for r in trace if r.event == "tunnel_metrics"]
    assert {s["tunnel"] for s in states} == {"tunnel1", "tunnel2"}
    assert all(s["tunnel_state"] == 1 for s in states)
    t2 = [s for s in states if s["tunnel"] == "tunnel2"]
    assert all(s["tunnel_data_in"] == 0 and s["tunnel_data_out"] == 0 for s in t2)


def test_tunnel_data_metrics_count_inner_octets() -> None:
    doc = scenario(revive=None, extra={"metrics_period": 10})
    doc["schedule"] = []
    sc, trace = run(doc)
    m = [r.fields for r in trace if r.event == "tunnel_metrics" and r.fields["tunnel"] == "tunnel1"]
    # 20 packets/s of 100 octets each way (the flows' default size), in every full period of traffic.
    full = [x for x in m if x["start"] >= 10 and x["start"] + 10 <= 140]
    assert full and all(x["tunnel_data_in"] == x["tunnel_data_out"] == 20 * 10 * 100 for x in full)
    assert sum(x["tunnel_data_out"] for x in m) == sc.site.nodes["aws1"].tunnel.endpoint.counters["esp_out_octets"]  # type: ignore[union-attr]


def test_corrupted_esp_is_dropped_and_only_those_packets_are_lost() -> None:
    """A path that flips one bit in 5 % of the packets: each flipped ESP packet fails its ICV (or is an unknown
    SPI) at the receiving end and is counted there; the flow loses exactly those."""
    doc = scenario(revive=None, extra={"duration": 60})
    doc["schedule"] = []
    doc["flows"] = [dict(doc["flows"][0], until=50)]
    doc["connection"]["links"]["tunnel1"]["aws->cgw"] = {"delay": 0.01, "corrupt": 0.05}
    sc, trace = run(doc)
    site = sc.site
    assert site is not None
    counters = site.nodes["cgw1"].tunnel.endpoint.counters
    esp_drops = sum(v for k, v in counters.items() if k.startswith("dropped:esp_"))
    s = summary(trace, "down")
    assert s["lost"] == esp_drops > 10
    assert counters["dropped:esp_bad_icv"] > 0
    esp = ("esp_bad_icv", "esp_unknown_spi", "esp_replay", "esp_outside_window")
    assert not [k for k in counters if k.startswith("dropped:") and k.removeprefix("dropped:") not in esp]


def test_per_tunnel_limits_drop_what_exceeds_them() -> None:
    """AWS's per-tunnel limits, scaled down to be reachable (100 packets/s): a 150 packets/s flow loses a third,
    counted under the limit's reason at the AWS endpoint, in both directions."""
    doc = scenario(revive=None, rate=150.0, extra={"duration": 30})
    doc["schedule"] = []
    doc["connection"]["limits"] = {"tunnel": True, "tunnel_pps": 100}
    doc["flows"] = [dict(f, until=25) for f in doc["flows"]]
    _sc, trace = run(doc)
    for flow in doc["flows"]:
        s = summary(trace, flow["name"])
        assert s["sent"] == len(send_times(flow, 30)) > 2999
        # 10 ms of burst (one packet) on top of 100 packets/s over 20 s.
        assert s["delivered"] == pytest.approx(100 * 20, abs=3)
        assert set(s["drops"]) == {"tunnel_pps_exceeded"} and s["drops"]["tunnel_pps_exceeded"] == s["lost"]
