"""Issue 13, ``awsnetemu vpn --config`` YAML: arbitrary and mutated documents. Every outcome is exit 0 or 2 within
the time bound, never a traceback; validation ends before any socket (``run_vpn`` is a stub that records the
call: with ``--check`` it is never reached, without it only a valid configuration reaches it)."""

from __future__ import annotations

import copy
import os
import tempfile

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.inputs.helpers import assert_clean, mutate, run_cli, values

BASES: dict[str, dict[str, object]] = {
    "aws-ikev2-start": {
        "role": "aws",
        "local": "127.0.0.1:5500",
        "remote": "127.0.0.2:5500",
        "ike_version": 2,
        "psk": "goodkey.123",
        "proposals": ["aes128-sha256-modp2048"],
        "esp_proposals": ["aes128-sha256"],
        "tunnel_options": {"DPDTimeoutSeconds": 30, "StartupAction": "start", "DPDTimeoutAction": "restart"},
        "behaviour": {"dpd_delay": 2, "retransmit": {"timeout": 1, "base": 1.5, "tries": 3}},
        "dpd_interval": 2,
        "initiate": "yes",
        "seed": 7,
        "faults": {"loss": 0.1, "blackholes": [[1, 2]], "drop_kinds": ["dpd_ack"]},
        "timer_slack": 0.01,
        "events": "@/ev.jsonl",
        "pcap": "@/c.pcap",
        "keys": "@/keys",
    },
    "cgw-ikev1": {
        "role": "cgw",
        "local": "10.0.0.1",
        "remote": "10.0.0.2",
        "ike-version": 1,
        "psk": "any key the device takes",
        "profile": "libreswan",
        "local_ts": "10.1.0.0/24",
        "remote_ts": "10.2.0.0/24",
        "local_id": "cgw.example",
        "dpd_delay": 10,
        "dpd_timeout": 30,
        "retransmit_timeout": 0.5,
        "retransmit_tries": 4,
        "force_encap": True,
        "no_nat_t": False,
        "Phase1LifetimeSeconds": 28800,
        "ike_versions": "ikev1,ikev2",
        "name": "tunnel1",
    },
    "ipv6-minimal": {"local": "[::1]:5500", "remote": "::2"},
}


def _materialise(doc: object, d: str) -> object:
    """Output paths point into the example's temporary directory ('@' stands for it)."""
    if isinstance(doc, dict):
        return {k: _materialise(v, d) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_materialise(v, d) for v in doc]
    if isinstance(doc, str) and doc.startswith("@/"):
        return os.path.join(d, doc[2:])
    return doc


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(doc: object, check: bool, *, fuzzing: bool = True) -> None:
    with tempfile.TemporaryDirectory(prefix="h2-inputs-") as d:
        path = os.path.join(d, "vpn.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(_materialise(doc, d), f, allow_unicode=True)
        o = run_cli(["vpn", "--config", path, *(["--check"] if check else [])])
        if fuzzing:
            event(f"exit {o.code}")
        assert_clean(o, {0, 2})
        if check:
            assert not o.driver_started
        else:
            assert o.driver_started == (o.code == 0), (o.code, o.err)
        assert sorted(os.listdir(d)) == ["vpn.yaml"]  # validation writes nothing


def test_bases_are_valid() -> None:
    for doc in BASES.values():
        _check(copy.deepcopy(doc), check=True, fuzzing=False)
        _check(copy.deepcopy(doc), check=False, fuzzing=False)


@FUZZ
@given(st.data(), st.sampled_from(sorted(BASES)), st.booleans())
def test_mutated_configs(data: st.DataObject, name: str, check: bool) -> None:
    _check(mutate(data, copy.deepcopy(BASES[name])), check)


@settings(FUZZ, max_examples=150)
@given(values, st.booleans())
def test_arbitrary_configs(doc: object, check: bool) -> None:
    _check(doc, check)
