"""The AWS endpoint with an emulated network behind it (``awsnetemu vpn --role aws --topology``), driven in virtual
time by our own CGW: ICMP, UDP and TCP echo cross the tunnel encrypted, reach the VPC hosts through the TGW's VPN
attachment, and the answers come back on the tunnel; the attachment's routes follow the tunnel."""

from __future__ import annotations

import functools
import os
import random
import struct
from typing import Any

import pytest

from cgw_peer.connection.hosts import TCP_ACK, TCP_PSH, TCP_SYN
from cgw_peer.connection.packets import icmp4, ip_bytes, parse4, tcp4, udp4
from cgw_peer.peer import create_peer
from cgw_peer.tunnel_endpoint import TunnelEndpoint
from emulator.errors import ConfigError
from emulator.simnet import SimNetwork
from emulator.vpn_site import AwsSite, load_site_dataplane

from .helpers import AWS_IP, CGW_IP, configs

TOPOLOGY = os.path.join(os.path.dirname(__file__), "..", "realpeer", "vpc_behind_aws.yaml")
ONPREM = "10.2.0.1"


def _net(version: int, esp: str, encap: bool) -> tuple[SimNetwork, AwsSite, TunnelEndpoint]:
    acfg, ccfg = configs(version, esp, encap=encap)
    dp, att, tunnel = load_site_dataplane(TOPOLOGY, None, None)
    a = create_peer(acfg, local=(AWS_IP, 500), remote=(CGW_IP, 500), rng=random.Random(1))
    c = create_peer(ccfg, local=(CGW_IP, 500), remote=(AWS_IP, 500), rng=random.Random(2))
    site = AwsSite(TunnelEndpoint(a, rng=random.Random(3)), dp, att, tunnel)
    cgw = TunnelEndpoint(c, rng=random.Random(4))
    net = SimNetwork(seed=1)
    net.add_node("aws", site, [AWS_IP])
    net.add_node("cgw", cgw, [CGW_IP])
    return net, site, cgw


@pytest.mark.parametrize(("version", "esp", "encap"), [(1, "aes128-sha1", True), (2, "aes256gcm16", False)])
def test_echo_through_the_tunnel_and_the_tgw(version: int, esp: str, encap: bool) -> None:
    net, site, cgw = _net(version, esp, encap)
    routes = []
    net.on_event(lambda r: routes.append((r.t, r.fields["up"])) if r.event == "tgw_routes_changed" else None)
    net.start_all()
    net.run_until(2)
    assert [up for _t, up in routes] == [True]
    s, d1, d2 = ip_bytes(ONPREM), ip_bytes("10.1.0.10"), ip_bytes("10.1.1.20")
    ping = icmp4(s, d1, 8, 0x1234, 1, b"abcdefgh")
    udp = udp4(s, d2, 40000, 7, b"udp-echo")
    syn = tcp4(s, d1, 50000, 22, 1000, 0, TCP_SYN)
    for p in (ping, udp, syn):
        net.call("cgw", functools.partial(cgw.send, p))
    net.run_until(3)
    got = cgw.take_received()
    assert len(got) == 3
    by_proto: dict[int, Any] = {}
    for g in got:
        ip = parse4(g)
        assert ip is not None
        by_proto[ip.proto] = (ip, g)
    ip, g = by_proto[1]
    assert ip.src == d1 and ip.dst == s and g[ip.start] == 0 and g[ip.start + 8 :] == b"abcdefgh"
    assert ip.ttl == 63  # the TGW decremented it on the way back
    ip, g = by_proto[17]
    assert ip.src == d2 and g[ip.start + 8 :] == b"udp-echo"
    ip, g = by_proto[6]
    seq, ack, _off, flags = struct.unpack_from("!IIBB", g, ip.start + 4)
    assert flags == TCP_SYN | TCP_ACK and ack == 1001
    # The TCP conversation goes on: data is echoed.
    net.call("cgw", functools.partial(cgw.send, tcp4(s, d1, 50000, 22, 1001, seq + 1, TCP_ACK | TCP_PSH, b"hi")))
    net.run_until(4)
    (echo,) = cgw.take_received()
    ip2 = parse4(echo)
    assert ip2 is not None and echo[ip2.start + 20 :] == b"hi"
    assert site.answered == 4 and site.drops == {}
    # The tunnel goes down: the routes leave the TGW, and nothing more is answered.
    net.call("cgw", cgw.close)
    net.run_until(5)
    assert routes[-1][1] is False


def test_packets_for_nowhere_are_dropped_by_the_tgw() -> None:
    net, site, cgw = _net(1, "aes128-sha1", True)
    net.start_all()
    net.run_until(2)
    net.call("cgw", functools.partial(cgw.send, icmp4(ip_bytes(ONPREM), ip_bytes("10.9.0.1"), 8, 1, 1, b"")))
    net.run_until(3)
    assert cgw.take_received() == [] and site.drops == {"no_route": 1}


def test_topology_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="attachment: no VPN attachment 'tgw-attach-lab'"):
        load_site_dataplane(TOPOLOGY, "tgw-attach-lab", None)
    with pytest.raises(ConfigError, match="tunnel: tgw-attach-vpn has no tunnel 'tunnel9'"):
        load_site_dataplane(TOPOLOGY, "tgw-attach-vpn", "tunnel9")
    with pytest.raises(ConfigError, match="topology:"):
        load_site_dataplane("/nonexistent.yaml", None, None)


def test_vpn_check_with_topology(capsys: Any) -> None:
    from emulator.cli import main

    argv = ["vpn", "--role", "aws", "--local", "127.0.0.1", "--remote", "127.0.0.2", "--psk", "abcdefgh.123"]
    assert main([*argv, "--topology", TOPOLOGY, "--check"]) == 0
    assert "tgw-attach-vpn/tunnel1 of" in capsys.readouterr().out
    assert main([*argv, "--topology", TOPOLOGY, "--tunnel", "x", "--check"]) == 2
    assert main([*argv, "--attachment", "tgw-attach-vpn", "--check"]) == 2
    cgw = ["vpn", "--role", "cgw", "--local", "127.0.0.1", "--remote", "127.0.0.2", "--psk", "abcdefgh.123"]
    assert main([*cgw, "--topology", TOPOLOGY, "--check"]) == 2
    err = capsys.readouterr().err
    assert "tunnel: tgw-attach-vpn has no tunnel 'x'" in err and "attachment: only with --topology" in err
    assert "only with --role aws" in err
