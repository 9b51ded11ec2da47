"""Issue 13: every scenario value is checked when the file is loaded, before anything runs; each failure is one
line naming the field. One test per case that used to be accepted silently, to crash (often only after the
whole run) or to hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from emulator.cli import main
from emulator.errors import ConfigError
from emulator.scenario import TIMELINE_SKIP, Scenario, check, timeline
from emulator.trace import Trace


def refused(raw: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as ei:
        Scenario.from_mapping(raw)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


# -- accepted silently before ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"cgw": {"initiate": "no"}},  # bool('no') is True: it meant "initiate"
        {"aws": {"initiate": "false"}},
        {"aws": {"nat_t": "off"}},
        {"cgw": {"force_encap": 1}},
        {"schedule": [{"at": 1, "do": "revive", "node": "cgw", "initiate": "no"}]},
    ],
)
def test_booleans_are_booleans(raw: dict[str, object]) -> None:
    msg = refused(raw)
    assert "expected true or false" in msg


def test_yaml_booleans_still_work() -> None:
    sc = Scenario.from_mapping(yaml.safe_load("cgw: {initiate: no, nat_t: yes}"))
    assert sc.configs["cgw"].initiate is False and sc.configs["cgw"].nat_t is True


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", ".hidden", "-x", "", "a\\b", "x" * 101, 5])
def test_names_that_would_leave_out_are_refused(name: object) -> None:
    assert refused({"name": name}).startswith("name: ")


def test_default_name_from_the_file_stem_is_made_safe(tmp_path: Path) -> None:
    f = tmp_path / "my scenario (copy).yaml"
    f.write_text("duration: 1\n")
    assert Scenario.load(str(f)).name == "my_scenario__copy_"
    g = tmp_path / ".hidden.yaml"
    g.write_text("duration: 1\n")
    assert Scenario.load(str(g)).name == "_hidden"


def test_a_safe_name_writes_inside_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = Scenario.from_mapping({"name": "a.b_c-1", "duration": 1}).run(str(out))
    assert sorted(os.listdir(out)) == ["a.b_c-1-keys", "a.b_c-1-timeline.txt", "a.b_c-1.jsonl", "a.b_c-1.pcap"]
    assert all(os.path.dirname(p) == str(out) for p in res.outputs.values())


@pytest.mark.parametrize(
    ("psk", "hint"),
    [
        ("goodkey.123\n", "'\\n' at position 12"),  # passed AWS's rule through `$`
        ("0goodkey.123", "starting with 0"),  # scenario PSKs were not checked at all
        ("short", "5 characters"),
        ("has space.1", "' ' at position 4"),
        (12345678, "must be text"),  # YAML 0123 would be an octal integer
    ],
)
def test_scenario_psk_follows_aws_rule(psk: object, hint: str) -> None:
    msg = refused({"psk": psk})
    assert msg.startswith("psk: ") and hint in msg


def test_tunnel_psk_with_trailing_newline() -> None:
    msg = refused(yaml.safe_load('tunnel: {PreSharedKey: "goodkey.123\\n"}'))
    assert msg.startswith("tunnel.PreSharedKey:")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"duration": float("inf")}, "duration: must be a finite number"),  # hung
        ({"duration": float("nan")}, "duration: expected a number"),  # hung
        ({"duration": 0}, "duration: must be > 0"),
        ({"aws": {"behaviour": {"dpd_delay": float("inf")}}}, "aws.behaviour.dpd_delay: must be a finite"),
        ({"aws": {"behaviour": {"dpd_delay": float("nan")}}}, "aws.behaviour.dpd_delay: must be a finite"),
        ({"aws": {"behaviour": {"dpd_delay": 0}}}, "aws.behaviour.dpd_delay: must be > 0"),  # livelocked
        ({"links": {"cgw->aws": {"delay": float("nan")}}}, "links.cgw->aws.delay: expected a number"),
        ({"links": {"cgw->aws": {"delay": float("inf")}}}, "links.cgw->aws.delay: must be a finite number"),
        ({"links": {"cgw->aws": {"jitter": float("inf")}}}, "links.cgw->aws.jitter: must be a finite number"),
        ({"links": {"aws->cgw": {"blackholes": [[float("nan"), 5]]}}}, "links.aws->cgw.blackholes[0][0]"),
        ({"schedule": [{"at": float("nan"), "do": "crash", "node": "aws"}]}, "schedule[0].at: expected a number"),
        ({"schedule": [{"at": float("inf"), "do": "crash", "node": "aws"}]}, "schedule[0].at: must be a finite"),
        ({"schedule": [{"at": -1, "do": "crash", "node": "aws"}]}, "schedule[0].at: must be >= 0"),
    ],
)
def test_nan_and_infinity_are_refused(raw: dict[str, object], needle: str) -> None:
    assert needle in refused(raw)


def test_open_ended_windows_may_end_at_infinity() -> None:
    sc = Scenario.from_mapping(
        yaml.safe_load(
            "links: {cgw->aws: {blackholes: [[10, .inf]], drop_kinds: [dpd_ack], drop_kinds_window: [5, .inf]}}\n"
            "schedule: [{at: 1, do: blackhole, direction: aws->cgw, until: .inf}]"
        )
    )
    assert sc.links["cgw->aws"].blackholes == ((10.0, float("inf")),)
    assert sc.schedule[0].until == float("inf")


# -- crashed (TypeError, KeyError, ...) at load or in the run ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"links": {"cgw->aws": {"blackholes": 5}}}, "links.cgw->aws.blackholes: must be a list"),
        ({"links": {"cgw->aws": {"blackholes": [[1, 2, 3]]}}}, "links.cgw->aws.blackholes[0]: must be a list of 2"),
        ({"links": {"cgw->aws": {"blackholes": [[5, 1]]}}}, "end >= start"),
        ({"links": {"cgw->aws": {"drop_kinds": "dpd_ack"}}}, "links.cgw->aws.drop_kinds: must be a list"),
        ({"links": {"cgw->aws": {"drop_kinds": [1]}}}, "links.cgw->aws.drop_kinds[0]: expected text"),
        ({"links": {"cgw->aws": {"drop_kinds_window": 3}}}, "links.cgw->aws.drop_kinds_window: must be a list"),
        ({"links": {"cgw->aws": {"loss": "high"}}}, "links.cgw->aws.loss: expected a number"),
        ({"links": {"cgw->aws": {"loss": True}}}, "links.cgw->aws.loss: expected a number"),
        ({"links": {"cgw->aws": [1]}}, "links.cgw->aws: must be a mapping"),
        ({"links": [1]}, "links: must be a mapping"),
        ({"schedule": [{"at": 1, "do": "faults", "plan": {"delay": []}}]}, "schedule[0].plan.delay"),
        ({"schedule": [{"at": 1, "do": "faults", "plan": 5}]}, "schedule[0].plan: must be a mapping"),
        ({"schedule": 5}, "schedule: must be a list"),
        ({"schedule": ["crash"]}, "schedule[0]: must be a mapping"),
        ({"schedule": [{"at": "soon", "do": "crash", "node": "aws"}]}, "schedule[0].at: expected a number"),
        ({"schedule": [{"at": 1, "do": "esp", "node": "aws", "every": "often"}]}, "schedule[0].every"),
        ({"schedule": [{"at": 5, "do": "esp", "node": "aws", "until": 1}]}, "schedule[0].until: must be >= at"),
        ({"schedule": [{"at": 5, "do": "blackhole", "until": 1}]}, "schedule[0].until: must be >= at"),
        ({"schedule": [{"at": 1, "do": "crash", "node": "aws", "untill": 5}]}, "schedule[0].untill: unknown key"),
        ({"tunnel": {"IKEVersions": None}}, "tunnel.IKEVersions: invalid value None"),
        ({"tunnel": {"DPDTimeoutAction": ["clear"]}}, "tunnel.DPDTimeoutAction: invalid value"),
        ({"tunnel": [1]}, "tunnel: must be a mapping"),
        ({"aws": {"behaviour": {"retransmit": 5}}}, "aws.behaviour.retransmit: must be a mapping"),
        ({"aws": {"behaviour": [1]}}, "aws.behaviour: must be a mapping"),
        ({"aws": {"proposals": "aes128-sha1-modp2048"}}, "aws.proposals: must be a list"),
        ({"aws": {"proposals": ["aes999-sha1-modp2048"]}}, "aws.proposals"),
        ({"aws": {"local_ts": "10.0.0.300/24"}}, "aws.local_ts: expected a CIDR block"),
        ({"aws": {"address": "nowhere"}}, "aws.address: expected an IP address"),
        ({"aws": {"address": "198.51.100.20"}}, "cgw.address: must differ from aws.address"),
        ({"aws": {"address": "2001:db8::1"}}, "cgw.address: must be the same address family"),
        ({"seed": "abc"}, "seed: expected an integer"),
        ({"seed": 1.5}, "seed: expected an integer"),
        ({"ike_version": True}, "ike_version: must be one of 1, 2"),
        ({"description": ["x"]}, "description: expected text"),
        ({"max_events": 0}, "max_events: must be >= 1"),
        ({"tgw": {"topology": 5, "attachment": "x"}}, "tgw.topology: expected text"),
        ({"tgw": {"attachment": "x"}}, "tgw.topology: required"),
    ],
)
def test_wrong_types_name_the_field(raw: dict[str, object], needle: str) -> None:
    assert needle in refused(raw)


@pytest.mark.parametrize(
    ("expect", "needle"),
    [
        # each used to crash with a traceback only after the whole run
        ({"event": "tunnel_up", "within": [1]}, "expect[0].within: must be a list of 2 items"),
        ({"event": "tunnel_up", "within": [5, 1]}, "expect[0].within: must be [start, end]"),
        ({"event": "tunnel_up", "within": [1, float("inf")]}, "expect[0].within: the end must be finite"),
        ({"event": "tunnel_up", "at": "x"}, "expect[0].at: expected a number"),
        ({"event": "tunnel_up", "count": -1}, "expect[0].count: must be >= 0"),
        ({"event": "tunnel_up", "count": "one"}, "expect[0].count: expected an integer"),
        ({"event": "tunnel_up", "fields": 3}, "expect[0].fields: must be a mapping"),
        ({"event": "tunnel_up", "nth": 0, "at": 1}, "expect[0].nth: must be >= 1"),
        ({"event": "tunnel_up", "nth": 2}, "expect[0].nth: only with at or within"),
        ({"event": "tunnel_up", "min": 3, "max": 1}, "expect[0].min: must be <= max"),
        ({"event": "tunnel_up", "tolerance": -1, "at": 1}, "expect[0].tolerance: must be >= 0"),
        ({"event": "tunnel_up", "node": "router"}, "expect[0].node: must be one of aws, cgw, tgw"),
        ({"absent": "tunnel_up"}, "expect[0].absent: must be a mapping"),
        ({"absent": {"event": "tunnel_up", "when": 1}}, "expect[0].absent.when: unknown key"),
        ({"absent": {"node": "aws"}}, "expect[0].absent.event: required"),
        ({"absent": {"event": "tunnel_up"}, "node": "aws"}, "expect[0].node: unknown key"),
        ({"status": {"node": "aws", "Staus": "UP"}}, "expect[0].status.Staus: unknown key"),
        ({"status": {"node": "aws", "Status": "up"}}, "expect[0].status.Status: must be one of UP, DOWN"),
        ({"status": {"node": "aws"}}, "expect[0].status: names nothing to check"),
        ({"status": {"node": "tgw", "Status": "UP"}}, "expect[0].status.node: must be one of aws, cgw"),
        ({"tgw_flow": {"name": "x"}}, "expect[0].tgw_flow: the scenario has no tgw section"),
        ("tunnel_up", "expect[0]: must be a mapping"),
    ],
)
def test_bad_expectations_fail_at_load(expect: object, needle: str) -> None:
    assert needle in refused({"expect": [expect]})


# -- issue 12: expectations name real events and fields --------------------------------------------------------


def test_unknown_event_in_absent_names_the_expectation() -> None:
    expect = [
        {"event": "tunnel_up", "node": "aws"},
        {"status": {"Status": "UP"}},
        {"absent": {"event": "dpd_timeout"}},
        {"absent": {"event": "dpd_timout", "node": "cgw"}},  # misspelt: it used to pass silently
    ]
    msg = refused({"expect": expect})
    assert msg.startswith("expect[3].absent.event: unknown event 'dpd_timout' (known: ")
    assert "dpd_timeout" in msg and "tunnel_up" in msg


@pytest.mark.parametrize(
    ("expect", "needle"),
    [
        ({"event": "dpd_timout"}, "expect[0].event: unknown event 'dpd_timout'"),
        ({"event": 5}, "expect[0].event: unknown event 5"),
        ({"event": "dpd_timeout", "fields": {"acton": "clear"}}, "expect[0].fields: event 'dpd_timeout' has no"),
        ({"absent": {"event": "tunnel_down", "fields": {"why": "x"}}}, "expect[0].absent.fields: event 'tunnel_down'"),
        ({"event": "tgw_routes_changed", "fields": {"up": "yes"}}, "expect[0].fields.up: 'yes' can never match"),
        ({"event": "dpd_timeout", "fields": {"probes": "3"}}, "expect[0].fields.probes: '3' can never match"),
    ],
)
def test_unknown_events_and_fields_are_refused(expect: object, needle: str) -> None:
    assert needle in refused({"expect": [expect]})


def test_declared_fields_and_types_are_accepted() -> None:
    Scenario.from_mapping(
        {
            "expect": [
                {"event": "dpd_timeout", "fields": {"action": "clear", "last_inbound": 20, "retransmits": 2}},
                {"event": "dpd_request_sent", "fields": {"seq": 5, "message_id": None}, "count": 0},
                {"absent": {"event": "datagram_sent", "fields": {"kind": "dpd_ack", "lost": True}}},
            ]
        }
    )


def test_check_refuses_a_bad_expectation_too() -> None:
    tr = Trace()
    tr.add(1.0, "aws", "tunnel_up")
    with pytest.raises(ConfigError, match="unknown event 'tunel_up'"):
        check({"absent": {"event": "tunel_up"}}, tr, {})


def test_timeline_skip_set_comes_from_the_event_declarations() -> None:
    from cgw_peer.events import EVENTS

    assert {"datagram_sent", "sa_keys"} == TIMELINE_SKIP and set(EVENTS) >= TIMELINE_SKIP
    tr = Trace()
    tr.add(1.0, "aws", "datagram_sent", {"kind": "x", "src": "a", "dst": "b", "len": 1, "lost": False})
    tr.add(1.5, "aws", "tunnel_up")
    assert timeline(tr) == "    1.500000  aws  tunnel_up\n"


# -- the CLI: one line, exit 2, nothing run -------------------------------------------------------------------


def test_cli_refuses_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("duration: 1\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration: 1\nexpect: [{absent: {event: dpd_timout}}]\n")
    out = tmp_path / "out"
    assert main(["run", str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expect[0].absent.event: unknown event 'dpd_timout'" in err
    assert not out.exists()  # the good file did not run either


def test_cli_out_must_be_a_writable_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("duration: 1\n")
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["run", str(good), "--out", str(afile)]) == 2
    assert "--out: " in capsys.readouterr().err
    assert main(["run", str(good), "--out", str(afile / "sub")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["demo", "--out", str(afile)]) == 2
    assert main(["run", str(good), "--out", str(tmp_path / "new" / "deeper")]) == 0  # created on demand


def test_cli_two_files_with_one_name_collide_in_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n in ("a", "b"):
        (tmp_path / f"{n}.yaml").write_text("name: same\nduration: 1\n")
    argv = ["run", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "both named 'same'" in capsys.readouterr().err
    assert main(argv) == 0  # without --out nothing is written, so nothing collides


def test_cli_check_validates_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: x\nduration: 100000\nexpect: [{event: tunnel_up, min: 1}]\n")
    out = tmp_path / "out"
    assert main(["run", "--check", str(f), "--out", str(out)]) == 0
    assert "valid x" in capsys.readouterr().out and not out.exists()


@pytest.mark.parametrize(
    "text",
    [
        "{{",  # YAML syntax
        "\tkey: 1",  # a tab
        "- a\n- b",  # a list at the top
        "just text",
        "",  # empty
        "duration: !!python/object:os.system x",  # not a safe tag
    ],
)
def test_unreadable_files_exit_2(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    assert main(["run", str(f)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_binary_garbage_and_directories_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_bytes(b"\xff\xfe\x00garbage\x80")
    assert main(["run", str(f)]) == 2
    assert main(["run", str(tmp_path)]) == 2
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.count("configuration error") == 3


def test_ikev2_startup_start_without_ike_versions_runs() -> None:
    # Issue 12: IKEVersions defaults to the scenario's ike_version, so StartupAction start alone is enough.
    sc = Scenario.from_mapping(
        {"duration": 5, "ike_version": 2, "tunnel": {"StartupAction": "start"}, "cgw": {"initiate": False}}
    )
    assert [v.value for v in sc.configs["aws"].options.ike_versions] == ["ikev2"]
    res = sc.run()
    up = res.trace.first("ike_sa_established", node="aws")
    assert up is not None and up.fields["initiator"] is True and up.fields["version"] == 2
    assert res.status["aws"]["Status"] == "UP"
    msg = refused({"ike_version": 2, "tunnel": {"StartupAction": "start", "IKEVersions": ["ikev1", "ikev2"]}})
    assert msg.startswith("tunnel.StartupAction: 'start' requires IKEVersions to be [ikev2] only")
    assert refused({"ike_version": 1, "tunnel": {"IKEVersions": ["ikev2"]}}).startswith(
        "aws.ike_version: ikev1 is not in"
    )
