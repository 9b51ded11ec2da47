"""Traffic through a two-tunnel VPN connection end to end, in virtual time (:mod:`emulator.connection`).

The embedded topology of the connection scenarios (spoke VPC, inspection VPC with a stateful firewall per AZ,
appliance mode, a VPN attachment with two tunnels), static routing, AES-GCM-128 ESP as IP protocol 50 (and AES-
CBC/SHA1 as a second row). Two constant-rate UDP flows of 1,000-octet packets, one each way between an instance
and an on-premises host: every packet is generated, routed by the CGW onto tunnel1 or by the TGW (through the
firewall), encrypted by one tunnel end, sent over the simulated network with a 10 ms path, decrypted at the other
end, and counted by the receiving host. The figure is packets delivered per second of this process's CPU time
for the whole run (IKE set-up and DPD included, a small part).

Baselines in the same run, for where the time goes: the ESP layer alone (encrypt + decrypt of the same packet,
as ``bench_esp``) and the TGW dataplane alone (the same packet from the VPN attachment to the instance through
the firewall). End to end pays for both, plus the scheduler, the flows' bookkeeping and the tunnel ends.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import Row, rate
from emulator.connection import ConnectionScenario
from emulator.scenario import Scenario

TOPOLOGY = os.path.join(os.path.dirname(os.path.dirname(__file__)), "emulator", "scenarios", "topologies")
SIZE = 1000


def _doc(esp: str, rate_pps: float, seconds: float) -> dict[str, Any]:
    return {
        "name": "bench",
        "seed": 1,
        "duration": seconds + 2,
        "ike_version": 2,
        "metrics_period": 60,
        "max_events": 50_000_000,
        "connection": {
            "topology": os.path.join(TOPOLOGY, "connection-tgw.yaml"),
            "attachment": "tgw-attach-vpn",
            "tunnel": {"IKEVersions": ["ikev2"]},
            "aws": {"esp_proposals": [f"{esp}-modp2048"]},
            "cgw": {"hosts": ["192.168.10.5"], "esp_proposals": [f"{esp}-modp2048"]},
            "links": {"tunnel1": {"cgw->aws": {"delay": 0.01}, "aws->cgw": {"delay": 0.01}}},
        },
        "flows": [
            {
                "name": "down",
                "from": "i-app",
                "to": "192.168.10.5",
                "rate": rate_pps,
                "size": SIZE,
                "start": 1.0,
                "until": 1.0 + seconds,
            },
            {
                "name": "up",
                "from": "192.168.10.5",
                "to": "i-app",
                "rate": rate_pps,
                "size": SIZE,
                "start": 1.0005,
                "until": 1.0 + seconds,
            },
        ],
    }


def _end_to_end(esp: str, seconds: float) -> tuple[float, int, float]:
    sc = Scenario.from_mapping(_doc(esp, 5000.0, seconds))
    assert isinstance(sc, ConnectionScenario)
    t0 = time.process_time()
    res = sc.run()
    cpu = time.process_time() - t0
    site = sc.site
    assert res.ok and site is not None
    delivered = sum(f.delivered for f in site.flows)
    sent = sum(f.sent for f in site.flows)
    assert delivered == sent, (delivered, sent)
    return delivered / cpu, delivered, cpu


def _dataplane_alone(t: float) -> float:
    from cgw_peer.connection.packets import ip_bytes, udp4
    from tgw_dataplane.dataplane import Dataplane
    from tgw_dataplane.loader import load_any

    dp = Dataplane(load_any(os.path.join(TOPOLOGY, "connection-tgw.yaml")))
    dp.set_tunnel_state("tgw-attach-vpn", "tunnel1", True)
    pkt = udp4(ip_bytes("192.168.10.5"), ip_bytes("10.0.1.10"), 40001, 5001, bytes(SIZE - 28))
    send = dp.send

    def batch() -> None:
        for _ in range(200):
            res = send(pkt, "tgw-attach-vpn", 1.0)
        assert res.verdict == "delivered"

    return max(rate(batch, t / 3) for _ in range(3)) * 200


def run(quick: bool) -> list[Row]:
    from bench.bench_esp import _esp_layer

    seconds = 4.0 if quick else 20.0
    t = 0.5 if quick else 1.5
    load = os.getloadavg()[0]
    rows: list[Row] = []
    dp = _dataplane_alone(t)
    for esp, label in (("aes128gcm16", "AES-GCM-128"), ("aes128-sha1", "AES-CBC-128/SHA1-96")):
        e2e, n, cpu = _end_to_end(esp, seconds)
        layer = _esp_layer(esp, t)
        rows.append(
            Row(
                f"two-tunnel connection end to end, {label}, packets/s",
                e2e,
                "packets/s",
                note=f"{n:,} packets of {SIZE} octets delivered in {cpu:.2f} s CPU (both directions, through the "
                f"firewall); load {load:.2f}",
            )
        )
        rows.append(Row(f"  baseline: ESP layer alone, {label} (encrypt + decrypt)", layer, "packets/s"))
    rows.append(Row("  baseline: TGW dataplane alone, VPN attachment -> instance via the firewall", dp, "packets/s"))
    return rows
