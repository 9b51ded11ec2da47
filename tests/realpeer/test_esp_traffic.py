"""Real ESP through a real tunnel: strongSwan charon (kernel-libipsec, ESP in UDP 4500: this kernel has no ESP,
real-peers.md §1) is the customer gateway, our AWS endpoint runs ``awsnetemu vpn --role aws --topology`` with an
emulated VPC behind a TGW. ``ping`` from charon's namespace reaches an emulated VPC host and gets its replies;
UDP and TCP echo too (Linux's own TCP stack against our echo host). IKEv1 and IKEv2, AES-CBC/HMAC and AES-GCM.

Oracles: ping's own count, charon's SA byte counters (vici), and tshark decrypting both directions of the ESP
captured on the veth with the ``esp_sa`` table our peer wrote (``--keys``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.realpeer.harness import Lab, conf, emulator_args, tshark_fields, wait_until
from tests.tools import require_tool

pytestmark = pytest.mark.realpeer

TOPOLOGY = str(Path(__file__).with_name("vpc_behind_aws.yaml"))
HOST = "10.1.0.10"
SRC = "10.2.0.1"

UDP_ECHO = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.2.0.1', 0)); s.settimeout(5); "
    "s.sendto(b'udp-through-esp', ('10.1.0.10', 7)); print(s.recv(100).decode())"
)
TCP_ECHO = (
    "import socket; s = socket.create_connection(('10.1.0.10', 7), timeout=5, source_address=('10.2.0.1', 0)); "
    "s.sendall(b'tcp-through-esp'); print(s.recv(100).decode()); s.close()"
)

CASES = [
    (1, "aes128-sha1-modp2048"),
    (1, "aes128gcm16-modp2048"),
    (2, "aes256-sha256-modp2048"),
    (2, "aes256gcm16-modp2048"),
]


@pytest.mark.parametrize(("version", "esp"), CASES, ids=[f"ikev{v}-{e.split('-')[0]}" for v, e in CASES])
def test_ping_reaches_the_emulated_vpc_through_real_esp(lab: Lab, version: int, esp: str) -> None:
    ping_tool = require_tool("ping")  # iputils-ping (.ci/system-deps.sh)
    cap = lab.start_capture("esp", side="ours")
    emu = lab.start_emulator(
        emulator_args(
            "aws",
            proposal="aes128-sha1-modp2048",
            esp_proposal=esp,
            version=version,
            extra=["--topology", TOPOLOGY, "--attachment", "tgw-attach-vpn"],
        )
    )
    charon = lab.start_charon(
        conf(version=version, proposals="aes128-sha1-modp2048", esp_proposals=esp, start_action="start")
    )
    # Generous bounds: the handshake takes about 0.2 s here; a loaded machine may take seconds.
    wait_until(lambda: charon.child_state() == "INSTALLED", 30, "charon's CHILD_SA installed")
    emu.wait_event("tgw_routes_changed", 30, up=True)
    # kernel-libipsec's TUN device carries the tunnel; with install_routes = no the route is ours to add.
    r = lab.run_in("charon", ["ip", "route", "add", "10.1.0.0/24", "dev", "ipsec0", "src", SRC])
    assert r.returncode == 0, r.stderr
    ping = lab.run_in("charon", [ping_tool, "-n", "-c", "3", "-i", "0.2", "-W", "5", "-I", SRC, HOST], timeout=60)
    assert ping.returncode == 0 and "3 received" in ping.stdout, ping.stdout + ping.stderr
    udp = lab.run_in("charon", ["python3", "-c", UDP_ECHO], timeout=60)
    assert udp.stdout.strip() == "udp-through-esp", udp.stderr
    tcp = lab.run_in("charon", ["python3", "-c", TCP_ECHO], timeout=60)
    assert tcp.stdout.strip() == "tcp-through-esp", tcp.stderr
    # charon counted ESP both ways on its CHILD_SA.
    sa = charon.list_sas()["vpn"]
    child = next(iter(sa["child-sas"].values()))
    assert int(child["packets-in"]) >= 3 and int(child["packets-out"]) >= 3
    assert child["encap"] == "yes"
    pcap = cap.stop()
    # Our esp_sa table decrypts both directions: the echo requests charon encrypted, the replies we encrypted.
    keys = emu.keys_dir
    assert os.path.exists(keys / "esp_sa")
    rows = tshark_fields(pcap, ["ip.src", "ip.dst", "icmp.type"], "esp && icmp", keys_dir=keys)
    inner = [(r[0].split(",")[-1], r[1].split(",")[-1], r[2]) for r in rows]
    assert inner.count((SRC, HOST, "8")) == 3 and inner.count((HOST, SRC, "0")) == 3, inner
    udp_rows = tshark_fields(pcap, ["udp.payload"], "esp && udp.port == 7", keys_dir=keys)
    assert len(udp_rows) == 2
    tcp_rows = tshark_fields(pcap, ["tcp.payload"], "esp && tcp.port == 7 && tcp.len > 0", keys_dir=keys)
    assert len(tcp_rows) >= 2
    assert tshark_fields(pcap, ["frame.number"], "_ws.malformed", keys_dir=keys) == []
    assert emu.stop() == 0
