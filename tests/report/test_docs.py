"""The tutorial's pictures exist and still show what the scenarios do today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emulator.annotate import VpnContext, annotate_vpn
from emulator.report.sequence import parse_sequence_svg, sequence_svg
from emulator.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_every_picture_the_tutorial_shows_is_there() -> None:
    text = (DOCS / "tutorial.md").read_text()
    pics = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert any(p.endswith("-sequence.svg") for p in pics) and any(p.endswith("-timeline.png") for p in pics)
    for p in pics:
        assert (DOCS / p).is_file(), p


@pytest.mark.parametrize("name", ["03-dpd-timeout-clear", "12-ikev2-lost-ike-sa-init"])
def test_tutorial_sequence_diagrams_match_a_fresh_run(name: str) -> None:
    sc = Scenario.load(str(ROOT / "emulator" / "scenarios" / f"{name}.yaml"))
    res = sc.run()
    ctx = VpnContext.from_scenario(sc)
    records = list(res.trace)
    fresh = parse_sequence_svg(sequence_svg(annotate_vpn(records, ctx), records, ctx, title=name))
    doc = parse_sequence_svg((DOCS / "images" / f"{name}-sequence.svg").read_text())

    def key(d: dict) -> list:  # type: ignore[type-arg]
        return [(m["index"], round(m["t"], 6), m["from"], m["to"], m["kind"], m["lost"]) for m in d["messages"]]

    assert key(doc) == key(fresh) and doc["folded"] == fresh["folded"] and doc["total"] == fresh["total"]
