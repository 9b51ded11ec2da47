"""``awsnetemu vpn``: configuration handling (flags, YAML, errors naming the field) and the run loop's outputs
(events, pcap, key tables) with a fake peer on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cgw_peer.config import DpdTimeoutAction, IkeVersion, Role, StartupAction
from emulator.actions import Action, Address, Event, Transmit
from emulator.cli import build_parser, main
from emulator.pcap import read_pcap
from emulator.vpn_cli import build_config, load_settings, parse_address, run_vpn


def settings(*argv: str) -> dict[str, object]:
    return load_settings(build_parser().parse_args(["vpn", *argv]))


def test_flags_build_the_peer_config() -> None:
    cfg, local, remote = build_config(
        settings(
            "--role", "aws", "--local", "10.99.0.1", "--remote", "10.99.0.2:4501", "--psk", "lab.psk.0123",
            "--proposal", "aes128-sha1-modp2048", "--proposal", "aes256-sha256-ecp256",
            "--esp-proposal", "aes128-sha1", "--local-ts", "10.1.0.0/24", "--remote-ts", "10.2.0.0/24",
            "--dpd-timeout-seconds", "30", "--dpd-timeout-action", "restart", "--dpd-delay", "2",
            "--dpd-interval", "2", "--retransmit-timeout", "0.5", "--retransmit-tries", "2",
            "--phase1-dh-group-numbers", "14,19", "--ike-versions", "ikev1", "--force-encap",
        )
    )  # fmt: skip
    assert local == ("10.99.0.1", 500) and remote == ("10.99.0.2", 4501)
    assert cfg.role is Role.AWS and cfg.ike_version is IkeVersion.IKEV1
    assert cfg.psk == b"lab.psk.0123"
    assert cfg.proposals == ("aes128-sha1-modp2048", "aes256-sha256-ecp256")
    assert cfg.esp_proposals == ("aes128-sha1",)
    assert cfg.local_ts.cidr == "10.1.0.0/24" and cfg.remote_ts.cidr == "10.2.0.0/24"
    assert cfg.options.dpd_timeout_seconds == 30 and cfg.dpd_timeout == 30.0
    assert cfg.options.dpd_timeout_action is DpdTimeoutAction.RESTART
    assert cfg.options.phase1_dh_group_numbers == (14, 19)
    assert cfg.behaviour.dpd_delay == 2.0 and cfg.behaviour.dpd_interval == 2.0
    assert cfg.behaviour.retransmit.timeout == 0.5 and cfg.behaviour.retransmit.tries == 2
    assert cfg.behaviour.retransmit.base == 1.8  # untouched part of the profile
    assert cfg.force_encap is True
    assert cfg.options.startup_action is StartupAction.ADD


def test_yaml_config_and_flag_override(tmp_path: Path) -> None:
    f = tmp_path / "vpn.yaml"
    f.write_text(
        "role: cgw\nlocal: 127.0.0.1:5500\nremote: 127.0.0.2\nike-version: 1\npsk: secret.key.1\n"
        "proposals: [aes256-sha256-modp2048]\n"
        "tunnel_options: {DPDTimeoutSeconds: 45, DPDTimeoutAction: none}\n"
        "behaviour: {dpd_delay: 3, seq_on_retry: increment}\n"
        "dpd_timeout: 9\n"
    )
    cfg, local, remote = build_config(settings("--config", str(f), "--dpd-timeout", "7", "--remote", "127.0.0.3"))
    assert cfg.role is Role.CGW and local == ("127.0.0.1", 5500) and remote == ("127.0.0.3", 500)
    assert cfg.options.dpd_timeout_seconds == 45 and cfg.options.dpd_timeout_action is DpdTimeoutAction.NONE
    assert cfg.behaviour.dpd_delay == 3.0 and cfg.behaviour.seq_on_retry.value == "increment"
    assert cfg.dpd_timeout == 7.0  # CGW role: the emulator setting, the flag beating the file
    assert cfg.proposals == ("aes256-sha256-modp2048",)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--local", "10.0.0.1", "--remote", "10.0.0.2", "--dpd-timeout-seconds", "10"], "DPDTimeoutSeconds"),
        (["--local", "10.0.0.1", "--remote", "10.0.0.2", "--dpd-timeout-action", "explode"], "dpd_timeout_action"),
        (["--local", "10.0.0.1:99999", "--remote", "10.0.0.2"], "local"),
        (["--local", "10.0.0.1", "--remote", "nowhere"], "remote"),
        (["--remote", "10.0.0.2"], "local"),
        (["--local", "10.0.0.1", "--remote", "10.0.0.2", "--local-ts", "10.0.0.300/24"], "local-ts"),
        (["--local", "10.0.0.1", "--remote", "10.0.0.2", "--dpd-delay", "-1"], "dpd-delay"),
        (["--role", "aws", "--local", "10.0.0.1", "--remote", "10.0.0.2", "--psk", "0bad"], "PreSharedKey"),
        (["--local", "10.0.0.1", "--remote", "10.0.0.2", "--startup-action", "start"], "StartupAction"),
        (["--local", "10.0.0.1", "--remote", "10.0.0.2", "--phase1-dh-group-numbers", "5"], "Phase1DHGroup"),
    ],
)
def test_config_errors_exit_2_naming_the_field(argv: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vpn", *argv]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and field in err


def test_unknown_yaml_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("local: 10.0.0.1\nremote: 10.0.0.2\ndpd_dealy: 3\n")
    assert main(["vpn", "--config", str(f)]) == 2
    assert "dpd_dealy: unknown setting" in capsys.readouterr().err


def test_parse_address_ipv6() -> None:
    assert parse_address("[::1]:4500", "local") == ("::1", 4500)
    assert parse_address("::1", "local") == ("::1", 500)


class KeyedFakePeer:
    """Announces keys and the tunnel on start, sends one datagram, answers one; closes with a 'delete'."""

    def __init__(self, local: Address, remote: Address) -> None:
        self.local, self.remote = local, remote

    def start(self, now: float) -> list[Action]:
        return [
            Event("sa_keys", {"ike_version": 1, "icookie": "11" * 8, "rcookie": "22" * 8, "enc_key": "ab" * 16}),
            Event("tunnel_up", {}),
            Transmit(b"\x11" * 8 + b"\x00" * 20, self.local, self.remote, "hello"),
        ]

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        return [Event("got", {"len": len(data)}), Event("tunnel_down", {"reason": "test"})]

    def next_deadline(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> list[Action]:
        return []

    def close(self, now: float) -> list[Action]:
        return [Transmit(b"delete", self.local, self.remote, "delete")]


@pytest.mark.asyncio
async def test_run_vpn_writes_events_pcap_and_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    other.setblocking(False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()
    remote = other.getsockname()
    cfg, _, _ = build_config(settings("--local", f"{local[0]}:{local[1]}", "--remote", f"{remote[0]}:{remote[1]}"))
    stop = asyncio.Event()
    events = tmp_path / "ev.jsonl"
    task = asyncio.create_task(
        run_vpn(
            KeyedFakePeer(local, remote), cfg, local, remote,
            events_path=str(events), pcap_path=str(tmp_path / "c.pcap"), keys_dir=str(tmp_path / "keys"), stop=stop,
        )
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    data, src = await asyncio.wait_for(loop.sock_recvfrom(other, 100), 2)
    assert data.startswith(b"\x11" * 8)
    assert src == local
    other.sendto(b"reply-datagram", src)
    for _ in range(200):
        if "got" in events.read_text():
            break
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(task, 2) == 0
    deleted, _ = await asyncio.wait_for(loop.sock_recvfrom(other, 100), 2)
    assert deleted == b"delete"
    other.close()
    recs = [json.loads(line) for line in events.read_text().splitlines()]
    names = [r["event"] for r in recs]
    assert names[0] == "listening" and names[-1] == "stopped"
    assert {"sa_keys", "tunnel_up", "got", "tunnel_down"} <= set(names)
    assert all(isinstance(r["t"], float) for r in recs)
    assert (tmp_path / "keys" / "ikev1_decryption_table").read_text() == f"{'11' * 8},{'ab' * 16}\n"
    frames = read_pcap(str(tmp_path / "c.pcap"))
    assert len(frames) == 3  # hello out, reply in, delete out
    assert frames[1][1].endswith(b"reply-datagram")
    err = capsys.readouterr().err
    assert "tunnel UP" in err and "tunnel DOWN" in err and "reason test" in err


def test_subcommand_help_lists_every_aws_option() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "emulator", "vpn", "--help"], capture_output=True, text=True, check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    for flag in (
        "--startup-action", "--dpd-timeout-action", "--dpd-timeout-seconds", "--phase1-lifetime-seconds",
        "--phase2-lifetime-seconds", "--rekey-margin-time-seconds", "--rekey-fuzz-percentage",
        "--replay-window-size", "--ike-versions", "--phase1-encryption-algorithms", "--phase2-dh-group-numbers",
        "--tunnel-inside-cidr", "--events", "--pcap", "--keys", "--config", "--proposal",
    ):  # fmt: skip
        assert flag in out


def test_faults_option() -> None:
    from emulator.vpn_cli import fault_plan

    plan = fault_plan('{"loss": 0.25, "drop_kinds": ["dpd_ack"], "blackholes": [[5, 10]]}')
    assert plan is not None and plan.loss == 0.25 and plan.drop_kinds == frozenset({"dpd_ack"})
    assert plan.blackholes == ((5.0, 10.0),)
    assert fault_plan(None) is None


@pytest.mark.parametrize(
    ("text", "msg"), [("{bad", "not valid JSON"), ('{"loss": 2}', "loss"), ('{"lose": 1}', "lose")]
)
def test_faults_errors_exit_2(text: str, msg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vpn", "--local", "127.0.0.1", "--remote", "127.0.0.2", "--faults", text]) == 2
    err = capsys.readouterr().err
    assert "faults" in err and msg in err


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_timer_slack_errors_exit_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["vpn", "--local", "127.0.0.1", "--remote", "127.0.0.2", f"--timer-slack={value}"]
    if value == "soon":  # argparse's own type check (exit 2 from the parser)
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and "--timer-slack" in capsys.readouterr().err
        return
    assert main(argv) == 2
    assert "timer_slack" in capsys.readouterr().err


def test_timer_slack_from_yaml_and_default(tmp_path: Path) -> None:
    from emulator.drivers.asyncio_udp import TIMER_SLACK
    from emulator.vpn_cli import timer_slack

    f = tmp_path / "c.yaml"
    f.write_text("local: 10.0.0.1\nremote: 10.0.0.2\ntimer_slack: 0\n")
    s = settings("--config", str(f))
    assert timer_slack(s["timer_slack"]) == 0.0
    assert "timer_slack" not in settings("--local", "10.0.0.1", "--remote", "10.0.0.2")
    assert TIMER_SLACK == 0.05


# -- issue 13: every setting validated before a socket is opened; issue 12: IKEVersions from --ike-version ----

BASE = ["--local", "127.0.0.1", "--remote", "127.0.0.2"]


def test_ike_version_2_with_startup_start_needs_no_ike_versions(capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _, _ = build_config(settings(*BASE, "--role", "aws", "--ike-version", "2", "--startup-action", "start"))
    assert cfg.options.ike_versions == (IkeVersion.IKEV2,) and cfg.initiates_at_startup
    # The same from YAML.
    assert main(["vpn", *BASE, "--role", "aws", "--ike-version", "2", "--startup-action", "start", "--check"]) == 0
    assert "configuration valid: aws peer, IKEv2" in capsys.readouterr().out
    # Without IKEVersions an IKEv1 peer's options allow IKEv1 only; explicit lists are kept.
    cfg1, _, _ = build_config(settings(*BASE))
    assert cfg1.options.ike_versions == (IkeVersion.IKEV1,)
    cfg2, _, _ = build_config(settings(*BASE, "--ike-versions", "ikev1,ikev2"))
    assert cfg2.options.ike_versions == (IkeVersion.IKEV1, IkeVersion.IKEV2)


def test_ike_version_start_from_yaml(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "role: aws\nlocal: 127.0.0.1\nremote: 127.0.0.2\nike_version: 2\ntunnel_options: {StartupAction: start}\n"
    )
    cfg, _, _ = build_config(settings("--config", str(f)))
    assert cfg.options.ike_versions == (IkeVersion.IKEV2,) and cfg.initiates_at_startup


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--ike-versions", "ikev1", "--ike-version", "2"], "ike_version: ikev2 is not in IKEVersions (ikev1)"),
        (["--role", "aws", "--ike-version", "2", "--startup-action", "start", "--ike-versions", "ikev1,ikev2"],
         "StartupAction: 'start' requires IKEVersions to be [ikev2] only"),
        (["--role", "aws", "--startup-action", "start"], "StartupAction: 'start' requires"),  # IKEv1 peer
    ],
)  # fmt: skip
def test_ike_version_contradictions_stay_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["vpn", *BASE, *argv, "--check"]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("dpd_delay", ".inf", "dpd-delay: must be a finite number"),
        ("dpd_delay", ".nan", "dpd-delay: must be a finite number"),
        ("dpd_delay", "0", "dpd-delay: must be > 0"),
        ("dpd_delay", "-1", "dpd-delay: must be > 0"),
        ("dpd_delay", "0.001", "dpd_delay: must be at least 0.01 s"),
        ("dpd_interval", "'soon'", "dpd-interval: expected a number"),
        ("dpd_timeout", ".inf", "dpd-timeout: must be a finite number"),
        ("retransmit_timeout", ".inf", "retransmit-timeout: must be a finite number"),
        ("retransmit_timeout", "0.001", "retransmit.timeout: must be at least 0.01 s"),
        ("retransmit_base", "0.01", "retransmit: the shortest retransmission wait"),
        ("retransmit_tries", "2.5", "retransmit-tries: expected an integer"),
        ("retransmit_tries", "1000000000", "retransmit-tries: must be >= 0 and <= 100"),
        ("behaviour", "{dpd_delay: -1}", "behaviour.dpd_delay: must be > 0"),  # --config used to accept it
        ("behaviour", "{dpd_delay: .inf}", "behaviour.dpd_delay: must be a finite number"),
        ("behaviour", "{retransmit: 5}", "behaviour.retransmit: must be a mapping"),
        ("timer_slack", ".nan", "timer_slack"),
        ("timer_slack", "true", "timer_slack"),
    ],
)
def test_config_refuses_what_the_flags_refuse(
    key: str, value: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"local: 127.0.0.1\nremote: 127.0.0.2\n{key}: {value}\n")
    assert main(["vpn", "--config", str(f), "--check"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    if key.startswith(("dpd_", "retransmit_")) and not value.startswith((".", "'")):
        # The flag refuses the same value (argparse itself refuses a non-integer --retransmit-tries).
        with contextlib.suppress(SystemExit):
            assert main(["vpn", *BASE, f"--{key.replace('_', '-')}", value, "--check"]) == 2
            assert needle in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--dpd-delay", "--dpd-interval", "--dpd-timeout", "--retransmit-timeout"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_flags_refuse_infinity_and_nan(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vpn", *BASE, f"{flag}={value}", "--check"]) == 2
    assert "must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("psk: 12345678", "psk: expected text (quote it in YAML)"),  # YAML 0123 would be octal 83
        ('role: aws\npsk: "goodkey.123\\n"', "psk: must be one line of text"),  # trailing newline
        ("psk: [a]", "psk: expected text"),
        ("initiate: maybe", "initiate: expected yes or no"),
        ("initiate: 2", "initiate: expected true or false"),
        ("force_encap: 'sometimes'", "force-encap: expected yes or no"),
        ("seed: abc", "seed: expected an integer"),  # used to be a ValueError traceback
        ("seed: 1.5", "seed: expected an integer"),
        ("role: [aws]", "role: expected text"),
        ("role: router", "role: must be one of aws, cgw"),
        ("ike_version: true", "ike-version: must be 1 or 2"),
        ("local_ts: 5", "local-ts: expected text"),
        ("proposals: {a: 1}", "proposal: must be a list"),
        ("proposals: [aes128-sha1-modp2048, 5]", "proposal[1]: expected text"),
        ("name: [x]", "name: expected text"),
        ("tunnel_options: [1]", "tunnel_options: must be a mapping"),
        ("tunnel_options: {IKEVersions: {Value: ikev1}}", "IKEVersions: invalid value"),
        ("faults: {loss: .nan}", "faults.loss: expected a number"),
        ("faults: {blackholes: 5}", "faults.blackholes: must be a list"),
        ("faults: [1]", "faults: must be a mapping"),
        ("profile: [aws]", "profile: must be one of"),
    ],
)
def test_bad_config_values_name_the_field(
    yaml_text: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"local: 127.0.0.1\nremote: 127.0.0.2\n{yaml_text}\n")
    assert main(["vpn", "--config", str(f), "--check"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flag", "target", "needle"),
    [
        ("--events", "missing/dir/ev.jsonl", "does not exist"),
        ("--pcap", "missing/c.pcap", "does not exist"),
        ("--pcap", ".", "is a directory"),
        ("--events", ".", "is a directory"),
        ("--keys", "afile", "not a directory"),
        ("--keys", "afile/sub", "not a directory"),
    ],
)
def test_output_paths_are_checked_before_binding(
    flag: str, target: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import emulator.vpn_cli as vpn_cli

    def must_not_run(*a: object, **kw: object) -> int:
        raise AssertionError("the driver started")

    monkeypatch.setattr(vpn_cli, "run_vpn", must_not_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    assert main(["vpn", *BASE, flag, target]) == 2  # no --check: the validation alone stops it
    err = capsys.readouterr().err
    assert f"{flag.lstrip('-')}: " in err and needle in err


def test_check_builds_the_engine_and_binds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import emulator.vpn_cli as vpn_cli

    def must_not_run(*a: object, **kw: object) -> int:
        raise AssertionError("the driver started")

    monkeypatch.setattr(vpn_cli, "run_vpn", must_not_run)
    # Port 1 on a non-local address: binding would fail with exit 1, --check never tries.
    argv = ["vpn", "--local", "192.0.2.1:1", "--remote", "192.0.2.2", "--events", str(tmp_path / "e.jsonl")]
    assert main([*argv, "--check"]) == 0
    assert "not started: --check" in capsys.readouterr().out
    assert not (tmp_path / "e.jsonl").exists()
    # A bad proposal is found by building the engine, still without sockets.
    assert main([*argv, "--proposal", "aes999-sha1-modp2048", "--check"]) == 2
    assert "aes999" in capsys.readouterr().err
