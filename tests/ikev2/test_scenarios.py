"""IKEv2 scenario files (the documented YAML format of ``awsnetemu run``) with exact virtual-time expectations."""

from __future__ import annotations

import glob
import os

import pytest

from emulator.scenario import Scenario

FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "scenarios", "*.yaml")))


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_ikev2_scenario_holds(path: str, tmp_path: object) -> None:
    res = Scenario.load(path).run(str(tmp_path))
    failed = [f"{r.expectation}: {r.detail}" for r in res.results if not r.ok]
    assert not failed, failed
    assert os.path.exists(os.path.join(res.outputs["keys"], "ikev2_decryption_table"))
    with open(os.path.join(res.outputs["keys"], "ikev2_decryption_table")) as f:
        assert f.read().count("\n") >= 1


def test_found_scenarios() -> None:
    assert len(FILES) >= 6
