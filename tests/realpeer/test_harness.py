"""The harness's own rules (no real peer needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realpeer import harness
from tests.realpeer.harness import CharonConf, emulator_args


def test_missing_tools_fail_in_ci_and_skip_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "missing_tools", lambda: ["ike-scan"])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="ike-scan"):
        harness.require_tools()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="ike-scan"):
        harness.require_tools()


def test_charon_configs_carry_the_settings(tmp_path: Path) -> None:
    c = CharonConf(version=2, proposals="aes256-sha256-ecp256", dpd_action="restart", kernel="netlink")
    sw = c.swanctl_conf()
    assert "version = 2" in sw and "proposals = aes256-sha256-ecp256" in sw and "dpd_action = restart" in sw
    ss = c.strongswan_conf(tmp_path)
    assert "kernel-libipsec" not in ss and f"unix://{tmp_path}/charon.vici" in ss and "ike = 4" in ss


def test_emulator_args_version() -> None:
    args = emulator_args("aws", version=2, extra=["--startup-action", "start"])
    assert args[args.index("--ike-version") + 1] == "2" and args[-2:] == ["--startup-action", "start"]
