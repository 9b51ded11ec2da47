"""Issue 13, CLI argument vectors for ``awsnetemu run``, ``vpn`` and ``demo``: arbitrary flags (every option the
parser has, from its own definition) with valid, near-miss and hostile values, in the order drawn. Every
outcome is exit 0, 1 or 2 within the time bound, never a traceback; ``vpn`` never starts its driver with
``--check`` and only with a valid configuration without it; nothing is written outside the example's
directory."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emulator.cli import build_parser
from emulator.scenario_cli import embedded_scenarios
from tests.inputs.helpers import BUDGET, NASTY, assert_clean, run_cli


def _options(command: str) -> dict[str, bool]:
    """Every option of a subcommand -> whether it takes a value (read from the parser itself)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, bool] = {}
    for a in sub.choices[command]._actions:
        for flag in a.option_strings:
            if flag not in ("-h", "--help"):
                out[flag] = a.nargs != 0
    return out


TEXT_VALUES = [str(v) for v in NASTY if isinstance(v, str | int | float)] + [
    "127.0.0.1", "127.0.0.2:5500", "[::1]:4500", "10.0.0.1", "aws", "cgw", "1", "2", "ikev2", "ikev1,ikev2",
    "start", "add", "clear", "restart", "none", "30", "45", "900", "3600", "28800", "270", "100", "1024",
    "14,19", "AES128,AES256", "SHA1", "169.254.10.0/30", "goodkey.123", "aes128-sha1-modp2048", "aes999-x",
    "10.1.0.0/24", "yes", "no", "0.05", "-1", "1e-3", '{"loss": 0.5}', '{"loss": 2}', "{bad", "[]", "aws",
    "strongswan", "libreswan", "device", "@/out", "@/file", "@/missing/x", "@", "-", "20000", "0", "5",
]  # fmt: skip
"""Values for any flag: '@' is the example's temporary directory, '@/file' an existing file in it."""


VALID: dict[str, list[str]] = {
    "--role": ["aws", "cgw"], "--local": ["127.0.0.1", "127.0.0.1:5500"], "--remote": ["127.0.0.2", "127.0.0.2:5501"],
    "--ike-version": ["1", "2"], "--psk": ["goodkey.123"], "--proposal": ["aes128-sha1-modp2048"],
    "--esp-proposal": ["aes128-sha1"], "--local-ts": ["10.1.0.0/24"], "--remote-ts": ["10.2.0.0/24"],
    "--seed": ["1"], "--startup-action": ["add", "start"], "--dpd-timeout-action": ["clear", "restart", "none"],
    "--dpd-timeout-seconds": ["30", "40"], "--ike-versions": ["ikev1", "ikev2", "ikev1,ikev2"],
    "--phase1-dh-group-numbers": ["14,19"], "--profile": ["aws", "strongswan", "libreswan", "device"],
    "--dpd-delay": ["2", "0.5"], "--dpd-interval": ["2"], "--dpd-timeout": ["10"], "--retransmit-timeout": ["1"],
    "--retransmit-base": ["1.5"], "--retransmit-tries": ["3"], "--initiate": ["yes", "no"],
    "--faults": ['{"loss": 0.5}'], "--timer-slack": ["0", "0.05"], "--events": ["-", "@/ev.jsonl"],
    "--pcap": ["@/c.pcap"], "--keys": ["@/keys"], "--out": ["@/out"], "--max-events": ["20000"],
}  # fmt: skip
"""A plausible value per flag, so that many vectors are valid and reach the end of validation."""


def _vector(command: str, required: list[str]) -> st.SearchStrategy[list[str]]:
    opts = _options(command)
    anything = st.sampled_from(TEXT_VALUES) | st.text(max_size=10)

    def value_for(flag: str) -> st.SearchStrategy[str]:
        return st.sampled_from(VALID[flag]) | anything if flag in VALID else anything

    @st.composite
    def build(draw: st.DrawFn) -> list[str]:
        argv = [command, *required]
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["option"] * 6 + ["junk", "bare"]))
            if kind == "junk":
                argv.append(draw(st.sampled_from(["--nope", "-x", "extra", "--", "--out="])))
            else:
                flag = draw(st.sampled_from(sorted(opts)))
                argv.append(flag)
                if opts[flag] and kind == "option":
                    argv.append(draw(value_for(flag)))
        return argv

    return build()


def _materialise(argv: list[str], d: str) -> list[str]:
    return [d + a[1:] if a.startswith("@") else a for a in argv]


def _run(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="h2-inputs-") as d, contextlib.chdir(d):
        with open(os.path.join(d, "file"), "w") as f:
            f.write("not yaml: [\n")
        real = _materialise(argv, d)
        if real[0] == "run":
            real += ["--max-events", str(BUDGET)]  # the last one wins: every run is bounded
        before = set(os.listdir(d))
        o = run_cli(real)
        event(f"{real[0]} exit {o.code}")
        assert_clean(o)
        if real[0] == "vpn":
            assert o.code != 1  # the driver (which could fail to bind) never runs here
            if "--check" in real:
                assert not o.driver_started
            assert o.driver_started == (o.code == 0 and "--check" not in real and "--help" not in real)
            assert set(os.listdir(d)) == before  # validation creates no file
        if o.code == 2 and "--out" in real:
            assert set(os.listdir(d)) == before  # refused before anything was written


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = [f for f in embedded_scenarios() if os.path.basename(f).startswith(("01-", "02-", "11-"))]
run_files = st.lists(st.sampled_from([*QUICK, "@/file", "@/missing.yaml", "@", "-"]), min_size=1, max_size=2)


@FUZZ
@given(run_files.flatmap(lambda files: _vector("run", files)))
def test_run_vectors(argv: list[str]) -> None:
    _run(argv)


@FUZZ
@given(
    st.sampled_from([[], ["--local", "127.0.0.1"], *[["--local", "127.0.0.1", "--remote", "127.0.0.2"]] * 3]).flatmap(
        lambda req: _vector("vpn", req)
    ),
    st.booleans(),
)
def test_vpn_vectors(argv: list[str], check: bool) -> None:
    _run([*argv, "--check"] if check else argv)


@settings(FUZZ, max_examples=12)
@given(_vector("demo", []))
def test_demo_vectors(argv: list[str]) -> None:
    _run(argv)
