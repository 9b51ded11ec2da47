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


CHARON_ENC_LOG = """\
16:25:45.325 14[ENC] <vpn|1> generating payload of type NOTIFY_V1
16:25:45.325 14[ENC] <vpn|1>   generating rule 13 U_INT_16
16:25:45.325 15[ENC] <vpn|1> parsing NOTIFY_V1 payload, 40 bytes left
16:25:45.325 14[ENC] <vpn|1>    => 2 bytes @ 0x7fb6ec5eb9b4
16:25:45.325 14[ENC] <vpn|1>    0: 8D 28                                            .(
16:25:45.325 14[ENC] <vpn|1>   generating rule 15 CHUNK_DATA
16:25:45.325 14[ENC] <vpn|1>    => 4 bytes @ 0x7fb6c0000d90
16:25:45.327 15[ENC] <vpn|1>   parsing rule 13 U_INT_16
16:25:45.327 15[ENC] <vpn|1>    => 36137
16:25:45.325 14[ENC] <vpn|1>    0: 40 E5 37 ED                                      @.7.
16:25:45.327 15[ENC] <vpn|1>   parsing rule 15 CHUNK_DATA
16:25:45.327 15[ENC] <vpn|1>    => 4 bytes @ 0x7fb6b4003030
16:25:45.327 15[ENC] <vpn|1>    0: 40 E5 37 ED                                      @.7.
16:25:45.400 15[ENC] <vpn|1> parsing NOTIFY_V1 payload, 40 bytes left
16:25:45.401 15[ENC] <vpn|1>   parsing rule 13 U_INT_16
16:25:45.401 15[ENC] <vpn|1>    => 24578
16:25:45.401 15[ENC] <vpn|1>   parsing rule 15 CHUNK_DATA
16:25:45.401 15[ENC] <vpn|1>    => 4 bytes @ 0x7fb6b4003030
16:25:45.401 15[ENC] <vpn|1>    0: 00 00 00 01                                      ....
"""


def test_dpd_notifies_from_interleaved_threads(tmp_path: Path) -> None:
    """Two charon threads' lines interleave; notify types other than DPD are ignored."""
    (tmp_path / "charon.log").write_text(CHARON_ENC_LOG)
    c = harness.Charon(harness.Lab(tmp_path), CharonConf(), tmp_path)
    assert c.dpd_notifies() == [("out", 36136, 0x40E537ED), ("in", 36137, 0x40E537ED)]
