"""``awsnetemu report DIR`` on what ``awsnetemu run --out DIR`` writes, and on the tour's output; the TGW
topologies the tour embeds are the fixtures the dataplane tests use."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import pytest

from emulator.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_report_on_run_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = ROOT / "emulator" / "scenarios" / "05-dpd-timeout-none.yaml"
    assert main(["run", str(sc), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "05-dpd-timeout-none.html").read_text()
    assert "<svg" in page and "data:image/png;base64," in page and "R-U-THERE" in page
    assert "WIRESHARK_CONFIG_DIR=05-dpd-timeout-none-keys" in page
    # nothing to fetch: no external src/href (the SVG namespace URI is a name, not a request), no script
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<script" not in page
    assert (tmp_path / "05-dpd-timeout-none.pcapng").exists() and (tmp_path / "index.html").exists()
    assert "05-dpd-timeout-none.html" in (tmp_path / "index.html").read_text()


def test_report_rebuilds_the_tour_pages(tour_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (tour_dir / "tgw" / "tgw-peering.html").read_text()
    assert main(["report", str(tour_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count(".html") >= 21
    assert (tour_dir / "tgw" / "tgw-peering.html").read_text() == before


def test_report_needs_a_directory(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("story", ["az-failure", "two-tgws", "peering"])
def test_embedded_story_topologies_are_the_fixtures(story: str) -> None:
    emb = ROOT / "emulator" / "scenarios" / "topologies" / f"story-{story}.yaml"
    fix = ROOT / "fixtures" / "tgw" / f"story_{story.replace('-', '_')}.yaml"
    assert filecmp.cmp(emb, fix, shallow=False)


def test_a_capture_that_disagrees_with_its_trace_gets_no_comments(tmp_path: Path) -> None:
    from emulator.report import write_material
    from emulator.scenario import Scenario

    sc = Scenario.load(str(ROOT / "emulator" / "scenarios" / "02-idle-dpd.yaml"))
    res = sc.run(str(tmp_path))
    pcap = Path(res.outputs["pcap"])
    data = pcap.read_bytes()
    pcap.write_bytes(data[: len(data) - 120])  # the last record cut off
    files = write_material(sc, res, str(tmp_path))
    assert "pcapng" not in files and not (tmp_path / "02-idle-dpd.pcapng").exists()
    assert "no annotated capture" in Path(files["html"]).read_text()
