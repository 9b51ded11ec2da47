"""Streaming traces (bounded memory, event budget), SimNetwork(strict_events=True), and the scheduler's budget."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from emulator.actions import Action, Address, Event, Transmit
from emulator.link import FaultPlan
from emulator.scheduler import BudgetExceeded, Scheduler
from emulator.simnet import SimNetwork
from emulator.trace import RESERVED_KEYS, StreamingTrace, Trace, TraceRecord


def _fill(trace: Trace | StreamingTrace, n: int) -> None:
    for i in range(n):
        trace.add(i * 0.5, "aws", "dpd_request_sent", {"attempt": 1, "seq": i})


def test_streaming_trace_reads_back_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    st = StreamingTrace(str(path))
    mem = Trace()
    _fill(st, 1000)
    _fill(mem, 1000)
    st.add(600.1234567, "cgw", "tunnel_down", {"reason": "closed"})
    mem.add(600.1234567, "cgw", "tunnel_down", {"reason": "closed"})
    assert len(st) == len(mem) == 1001
    assert [r.to_json() for r in st] == [r.to_json() for r in mem]
    assert st.select("tunnel_down")[0].t == 600.123457  # written to the microsecond
    assert st.first("dpd_request_sent", seq=7) == TraceRecord(3.5, "aws", "dpd_request_sent", {"attempt": 1, "seq": 7})
    # Reading does not disturb writing: records added after a read are there on the next one.
    it = iter(st)
    next(it)
    st.add(700.0, "aws", "tunnel_up")
    assert sum(1 for _ in st) == 1002 and list(it)[-1].event == "tunnel_up"  # a live view of the file
    st.close()
    assert [json.loads(x)["t"] for x in path.read_text().splitlines()][-1] == 700.0


def test_streaming_trace_memory_does_not_grow_with_records() -> None:
    def peak(make: type[Trace] | type[StreamingTrace], n: int) -> int:
        tracemalloc.start()
        t = make()
        _fill(t, n)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if isinstance(t, StreamingTrace):
            t.close()
        return top

    # In memory, 20,000 records hold megabytes; streamed, the peak is the write buffer and one record.
    assert peak(Trace, 20_000) > 5_000_000
    small, large = peak(StreamingTrace, 2_000), peak(StreamingTrace, 20_000)
    assert large < 200_000 and large < 2 * small + 50_000


def test_budget_on_records() -> None:
    for t in (Trace(max_events=10), StreamingTrace(max_events=10)):
        _fill(t, 10)
        with pytest.raises(BudgetExceeded, match=r"max_events: the run stopped at t=5\.000000: more than 10 events"):
            t.add(5.0, "aws", "tunnel_up")
        assert len(t) == 10


def test_listeners_see_every_record() -> None:
    seen: list[str] = []
    t = StreamingTrace()
    t.subscribe(lambda r: seen.append(r.event))
    t.add(0.0, "aws", "tunnel_up")
    t.add(1.0, "aws", "tunnel_down", {"reason": "closed"})
    assert seen == ["tunnel_up", "tunnel_down"]
    t.close()


def test_no_declared_field_is_named_like_a_record_key() -> None:
    from cgw_peer.events import EVENTS

    assert RESERVED_KEYS == ("t", "node", "event")
    assert not [f"{e.name}.{k}" for e in EVENTS.values() for k in e.fields if k in RESERVED_KEYS]


def test_scheduler_budget_stops_a_zero_period_livelock() -> None:
    s = Scheduler()

    def again() -> None:
        s.call_at(s.now, again)  # a timer re-armed at the same instant: virtual time stands still

    s.call_at(0.0, again)
    with pytest.raises(BudgetExceeded, match="more than 1,000 scheduled callbacks"):
        s.run_until(1.0, max_events=1000)
    assert s.events_run == 1000
    # Exactly the budget is fine.
    s2 = Scheduler()
    for i in range(5):
        s2.call_at(float(i), lambda: None)
    s2.run_until(10.0, max_events=5)
    assert s2.events_run == 5 and s2.now == 10.0


class Chatty:
    """A node whose start reports one event, well formed or not."""

    def __init__(self, me: Address, peer: Address, event: Event) -> None:
        self.me, self.peer, self.event = me, peer, event

    def start(self, now: float) -> list[Action]:
        return [self.event, Transmit(b"x", self.me, self.peer, "ping")]

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> list[Action]:
        return []


def _pair(event: Event, strict: bool) -> SimNetwork:
    net = SimNetwork(1, strict_events=strict)
    net.add_node("aws", Chatty(("10.0.0.1", 500), ("10.0.0.2", 500), event), ["10.0.0.1"])
    net.add_node("cgw", Chatty(("10.0.0.2", 500), ("10.0.0.1", 500), Event("tunnel_up")), ["10.0.0.2"])
    return net


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (Event("dpd_timout", {}), "unknown event 'dpd_timout'"),
        (Event("tunnel_down", {}), "tunnel_down: missing field 'reason'"),
        (Event("tunnel_down", {"reason": "x", "why": 1}), "tunnel_down: undeclared field 'why'"),
        (Event("restart_scheduled", {"at": 1.0, "attempt": "1", "delay": 1.0}), "restart_scheduled.attempt: str"),
        (Event("dpd_request_sent", {"attempt": 1, "seq": None}), "dpd_request_sent.seq: None"),
    ],
)
def test_strict_events_raises_listing_the_problems(event: Event, problem: str) -> None:
    net = _pair(event, strict=True)
    with pytest.raises(AssertionError) as ei:
        net.start_all()
    assert problem in str(ei.value) and "node aws" in str(ei.value)
    # Off (the default), the same event is recorded as it came.
    loose = _pair(event, strict=False)
    loose.start_all()
    assert loose.trace.first(event.name, node="aws") is not None


def test_strict_events_accepts_the_networks_own_events() -> None:
    net = _pair(Event("tunnel_down", {"reason": "closed"}), strict=True)
    net.set_faults("10.0.0.1", "10.0.0.2", FaultPlan(loss=1.0))
    net.start_all()
    net.crash("cgw")
    net.revive("cgw")
    net.run_until(1.0)
    names = [r.event for r in net.trace]
    assert {"datagram_sent", "node_crashed", "node_revived", "tunnel_down", "tunnel_up"} <= set(names)
    lost = [r.fields["lost"] for r in net.trace.select("datagram_sent", node="aws")]
    assert lost and all(lost)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"loss": float("nan")}, "loss: must be a probability"),
        ({"loss": "0.5"}, "loss: must be a probability"),  # used to raise TypeError on comparison
        ({"delay": float("nan")}, "delay: must be a finite number"),
        ({"delay": float("inf")}, "delay: must be a finite number"),
        ({"jitter": "x"}, "jitter: must be a finite number"),
        ({"blackholes": ((5.0, 1.0),)}, "blackholes[0]: must be [start, end]"),
        ({"blackholes": ((float("nan"), 1.0),)}, "blackholes[0][0]"),
        ({"drop_kinds_window": (1.0,)}, "drop_kinds_window: must be a list of 2"),
        ({"drop_kinds": frozenset({3})}, "drop_kinds: must be a set"),
    ],
)
def test_fault_plan_refuses_bad_values_in_code_too(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError) as ei:
        FaultPlan(**kw)  # type: ignore[arg-type]
    assert str(ei.value).startswith(needle)
