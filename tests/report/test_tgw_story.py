"""TGW story files: bad ones are configuration errors that name the field; the verdicts and hops of a story
are the dataplane's own (compared with a direct Dataplane run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import ConfigError
from emulator.report.tgw import load_story, run_story
from tgw_dataplane.craft import parse_flow
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import load_topology

ROOT = Path(__file__).resolve().parents[2]
STORIES = ROOT / "emulator" / "scenarios" / "tgw"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("topology: x.yaml\nsteps: [{at: 0, send: syn, flow: 'tcp 1.1.1.1:1 > 2.2.2.2:2'}]", "steps[0].send"),
        ("topology: x.yaml\nsteps: [{at: 0, do: explode}]", "steps[0].do"),
        ("topology: x.yaml\nsteps: [{send: request}]", "steps[0]"),
        ("topology: x.yaml\ncolour: red", "colour"),
        ("steps: []", "topology"),
    ],
)
def test_bad_story_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_story(str(p))


def test_story_verdicts_are_the_dataplanes() -> None:
    res = run_story(load_story(str(STORIES / "appliance-mode-off.yaml")))
    dp = Dataplane(load_topology(str(ROOT / "fixtures" / "tgw" / "seed.yaml")))
    dp.set_appliance_mode("tgw-attach-c", False)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    fwd = dp.send(f.request(), "i-a", 0.0, trace=True)
    rev = dp.send(f.reply(), "i-b", 0.001, trace=True)
    assert [(p.verdict, p.reason, p.hops) for p in res.packets] == [
        (fwd.verdict, fwd.reason, fwd.hops),
        (rev.verdict, rev.reason, rev.hops),
    ]
    # one capture per hop the packet passed, the drop explained on the last one
    assert len(res.captures) == len([h for h in (fwd.hops or []) + (rev.hops or []) if h["kind"] != "drop"])
    assert "DROPPED: the stateful appliance i-fw2 in us-east-1b never saw" in res.captures[-1].comment
