"""JSON-lines event traces (one object per line: ``t``, ``node``, ``event`` and the event's fields)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any


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

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


class Trace:
    """An in-memory trace that can also stream to a JSONL file."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.records: list[TraceRecord] = []
        self._out = out

    def add(self, t: float, node: str, event: str, fields: dict[str, Any] | None = None) -> TraceRecord:
        rec = TraceRecord(t, node, event, dict(fields or {}))
        self.records.append(rec)
        if self._out is not None:
            self._out.write(rec.to_json() + "\n")
        return rec

    def select(self, event: str | None = None, node: str | None = None, **match: Any) -> list[TraceRecord]:
        return [
            r
            for r in self.records
            if (event is None or r.event == event)
            and (node is None or r.node == node)
            and all(r.fields.get(k) == v for k, v in match.items())
        ]

    def first(self, event: str, node: str | None = None, **match: Any) -> TraceRecord | None:
        for r in self.select(event, node, **match):
            return r
        return None

    def __iter__(self) -> Iterator[TraceRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def write_jsonl(self, path: str) -> None:
        with open(path, "w") as f:
            for r in self.records:
                f.write(r.to_json() + "\n")


def read_jsonl(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]
