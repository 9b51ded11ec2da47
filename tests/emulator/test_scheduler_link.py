from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.clock import VirtualClock
from emulator.link import FaultPlan, Link
from emulator.scheduler import Scheduler


def test_clock_refuses_to_go_backwards() -> None:
    c = VirtualClock(5.0)
    c.advance_to(7.5)
    assert c.time() == 7.5
    with pytest.raises(ValueError, match="backwards"):
        c.advance_to(7.0)
    with pytest.raises(ValueError):
        c.advance(-1)


def test_scheduler_orders_by_time_then_insertion() -> None:
    s = Scheduler()
    seen: list[str] = []
    s.call_at(2.0, seen.append, "b1")
    s.call_at(1.0, seen.append, "a")
    s.call_at(2.0, seen.append, "b2")
    h = s.call_at(1.5, seen.append, "cancelled")
    h.cancel()
    s.call_at(2.0, seen.append, "b3")
    s.run()
    assert seen == ["a", "b1", "b2", "b3"]
    assert s.now == 2.0


def test_run_until_stops_and_sets_clock() -> None:
    s = Scheduler()
    seen: list[float] = []

    def tick() -> None:
        seen.append(s.now)
        s.call_later(10.0, tick)

    s.call_at(0.0, tick)
    s.run_until(35.0)
    assert seen == [0.0, 10.0, 20.0, 30.0]
    assert s.now == 35.0
    assert s.peek() == 40.0


def test_runaway_loop_is_reported() -> None:
    s = Scheduler()

    def again() -> None:
        s.call_at(s.now, again)

    s.call_at(0.0, again)
    with pytest.raises(RuntimeError, match="more than"):
        s.run_until(1.0, max_events=1000)


def test_link_blackhole_and_kind_drop() -> None:
    plan = FaultPlan(blackholes=((10.0, 20.0),), drop_kinds=frozenset({"dpd_ack"}), delay=0.1)
    link = Link(plan, random.Random(1))
    assert link.transmit(b"x", "dpd_request", 5.0) == [pytest.approx(5.1)]
    assert link.transmit(b"x", "dpd_request", 10.0) == []
    assert link.transmit(b"x", "dpd_request", 19.999) == []
    assert link.transmit(b"x", "dpd_request", 20.0) == [pytest.approx(20.1)]
    assert link.transmit(b"x", "dpd_ack", 30.0) == []
    assert (link.sent, link.lost, link.delivered) == (5, 3, 2)


def test_link_predicate() -> None:
    link = Link(FaultPlan(drop_if=lambda data, kind, now: data.startswith(b"\xff")), random.Random(0))
    assert link.transmit(b"\xff", "", 0.0) == []
    assert link.transmit(b"\x00", "", 0.0) == [0.0]


@given(seed=st.integers(0, 2**32), loss=st.floats(0, 1), dup=st.floats(0, 1), jitter=st.floats(0, 1))
def test_link_is_deterministic_under_a_seed(seed: int, loss: float, dup: float, jitter: float) -> None:
    plan = FaultPlan(loss=loss, duplicate=dup, jitter=jitter, reorder=0.3, delay=0.01)
    a = Link(plan, random.Random(seed))
    b = Link(plan, random.Random(seed))
    for i in range(50):
        ra = a.transmit(b"p", "k", float(i))
        assert ra == b.transmit(b"p", "k", float(i))
        for at in ra:
            assert float(i) + 0.01 <= at <= float(i) + 0.01 + jitter + 0.05 + 0.001 + 1e-9


def test_link_loss_rate_is_about_right() -> None:
    link = Link(FaultPlan(loss=0.25), random.Random(7))
    lost = sum(1 for i in range(4000) if not link.transmit(b"", "", float(i)))
    assert 850 < lost < 1150


def test_fault_plan_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="loss"):
        FaultPlan(loss=1.5)
    with pytest.raises(ValueError, match=r"faults\.bogus"):
        FaultPlan.from_mapping({"bogus": 1})
    with pytest.raises(ValueError, match=r"faults\.delay"):
        FaultPlan.from_mapping({"delay": "soon"})
    p = FaultPlan.from_mapping({"blackholes": [[1, 2]], "drop_kinds": ["dpd_ack"], "loss": 0.1})
    assert p.blackholes == ((1.0, 2.0),) and p.drop_kinds == frozenset({"dpd_ack"})
