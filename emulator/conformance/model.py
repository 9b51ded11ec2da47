"""What a conformance check is and what it reports: IDs, levels, verdicts, results with evidence.

A check (:class:`CheckSpec`) has a stable ID (``AWS-DPD-03``), a group, a level (``basic``: what AWS needs to
keep a tunnel up; ``advanced``: robustness and hygiene beyond that), the IKE versions it applies to, the
documents behind it (``cites``), and the bound within which it decides. It runs against a
:class:`~emulator.conformance.session.Session` and returns an :class:`Outcome`; the runner turns that into a
:class:`CheckResult` with the check's own capture.

Verdicts, modelled on the TAHI / IPv6 Ready self-test reports (PASS / FAIL / SKIP) plus two of our own:

* ``pass``: the device did what the cited document requires;
* ``fail``: it did something else, or nothing ("no answer") within the bound; the explanation says what it did
  instead, with the packet numbers of the check's capture;
* ``warn``: allowed, but against AWS's recommendation (e.g. a policy that also accepts suites AWS never
  offers);
* ``skip``: not run (deselected with ``--only``, or a prerequisite check failed);
* ``unsupported``: this device or this IKE version cannot be tested for it here (e.g. the device never starts
  a rekey within the run, or it cannot install IPsec SAs).

Packet references in texts are written as :func:`pkt` tokens while a check runs and become ``packet N`` (N
counted in that check's capture file) when the result is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.conformance.session import CheckContext


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"
    UNSUPPORTED = "unsupported"


class Level(StrEnum):
    BASIC = "basic"
    """Needed to keep an AWS tunnel up."""
    ADVANCED = "advanced"
    """Robustness and hygiene beyond that."""


GROUPS: tuple[str, ...] = (
    "transport",
    "phase1",
    "child",
    "retransmission",
    "dpd",
    "actions",
    "rekey",
    "lifecycle",
    "robustness",
)
"""Check groups, in the order the battery runs them."""


@dataclass(frozen=True)
class Outcome:
    """What a check function returns."""

    verdict: Verdict
    summary: str
    """One line: what was seen (may hold :func:`pkt` tokens)."""
    details: str = ""
    """On fail/warn: what the device did instead, and why it matters (may hold :func:`pkt` tokens)."""
    measurements: dict[str, Any] = field(default_factory=dict)
    """Numbers worth keeping (seconds to recover, who re-initiated, accepted proposals, ...)."""


CheckFn = Callable[["CheckContext"], Awaitable[Outcome]]


@dataclass(frozen=True)
class CheckSpec:
    """One check of the battery (see the module docstring)."""

    id: str
    title: str
    group: str
    level: Level
    versions: frozenset[int]
    cites: tuple[str, ...]
    """The AWS documents and RFC sections the requirement comes from."""
    requirement: str
    """What the device must do, in one or two sentences."""
    bound: str
    """Within what time it decides, and where that number comes from."""
    fn: CheckFn = field(repr=False, compare=False)
    needs_tunnel: bool = True
    """Needs an established IKE SA with a Child SA before it starts (the runner brings one up)."""
    needs_child: bool = True
    """Needs the Child SA / IPsec SA pair itself (``unsupported`` when the device cannot install one)."""
    hard_limit: float = 180.0
    """Seconds of real time after which the runner stops the check and reports a fail (it must never hang)."""


@dataclass
class Evidence:
    """A datagram the explanation points at."""

    seq: int
    """The datagram's sequence number in the session (rendered as its frame number in the check's capture)."""
    note: str


@dataclass
class CheckResult:
    """A check's result as reported (terminal table, JSON, JUnit, ``--out``)."""

    id: str
    title: str
    group: str
    level: Level
    verdict: Verdict
    summary: str
    details: str
    cites: tuple[str, ...]
    requirement: str
    bound: str
    started: float = 0.0
    """Session time at which the check started (seconds)."""
    duration: float = 0.0
    measurements: dict[str, Any] = field(default_factory=dict)
    capture: str | None = None
    """The check's capture file, relative to ``--out``."""
    tshark: str | None = None
    """A ready tshark command for that capture."""
    frames: int = 0
    """Datagrams in the check's capture."""

    @property
    def explanation(self) -> str:
        """Summary, details, requirement and sources as one text (JUnit failure body, the ``.txt`` file)."""
        parts = [self.summary]
        if self.details:
            parts.append(self.details)
        parts.append(f"Requirement: {self.requirement}")
        parts.append(f"Sources: {'; '.join(self.cites)}")
        parts.append(f"Bound: {self.bound}")
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "group": self.group,
            "level": self.level.value,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "details": self.details,
            "requirement": self.requirement,
            "cites": list(self.cites),
            "bound": self.bound,
            "started": round(self.started, 3),
            "duration": round(self.duration, 3),
            "measurements": self.measurements,
            "capture": self.capture,
            "tshark": self.tshark,
            "frames": self.frames,
        }


_PKT = "\x00pkt:"
_PKT_RE = re.compile("\x00pkt:(\\d+)\x00")


def pkt(seq: int) -> str:
    """A reference to datagram ``seq`` of the session, rendered later as ``packet N`` of a check's capture."""
    return f"{_PKT}{seq}\x00"


def render_packets(text: str, frame_of: Callable[[int], int | None]) -> str:
    """Replace :func:`pkt` tokens with ``packet N`` (N from ``frame_of``; ``packet ?`` if not captured)."""

    def sub(m: re.Match[str]) -> str:
        n = frame_of(int(m.group(1)))
        return f"packet {n}" if n is not None else "an earlier packet"

    return _PKT_RE.sub(sub, text)


def packet_refs(text: str) -> list[int]:
    """The datagram sequence numbers referenced in ``text``."""
    return [int(m.group(1)) for m in _PKT_RE.finditer(text)]
