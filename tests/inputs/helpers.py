"""Shared pieces of the input-fuzzing tests: run the CLI in-process, nasty values, document mutation."""

from __future__ import annotations

import contextlib
import io
import math
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from unittest import mock

from hypothesis import strategies as st

from cgw_peer.config import Behaviour, Retransmit, TunnelOptions
from emulator import vpn_cli
from emulator.cli import main
from emulator.link import FaultPlan

# A run is bounded by its event budget: every `run` vector ends with --max-events BUDGET. The slowest rate seen
# on the loaded 2-core VM is about 5,000 events/s, so a run takes at most a few seconds; TIME_BOUND leaves an
# order of magnitude on top for a machine in a slow phase. A hang (the failure this guards against) is forever.
BUDGET = 20_000
TIME_BOUND = 60.0

ALLOWED_EXITS = {0, 1, 2}


@dataclass
class Outcome:
    code: int
    seconds: float
    out: str
    err: str
    driver_started: bool = False
    argv: list[str] = field(default_factory=list)


async def _fake_run_vpn(*args: Any, **kwargs: Any) -> int:
    return 0


def run_cli(argv: Sequence[str]) -> Outcome:
    """``awsnetemu ARGV`` in-process: the exit status (argparse's SystemExit included), output, wall time. Any
    other exception is a failure of the test, with the traceback and the argument vector in the message. The vpn
    driver never starts: ``run_vpn`` is replaced by a stub that records the call (no socket is opened)."""
    out, err = io.StringIO(), io.StringIO()
    started = mock.AsyncMock(side_effect=_fake_run_vpn)
    t0 = time.monotonic()
    try:
        with (
            mock.patch.object(vpn_cli, "run_vpn", started),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse: 2 on bad usage, 0 for --help
                code = e.code if isinstance(e.code, int) else 2
    except Exception:  # reported with its traceback: exactly what must never happen
        raise AssertionError(f"traceback for argv {list(argv)!r}:\n{traceback.format_exc()}") from None
    seconds = time.monotonic() - t0
    return Outcome(code, seconds, out.getvalue(), err.getvalue(), started.await_count > 0, list(argv))


def assert_clean(o: Outcome, allowed: set[int] = ALLOWED_EXITS) -> None:
    """Exit 0/1/2 within the time bound; a configuration error is exactly one line on stderr."""
    assert o.code in allowed, (o.code, o.argv, o.err[-2000:])
    assert o.seconds < TIME_BOUND, (o.seconds, o.argv)
    assert "Traceback" not in o.err, o.err
    if o.code == 2 and "configuration error" in o.err:
        assert o.err.count("\n") == 1, o.err


# -- values -------------------------------------------------------------------------------------------------

NASTY: list[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 0.5, 0.001, 1e-300, 1e308, -1e308, math.inf, -math.inf, math.nan,
    10**30, -(10**30), "", " ", "no", "yes", "true", "x", "0", "1", "1e9", "nan", "inf", "-inf", ".inf",
    "../../x", "a/b", "/", "..", "0abcdefgh", "goodkey.123\n", "goodkey.123", "\x00", "\n", "é", "tunnel_up",
    "dpd_timout", "dpd_timeout", "aws", "cgw", "tgw", "both", "cgw->aws", "ikev1", "ikev2", "clear", "start",
    "restart", "127.0.0.1", "::1", "10.0.0.0/8", "999.1.1.1", "127.0.0.1:99999", [], {}, [1], [1, 2], [2, 1],
    [[1, 2]], [["a", "b"]], [None], {"a": 1}, {"Value": "ikev1"}, [{"Value": 14}], [math.nan, 1], [0, math.inf],
]  # fmt: skip
"""Values that have broken loaders before: wrong types, edge numbers, paths, near-miss words."""

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
leaf = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
values = st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3), max_leaves=6)
"""Arbitrary YAML-able values (no lone surrogates: YAML cannot write them)."""


def _names() -> list[str]:
    from emulator.scenario import (
        ACTION_KEYS,
        EVENT_EXPECT_KEYS,
        PROBE_KEYS,
        SIDE_KEYS,
        STATUS_KEYS,
        TGW_KEYS,
        TOP_KEYS,
    )

    keys: set[str] = set(TOP_KEYS) | SIDE_KEYS | TGW_KEYS | PROBE_KEYS | EVENT_EXPECT_KEYS | set(STATUS_KEYS)
    keys |= {k for ks in ACTION_KEYS.values() for k in ks} | {"at", "do", "absent", "status", "tgw_flow", "plan"}
    keys |= {f.name for f in fields(Behaviour)} | {f.name for f in fields(Retransmit)} | set(FaultPlan.FIELDS)
    keys |= set(TunnelOptions().to_aws()) | vpn_cli._KEYS
    return sorted(keys)


KNOWN_KEYS = _names()
"""Every key the loaders know, so that mutations often add a real key with a bad value."""
keys = st.one_of(st.sampled_from(KNOWN_KEYS), _text)


# -- mutation -----------------------------------------------------------------------------------------------


def _slots(doc: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key-or-index) position in a nested document, the root's parent included as (None, None)."""
    yield (None, None)
    stack = [doc]
    while stack:
        c = stack.pop()
        if isinstance(c, dict):
            for k, v in c.items():
                yield (c, k)
                stack.append(v)
        elif isinstance(c, list):
            for i, v in enumerate(c):
                yield (c, i)
                stack.append(v)


def mutate(data: st.DataObject, doc: Any, rounds: int = 3) -> Any:
    """Apply 1..``rounds`` random edits (replace a value, nudge a number, delete a key or item, add a key, rename a
    key, append to a list) to ``doc`` in place; the (possibly new) root is returned."""
    n = data.draw(st.integers(1, rounds), label="rounds")
    for _ in range(n):
        slots = list(_slots(doc))
        parent, key = data.draw(st.sampled_from(slots), label="where")
        op = data.draw(
            st.sampled_from(["replace", "replace", "nudge", "nudge", "delete", "add", "rename", "append"]), label="op"
        )
        if parent is None:
            if op == "replace":
                doc = data.draw(values, label="root")
            continue
        target = parent[key]
        if op == "replace":
            parent[key] = data.draw(values, label="value")
        elif (
            op == "nudge" and isinstance(target, int | float) and not isinstance(target, bool) and math.isfinite(target)
        ):
            # A plausible number near the original: keeps many documents valid, so that runs get exercised.
            near = [0, target / 2, target * 2, target + 0.01, -target, 0.01, 1e6, round(target) + 1]
            parent[key] = data.draw(st.sampled_from(near), label="nudged")
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(target, dict):
            target[data.draw(keys, label="key")] = data.draw(values, label="value")
        elif op == "rename" and isinstance(parent, dict):
            parent[data.draw(keys, label="new key")] = parent.pop(key)
        elif op == "append" and isinstance(target, list):
            target.append(data.draw(values, label="item"))
    return doc
