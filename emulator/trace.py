"""Event traces: one record per event (``t``, ``node``, ``event`` and the event's fields), as JSON lines.

Two kinds, with one interface (:class:`BaseTrace`: ``add``, iteration, ``select``, ``first``, ``len``):

* :class:`Trace` keeps its records in memory (unit tests, small runs; optionally mirrored to a file).
* :class:`StreamingTrace` writes each record to a JSON-lines file as it arrives and keeps none: memory stays
  flat however long the run. Iterating it reads the file back. A scenario run uses it, on ``--out DIR/NAME.jsonl``
  or on an anonymous temporary file (deleted when the trace is closed or collected).

Both can stop a run past an event budget (``max_events``: :class:`BudgetExceeded`, a configuration error) and
call listeners on every record (``subscribe``), which is how a scenario checks its expectations while the run
goes, without holding the trace.

The JSON-lines layout reads the event vocabulary (:mod:`cgw_peer.events`): the record keys ``t``, ``node`` and
``event`` are reserved, and no declared event may have a field of that name (checked when this module is
imported), so a line always splits back into the record it came from.
"""

from __future__ import annotations

import json
import os
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from cgw_peer.events import EVENTS
from emulator.scheduler import BudgetExceeded

RESERVED_KEYS: tuple[str, ...] = ("t", "node", "event")
"""The keys of a JSON-lines record that are not event fields."""

_CLASHES = sorted(f"{spec.name}.{k}" for spec in EVENTS.values() for k in spec.fields if k in RESERVED_KEYS)
if _CLASHES:  # pragma: no cover - a declaration error, caught the moment it is made
    raise RuntimeError(f"cgw_peer.events declares fields named like trace keys {RESERVED_KEYS}: {_CLASHES}")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    t: float
    node: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d: dict[str, Any] = {"t": round(self.t, 6), "node": self.node, "event": self.event}
        d.update(self.fields)
        return json.dumps(d, sort_keys=False, default=str)

    @classmethod
    def from_json(cls, line: str | bytes) -> TraceRecord:
        """The record a :meth:`to_json` line came from (``t`` rounded to the microsecond, as written)."""
        d = json.loads(line)
        return cls(float(d.pop("t")), str(d.pop("node")), str(d.pop("event")), d)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


Listener = Callable[[TraceRecord], None]


class BaseTrace:
    """What every trace offers. Subclasses store records (:meth:`_store`) and iterate them (``__iter__``)."""

    def __init__(self, *, max_events: int | None = None) -> None:
        self.max_events = max_events
        """Event budget: adding one record more raises :class:`BudgetExceeded` (None: no limit)."""
        self._count = 0
        self._listeners: list[Listener] = []

    def add(self, t: float, node: str, event: str, fields: dict[str, Any] | None = None) -> TraceRecord:
        if self.max_events is not None and self._count >= self.max_events:
            raise BudgetExceeded(
                f"max_events: the run stopped at t={t:.6f}: more than {self.max_events:,} events "
                "(raise the event budget, or lengthen the timers that fire this often)"
            )
        rec = TraceRecord(t, node, event, dict(fields or {}))
        self._count += 1
        self._store(rec)
        for fn in self._listeners:
            fn(rec)
        return rec

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(record)`` for every record added from now on."""
        self._listeners.append(listener)

    def _store(self, rec: TraceRecord) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[TraceRecord]:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._count

    def select(self, event: str | None = None, node: str | None = None, **match: Any) -> list[TraceRecord]:
        return [
            r
            for r in self
            if (event is None or r.event == event)
            and (node is None or r.node == node)
            and all(r.fields.get(k) == v for k, v in match.items())
        ]

    def first(self, event: str, node: str | None = None, **match: Any) -> TraceRecord | None:
        for r in self:
            if (
                r.event == event
                and (node is None or r.node == node)
                and all(r.fields.get(k) == v for k, v in match.items())
            ):
                return r
        return None

    def write_jsonl(self, path: str) -> None:
        with open(path, "w") as f:
            for r in self:
                f.write(r.to_json() + "\n")


class Trace(BaseTrace):
    """An in-memory trace that can also mirror every record to a JSON-lines stream (``out``)."""

    def __init__(self, out: IO[str] | None = None, *, max_events: int | None = None) -> None:
        super().__init__(max_events=max_events)
        self.records: list[TraceRecord] = []
        self._out = out

    def _store(self, rec: TraceRecord) -> None:
        self.records.append(rec)
        if self._out is not None:
            self._out.write(rec.to_json() + "\n")

    def __iter__(self) -> Iterator[TraceRecord]:
        return iter(self.records)


class StreamingTrace(BaseTrace):
    """A trace that lives in a JSON-lines file: ``add`` appends a line, iteration reads the file back.

    ``path``: the file to (over)write; None: an anonymous temporary file, gone when the trace is closed or
    garbage-collected. Memory use does not grow with the number of records.
    """

    _CHUNK = 1 << 16

    def __init__(self, path: str | None = None, *, max_events: int | None = None) -> None:
        super().__init__(max_events=max_events)
        self.path = path
        f: IO[bytes]
        if path is None:
            f = tempfile.TemporaryFile(prefix="awsnetemu-trace-", suffix=".jsonl")  # noqa: SIM115 - see finalizer
        else:
            f = open(path, "w+b")  # noqa: SIM115 - closed by close() or the finalizer
        self._f = f
        # Closes the file when the trace is closed or collected (an explicit close, so no ResourceWarning).
        self._finalizer = weakref.finalize(self, f.close)

    def _store(self, rec: TraceRecord) -> None:
        self._f.write(rec.to_json().encode() + b"\n")

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def close(self) -> None:
        """Flush and close the file (a temporary file is deleted); the trace cannot be read afterwards."""
        self.flush()
        self._finalizer()

    def __iter__(self) -> Iterator[TraceRecord]:
        if self._f.closed:
            raise ValueError("the trace is closed")
        self._f.flush()
        return self._read(self._f.fileno())

    def _read(self, fd: int) -> Iterator[TraceRecord]:
        # pread leaves the writer's file position alone, so reading while the run goes on is safe.
        offset = 0
        rest = b""
        while True:
            chunk = os.pread(fd, self._CHUNK, offset)
            if not chunk:
                break
            offset += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line:
                    yield TraceRecord.from_json(line)
        if rest.strip():
            yield TraceRecord.from_json(rest)


def read_jsonl(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]
