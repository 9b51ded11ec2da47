"""The tour's HTML pages in a real browser (Debian's chromium, headless, driven over the DevTools protocol):
no console error, nothing requested but the page itself (and its inline data: image), the diagrams there,
a screenshot taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tools import require_tool

from .cdp import Chromium

pytestmark = pytest.mark.realpeer


def _local(url: str, page: Path) -> bool:
    return url == page.as_uri() or url.startswith("data:")


def test_pages_render_offline_with_their_diagrams(tour_dir: Path, tmp_path: Path) -> None:
    exe = require_tool("chromium")
    vpn = json.loads((tour_dir / "vpn" / "03-dpd-timeout-clear-run.json").read_text())
    v2 = json.loads((tour_dir / "vpn" / "v2-04-aws-timeout-restart-run.json").read_text())
    with Chromium(exe) as c:
        index = tour_dir / "index.html"
        c.open(index.as_uri())
        assert c.console_errors() == []
        assert all(_local(u, index) for u in c.requests()), c.requests()
        links = c.evaluate("Array.from(document.querySelectorAll('table a')).map(a => a.getAttribute('href'))")
        assert len(links) >= 20 and all((tour_dir / h).exists() for h in links)

        for man in (vpn, v2):
            page = tour_dir / "vpn" / man["files"]["html"]
            c.open(page.as_uri())
            assert c.console_errors() == [], man["name"]
            assert all(_local(u, page) for u in c.requests()), c.requests()
            n_msgs = c.evaluate("document.querySelectorAll('svg.sequence g.msg').length")
            folded = c.evaluate(
                "Array.from(document.querySelectorAll('svg.sequence g.collapsed'))"
                ".reduce((n, g) => n + Number(g.dataset.count), 0)"
            )
            total = c.evaluate("Number(document.querySelector('svg.sequence').dataset.messages)")
            assert n_msgs > 0 and n_msgs + folded == total
            assert c.evaluate("document.querySelectorAll('svg.sequence g.note[data-event=dpd_timeout]').length") == 1
            # the timeline PNG decoded and laid out
            assert c.evaluate("document.querySelector('img.timeline').naturalWidth") > 500
            assert c.evaluate("document.querySelector('img.timeline').getBoundingClientRect().height") > 100
            # the sequence diagram is laid out (an SVG with a zero box would be invisible)
            assert c.evaluate("document.querySelector('svg.sequence').getBoundingClientRect().height") > 300
            assert c.evaluate("document.querySelectorAll('#files pre').length") >= 3
            shot = c.screenshot()
            assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
            (tmp_path / f"{man['name']}.png").write_bytes(shot)

        conn = json.loads((tour_dir / "connection" / "14-connection-dpd-clear-run.json").read_text())
        page = tour_dir / "connection" / conn["files"]["html"]
        c.open(page.as_uri())
        assert c.console_errors() == []
        assert all(_local(u, page) for u in c.requests()), c.requests()
        # one sequence diagram per tunnel, each laid out with its messages; the traffic table; the timeline
        assert c.evaluate("document.querySelectorAll('svg.sequence').length") == 2
        heights = c.evaluate(
            "Array.from(document.querySelectorAll('svg.sequence')).map(s => s.getBoundingClientRect().height)"
        )
        assert min(heights) > 200
        assert c.evaluate("document.querySelectorAll('svg.sequence g.note[data-event=dpd_timeout]').length") == 1
        assert c.evaluate("document.querySelectorAll('#flows tr.flow').length") == 3
        assert c.evaluate("document.querySelector('img.timeline').naturalWidth") > 500
        shot = c.screenshot()
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
        (tmp_path / "connection.png").write_bytes(shot)

        tgw = tour_dir / "tgw" / "tgw-appliance-mode-off.html"
        c.open(tgw.as_uri())
        assert c.console_errors() == []
        assert all(_local(u, tgw) for u in c.requests())
        assert c.evaluate("document.querySelectorAll('svg.tgw-paths g.path').length") == 2
        assert c.evaluate("document.querySelector('svg.tgw-paths g.drop').dataset.reason") == "appliance_no_state"
        assert c.evaluate("document.querySelectorAll('svg.tgw-paths g.hop:not(.drop)').length") == 11
        shot = c.screenshot()
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        (tmp_path / "tgw.png").write_bytes(shot)


def test_the_probe_catches_a_console_error_and_a_network_request(tmp_path: Path) -> None:
    """The checks above can fail: a page with a script error and an external image is caught."""
    exe = require_tool("chromium")
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    with Chromium(exe) as c:
        c.open(page.as_uri())
        assert len(c.console_errors()) >= 2
        assert any(u.startswith("http://127.0.0.1:9/") for u in c.requests())
