"""Every input of ``awsnetemu tgw`` (issue 13), generated and mutated by hypothesis, run through the real command
in-process (``emulator.cli.main``): topology YAML, AWS API JSON, flow strings, pcap bytes and whole argument
vectors. Whatever the input, the outcome is exit 0, 1 or 2 within a time bound: never a traceback, never a
hang. Exit 2 always comes with one ``configuration error`` line (or argparse's usage line).

Hypothesis settings: ``FUZZ`` below (bounded examples; derandomized in CI so a CI run is reproducible;
``HYPOTHESIS_TGW_EXAMPLES`` raises the count for a long local run)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.cli import main
from tests.tgw.conftest import FIXTURES
from tests.tools import in_ci
from tgw_dataplane.craft import build
from tgw_dataplane.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN

EXAMPLES = int(os.environ.get("HYPOTHESIS_TGW_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the bound is ours (BOUND, per example), not hypothesis's per-call timing
    derandomize=in_ci(),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BOUND = 20.0
"""Seconds one command may take on any input here (the largest, a fixture topology with a 200-packet capture,
takes well under one on this machine)."""
SEED = str(FIXTURES / "seed.yaml")
FLOW = "tcp 10.0.1.10:40000 > 10.1.2.20:443"
YAML_FIXTURES = sorted(FIXTURES.glob("*.yaml"))
AWS_JSON = FIXTURES / "aws" / "seed-aws.json"
pytestmark = pytest.mark.timeout(300)  # a hang fails the file instead of stalling the run


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``awsnetemu ARGV`` in-process: (exit status, stdout, stderr). argparse's exits become statuses; any other
    exception propagates and fails the test (that is a traceback a user would see)."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    took = time.monotonic() - t0
    assert took < BOUND, (argv, took)
    assert rc in (0, 1, 2), (argv, rc, err.getvalue())
    assert "Traceback" not in err.getvalue()
    if rc == 2:
        lines = err.getvalue().strip().splitlines()
        assert lines, argv
        assert "configuration error" in lines[-1] or "error:" in lines[-1], err.getvalue()
    return rc, out.getvalue(), err.getvalue()


# -- mutation of nested documents ------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 65536, 2**32, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "10.0.0.0/33",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::/0",
            "2001:db8::/129",
            "10.0.1.10",
            "subnet-a1",
            "vpc-a",
            "tgw-1",
            "tgw-attach-a",
            "tgw-attach-c",
            "i-fw1",
            "eni-fw1",
            "enable",
            "disable",
            "blackhole",
            "local",
            "us-east-1",
            "us-east-1a",
            "eu-west-1",
            "use1-az1",
            "peering",
            "vpn",
            "vpc",
            "propagated",
            "static",
            "yes",
            "no",
            "nan",
            "inf",
            "1e400",
        ]
    ),
)
JUNK: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def mutate(data: st.DataObject, doc: Any, junk: st.SearchStrategy[Any] = JUNK) -> Any:
    """1-4 random edits of ``doc`` (a deep copy): replace a value, delete a key or item, add an unknown key,
    copy one subtree over another (same-shaped but inconsistent references), or swap in another fixture's."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return data.draw(junk)
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = data.draw(st.sampled_from(["set", "set", "del", "add", "copy"]), label="op")
        if op == "set":
            parent[path[-1]] = data.draw(junk, label="value")
        elif op == "del":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=10), label="key")] = data.draw(junk, label="value")
        elif op == "copy":
            src = data.draw(st.sampled_from(paths), label="from")
            node = doc
            try:
                for k in src:
                    node = node[k]
            except (KeyError, IndexError, TypeError):
                continue
            parent[path[-1]] = copy.deepcopy(node)
    return doc


def _write(tmp: str, name: str, text: str | bytes) -> str:
    p = Path(tmp) / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return str(p)


_YAML_DOCS = {p.name: yaml.safe_load(p.read_text()) for p in YAML_FIXTURES}


def _trace_topology(tmp: str, path: str) -> None:
    rc, _out, _err = run_cli(["tgw", "trace", path, "--flow", FLOW])
    if rc == 0:  # a topology that loads: the reverse direction and the JSON output work too
        run_cli(["tgw", "trace", path, "--flow", "udp 10.0.1.10:5000 > 10.1.2.20:53", "--json"])


# -- topology YAML ---------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_mutated_yaml_topologies(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_YAML_DOCS)), label="fixture")
    doc = mutate(data, _YAML_DOCS[name])
    with tempfile.TemporaryDirectory() as tmp:
        _trace_topology(tmp, _write(tmp, "t.yaml", yaml.safe_dump(doc)))


@FUZZ
@given(
    doc=JUNK,
    raw=st.one_of(st.text(max_size=200), st.binary(max_size=200), st.binary(max_size=50).map(lambda b: b"{" + b)),
)
def test_arbitrary_yaml_documents(doc: Any, raw: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _trace_topology(tmp, _write(tmp, "a.yaml", yaml.safe_dump(doc)))
        _trace_topology(tmp, _write(tmp, "b.yaml", raw))


# -- AWS API JSON ----------------------------------------------------------------------------------------------

_AWS_DOC = json.loads(AWS_JSON.read_text())


@FUZZ
@given(data=st.data())
def test_mutated_aws_json_topologies(data: st.DataObject) -> None:
    doc = mutate(data, _AWS_DOC)
    text = json.dumps(doc)  # NaN and Infinity become the tokens Python's json reads back
    if data.draw(st.booleans(), label="cut"):
        text = text[: data.draw(st.integers(1, max(1, len(text))), label="at")]
    with tempfile.TemporaryDirectory() as tmp:
        _trace_topology(tmp, _write(tmp, "t.json", text))


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(sorted(_AWS_DOC)), JUNK, max_size=4))
def test_arbitrary_aws_json_documents(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _trace_topology(tmp, _write(tmp, "a.json", json.dumps(doc)))


# -- flow strings ----------------------------------------------------------------------------------------------

_ADDRS = st.one_of(
    st.sampled_from(["10.0.1.10", "10.1.2.20", "10.9.9.9", "2001:db8:a:1::10", "[2001:db8:a:1::10]", "::1"]),
    st.sampled_from(["256.1.1.1", "10.0.1", "a.b.c.d", "", "[::1", "10.0.1.10.5", "0x0a000001", "[10.0.1.10]"]),
    st.ip_addresses().map(str),
    st.text(max_size=6),
)
_PORTS = st.one_of(st.integers(-5, 70000), st.sampled_from([0, 65535, 65536, 99999999999]), st.text(max_size=4))


@st.composite
def flow_strings(draw: st.DrawFn) -> str:
    proto = draw(st.sampled_from(["tcp", "udp", "icmp", "TCP", "sctp", "gre", "", "icmpv6"]))
    parts = [proto, " "]
    for i, a in enumerate((draw(_ADDRS), draw(_ADDRS))):
        if i:
            parts.append(draw(st.sampled_from([" > ", ">", " -> ", " < ", " "])))
        parts.append(a)
        if draw(st.booleans()):
            parts.append(f":{draw(_PORTS)}")
    return "".join(parts)


@FUZZ
@given(flow=st.one_of(flow_strings(), st.text(max_size=40)))
def test_flow_strings(flow: str) -> None:
    rc, out, err = run_cli(["tgw", "trace", SEED, "--flow", flow, "--json"])
    if rc == 0:
        assert set(json.loads(out)) == {"forward", "reverse"}
    elif rc == 2:
        assert "--flow" in err or "address" in err or "source" in err, err


# -- pcap bytes ------------------------------------------------------------------------------------------------


def _good_pcap(n: int = 40, nano: bool = False, big: bool = False, linktype: int = 101) -> bytes:
    e = ">" if big else "<"
    out = struct.pack(e + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i in range(n):
        sp = 40000 + i % 5
        p = [
            build("10.0.1.10", "10.1.2.20", PROTO_TCP, sp, 443, flags=TCP_SYN),
            build("10.1.2.20", "10.0.1.10", PROTO_TCP, 443, sp, flags=TCP_SYN | TCP_ACK),
            build("10.0.1.10", "10.1.2.20", PROTO_UDP, sp, 53, payload=bytes(12)),
            build("10.0.1.10", "10.1.2.20", PROTO_ICMP),
            build("10.0.1.10", "10.1.2.20", PROTO_TCP, sp, 443, flags=TCP_ACK, payload=bytes(100)),
        ][i % 5]
        if linktype == 1:
            p = b"\x02" * 12 + b"\x08\x00" + p
        out += struct.pack(e + "IIII", 1_700_000_000 + i, 1000 * i, len(p), len(p)) + p
    return out


@st.composite
def pcap_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "cut", "arbitrary", "header+junk"]))
    if kind == "arbitrary":
        return draw(st.binary(max_size=300))
    base = bytearray(
        _good_pcap(
            draw(st.integers(0, 40)), draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([1, 101, 228]))
        )
    )
    if kind == "header+junk":
        return bytes(base[:24]) + draw(st.binary(max_size=300))
    if kind == "cut":
        return bytes(base[: draw(st.integers(0, len(base)))])
    for _ in range(draw(st.integers(1, 6))):
        if not base:
            break
        i = draw(st.integers(0, len(base) - 1))
        if draw(st.booleans()):
            base[i] = draw(st.integers(0, 255))
        else:  # a 32-bit field (e.g. a record length) set to something large or odd
            v = draw(st.sampled_from([0, 1, 0xFFFF, 262144, 262145, 0x7FFFFFFF, 0xFFFFFFFF]))
            base[i : i + 4] = struct.pack("<I", v)[: len(base) - i]
    return bytes(base)


@FUZZ
@given(data=pcap_bytes())
def test_pcap_inputs(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "in.pcap", data)
        rc, _out, err = run_cli(["tgw", "replay", SEED, path, "--out", str(Path(tmp) / "out")])
        if rc == 0:
            summary = json.loads((Path(tmp) / "out" / "summary.json").read_text())
            assert summary["packets"] == sum(f["packets"] for f in summary["flows"].values())
        elif rc == 2:
            assert "pcap" in err, err


# -- whole argument vectors ------------------------------------------------------------------------------------


def _tokens(tmp: str) -> list[str]:
    good = _write(tmp, "good.pcap", _good_pcap(10))
    afile = _write(tmp, "afile", "x")
    return [
        "tgw",
        "trace",
        "replay",
        "--flow",
        FLOW,
        "icmp 10.0.1.10 > 10.1.2.20",
        "--json",
        "--from",
        "--reply-from",
        "i-a",
        "i-b",
        "i-nope",
        "igw-1",
        "--appliance-mode",
        "tgw-attach-c=on",
        "tgw-attach-c=off",
        "tgw-attach-c=maybe",
        "tgw-attach-a",
        "=on",
        "tgw-attach-zz=on",
        "--out",
        str(Path(tmp) / "out"),
        afile,
        str(Path(afile) / "sub"),
        "/proc/version",
        "/nonexistent/dir",
        "",
        SEED,
        str(AWS_JSON),
        str(FIXTURES / "story_vpn_ecmp.yaml"),
        good,
        tmp,
        "-h",
        "--bogus",
        "-",
    ]


@FUZZ
@given(data=st.data())
def test_tgw_argument_vectors(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tokens = _tokens(tmp)
        head = data.draw(st.sampled_from([["tgw", "trace"], ["tgw", "replay"], ["tgw"]]), label="head")
        rest = data.draw(st.lists(st.one_of(st.sampled_from(tokens), st.text(max_size=6)), max_size=8), label="rest")
        rc, _out, _err = run_cli(head + rest)
        assert rc in (0, 2)  # nothing in tgw exits 1


# -- examples the fuzzers found or that the issue lists (kept as plain tests) ------------------------------------

BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("max_hops huge", lambda d: d.setdefault("settings", {}).update(max_hops=10**12), "settings.max_hops"),
    ("timeout inf", lambda d: d.setdefault("settings", {}).update(firewall_tcp_idle_timeout=math.inf), "finite"),
    ("timeout nan", lambda d: d.setdefault("settings", {}).update(appliance_idle_timeout=math.nan), "appliance_idle"),
    ("mtu float", lambda d: d.setdefault("settings", {}).update(vpc_mtu=1500.5), "settings.vpc_mtu"),
    ("protocols", lambda d: d.setdefault("settings", {}).update(protocols=["tcp"]), "settings.protocols"),
    ("vpn_ecmp 'no'", lambda d: d["transit_gateways"]["tgw-1"].update(vpn_ecmp="no"), "vpn_ecmp"),
    ("vpc list", lambda d: d["vpcs"].update({"vpc-a": [1]}), "vpcs.vpc-a"),
    ("subnets null", lambda d: d["vpcs"]["vpc-a"]["subnets"].update({"subnet-a1": None}), "subnet-a1"),
    ("ip junk", lambda d: d["vpcs"]["vpc-a"]["instances"]["i-a"].update(ip="x"), "vpcs.vpc-a.instances.i-a.ip"),
]


@pytest.mark.parametrize(("what", "edit", "names"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_one_line_naming_the_field(
    tmp_path: Path, what: str, edit: Callable[[dict[str, Any]], None], names: str
) -> None:
    doc = copy.deepcopy(_YAML_DOCS["seed.yaml"])
    edit(doc)
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(doc))
    rc, _out, err = run_cli(["tgw", "trace", str(p), "--flow", FLOW])
    assert rc == 2 and names in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.json", b'{"Vpcs": \xff}', "not valid JSON (UnicodeDecodeError)"),
        ("deep.json", b'{"Vpcs":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON (RecursionError)"),
        ("deep.yaml", b"a: " + b"[" * 100_000 + b"]" * 100_000, "not valid YAML (RecursionError)"),
        ("nul.yaml", b"a: \x00", "not valid YAML"),
        ("list.yaml", b"- 1\n- 2\n", "the top level must be a mapping"),
    ],
)
def test_unreadable_documents(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    rc, _out, err = run_cli(["tgw", "trace", str(p), "--flow", FLOW])
    assert rc == 2 and message in err, err
