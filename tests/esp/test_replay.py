"""The anti-replay window against a plain set-based model of RFC 4303 §3.4.3, for every AWS window size edge."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cgw_peer.esp import EspDrop, ReplayWindow


def model(size: int, seqs: list[int]) -> list[str | None]:
    """What RFC 4303 §3.4.3 says about each received number (all authentic), from first principles."""
    seen: set[int] = set()
    top = 0
    out: list[str | None] = []
    for s in seqs:
        if s > top:
            verdict = None
        elif s == 0 or top - s >= size:
            verdict = "esp_outside_window"
        elif s in seen:
            verdict = "esp_replay"
        else:
            verdict = None
        out.append(verdict)
        if verdict is None:
            seen.add(s)
            top = max(top, s)
    return out


@settings(max_examples=300, deadline=None)
@given(
    size=st.sampled_from([1, 2, 64, 65, 1024, 2048]),
    seqs=st.lists(st.integers(min_value=0, max_value=5000), max_size=120),
)
def test_window_matches_model(size: int, seqs: list[int]) -> None:
    w = ReplayWindow(size)
    got: list[str | None] = []
    for s in seqs:
        verdict = w.check(s)
        got.append(None if verdict is None else str(verdict))
        if verdict is None:
            w.update(s)
    assert got == model(size, seqs)


@settings(max_examples=100, deadline=None)
@given(size=st.sampled_from([64, 1024, 2048]), start=st.integers(min_value=1, max_value=2**32 - 5000))
def test_in_order_then_all_replays(size: int, start: int) -> None:
    w = ReplayWindow(size)
    seqs = list(range(start, start + 3000))
    for s in seqs:
        assert w.check(s) is None
        w.update(s)
    top = seqs[-1]
    assert w.check(top) is EspDrop.REPLAY
    assert w.check(top - size + 1) is EspDrop.REPLAY
    assert w.check(top - size) is EspDrop.OUTSIDE_WINDOW
    assert w.bitmap == (1 << size) - 1  # the int never grows past the window


def test_check_does_not_update() -> None:
    w = ReplayWindow(64)
    assert w.check(10) is None
    assert w.check(10) is None
    assert w.top == 0 and not w.accepted(10)
    w.update(10)
    assert w.accepted(10) and w.check(10) is EspDrop.REPLAY
    assert w.check(0) is EspDrop.OUTSIDE_WINDOW


def test_big_jump_clears_the_window() -> None:
    w = ReplayWindow(64)
    for s in (1, 2, 3):
        w.update(s)
    w.update(1000)
    assert w.bitmap == 1 and w.top == 1000
    assert w.check(999) is None and w.check(937) is None and w.check(936) is EspDrop.OUTSIDE_WINDOW


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(0)
