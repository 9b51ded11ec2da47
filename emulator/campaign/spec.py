"""Campaign files: a base, the faults with their parameter ranges, the invariants. Validated whole, first.

The format (YAML; ``docs/campaigns.md`` has a worked example)::

    name: vpn-catalogue            # names the outputs (default: the file's stem)
    scenario: base.yaml            # the base VPN scenario (emulator/scenario.py), relative to this file;
                                   #   required when a VPN fault is listed
    tgw:                           # the base of TGW faults (all keys optional)
      topology: topo.yaml          #   default: emulator/campaign/topologies/inspection.yaml
      flows: 16                    #   TCP flows per run (1-10000)
      packets: 8                   #   packets per flow (2-1000)
      duration: 60                 #   virtual seconds of traffic (> 0)
      gap: 1.0                     #   seconds between a flow's packets (> 0)
    seeds: 50                      # runs per fault entry (awsnetemu campaign --seeds N overrides it)
    first_seed: 1                  # seeds are first_seed, first_seed + 1, ...
    invariants: [status_agrees_with_events, tunnel_down_has_cause]   # default: all (emulator/campaign/invariants.py)
    shrink: true                   # shrink a failing schedule of several parts (delta debugging)
    faults:                        # *required*, at least one
      - fault: partition           # a name of emulator/campaign/catalogue.py (awsnetemu campaign --list-faults)
        params:                    # each parameter: a value, a range [lo, hi] (numbers: drawn uniformly,
          start: [20, 60]          #   integers included), a list of choices (text/choice/bool parameters),
          duration: [5, 60]        #   or {one_of: [...]} (any type); missing ones take their defaults
        seeds: 20                  # this entry's own number of runs
      - combine:                   # several faults in every run (a combined nemesis); all VPN or all TGW
          - {fault: pause, params: {node: aws, start: [20, 80], duration: [1, 20]}}
          - {fault: loss, params: {start: [10, 90], p: [0.1, 0.5], duration: [10, 60]}}

Every error is one line naming the field (``faults[2].params.p[1]: must be between 0 and 1, got 1.5``) and the
allowed values; the command exits with status 2 before anything runs.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

from emulator import validate as v
from emulator.campaign.catalogue import FAULTS, FaultDef, Param
from emulator.campaign.invariants import INVARIANTS, TGW_INVARIANTS, VPN_INVARIANTS
from emulator.errors import ConfigError

TOP_KEYS = {"name", "description", "scenario", "tgw", "seeds", "first_seed", "invariants", "shrink", "faults"}
ENTRY_KEYS = {"fault", "params", "seeds", "combine"}
TGW_KEYS = {"topology", "flows", "packets", "duration", "gap"}
MAX_SEEDS = 10_000_000


@dataclass
class Range:
    """How one parameter of an entry is drawn."""

    param: Param
    fixed: Any = None
    lo: float | None = None
    hi: float | None = None
    options: tuple[Any, ...] = ()

    def draw(self, rng: random.Random) -> Any:
        if self.options:
            return rng.choice(self.options)
        if self.lo is not None and self.hi is not None:
            if self.param.type == "int":
                return rng.randint(int(self.lo), int(self.hi))
            return round(rng.uniform(self.lo, self.hi), 6)
        return self.fixed

    def band(self, value: Any) -> str:
        """The summary band of ``value``: a third of the range, or the value itself."""
        name = self.param.name
        if self.lo is None or self.hi is None or self.hi <= self.lo:
            return f"{name}={self.param.text(value) if self.param.type != 'float' else f'{value:g}'}"
        step = (self.hi - self.lo) / 3
        i = min(2, int((float(value) - self.lo) / step)) if step > 0 else 0
        a, b = self.lo + i * step, self.lo + (i + 1) * step
        close = "]" if i == 2 else ")"
        return f"{name} in [{a:.3g}, {b:.3g}{close}"


@dataclass
class Member:
    """One fault of an entry and how its parameters are drawn."""

    fault: FaultDef
    ranges: dict[str, Range]


@dataclass
class Entry:
    """One ``faults:`` item, validated: one fault, or several combined in every run (``combine:``)."""

    index: int
    members: list[Member]
    seeds: int | None

    @property
    def fault(self) -> FaultDef:
        """The (first) fault: its kind is the entry's, its band parameter the summary's."""
        return self.members[0].fault

    @property
    def name(self) -> str:
        return "+".join(m.fault.name for m in self.members)

    def draw(self, campaign: str, seed: int) -> list[dict[str, Any]]:
        """Each member's parameters for ``seed`` (the first member's draw is that of a single-fault entry)."""
        out = []
        for j, m in enumerate(self.members):
            tag = f"{m.fault.name}" if j == 0 else f"{j}:{m.fault.name}"
            rng = random.Random(f"{campaign}:{self.index}:{tag}:{seed}")
            out.append({name: r.draw(rng) for name, r in m.ranges.items()})
        return out

    def band(self, drawn: list[dict[str, Any]]) -> str:
        m = self.members[0]
        return m.ranges[m.fault.band].band(drawn[0][m.fault.band])

    def params_doc(self, drawn: list[dict[str, Any]]) -> dict[str, Any]:
        """The drawn parameters as results show them: the dict of a single fault, or ``combine:`` a list."""
        if len(drawn) == 1:
            return drawn[0]
        return {"combine": [{"fault": m.fault.name, **d} for m, d in zip(self.members, drawn, strict=True)]}


@dataclass
class CampaignSpec:
    """A loaded and validated campaign file."""

    path: str
    name: str
    scenario: str | None
    tgw_topology: str
    tgw: dict[str, Any]
    seeds: int
    first_seed: int
    invariants: tuple[str, ...]
    shrink: bool
    entries: list[Entry]
    raw: dict[str, Any] = field(default_factory=dict)
    vpn_base: Any = None
    tgw_base: Any = None

    def invariants_for(self, kind: str) -> tuple[str, ...]:
        pool = VPN_INVARIANTS if kind == "vpn" else TGW_INVARIANTS
        return tuple(i for i in self.invariants if i in pool)


def load(path: str) -> CampaignSpec:
    """Load and validate a campaign file (ConfigError naming the field)."""
    raw = v.load_yaml(path, "campaign")
    if not isinstance(raw, dict):
        v.fail("campaign", f"{path}: the top level must be a mapping")
    return from_mapping(raw, path)


def from_mapping(raw: dict[str, Any], path: str) -> CampaignSpec:
    """Validate a campaign document (``path`` names it and anchors its relative paths)."""
    v.keys(raw, "", TOP_KEYS, required=("faults",))
    base_dir = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    name = v.safe_name(raw["name"], "name") if "name" in raw else v.sanitise_name(stem)
    if raw.get("description") is not None:
        v.string(raw["description"], "description", empty=True, single_line=False)
    seeds = v.integer(raw.get("seeds", 10), "seeds", minimum=1, maximum=MAX_SEEDS)
    first_seed = v.integer(raw.get("first_seed", 1), "first_seed", minimum=0)
    shrink = v.boolean(raw.get("shrink", True), "shrink")
    if "invariants" in raw:
        inv = v.string_list(raw["invariants"], "invariants")
        for i, n in enumerate(inv):
            if n not in INVARIANTS:
                v.fail(f"invariants[{i}]", f"unknown invariant {n!r} (allowed: {v.allowed(INVARIANTS)})")
        invariants = tuple(dict.fromkeys(inv))
    else:
        invariants = tuple(INVARIANTS)
    items = v.sequence(raw.get("faults"), "faults")
    if not items:
        v.fail("faults", "must list at least one fault")
    entries = [_entry(x, f"faults[{i}]", i) for i, x in enumerate(items)]
    kinds = {e.fault.kind for e in entries}
    scenario = None
    vpn_base = None
    if "vpn" in kinds or raw.get("scenario") is not None:
        if raw.get("scenario") is None:
            first = next(e for e in entries if e.fault.kind == "vpn")
            v.fail("scenario", f"required: faults[{first.index}] ({first.name}) is a VPN fault")
        scenario = v.string(raw["scenario"], "scenario")
        if not os.path.isabs(scenario):
            scenario = os.path.join(base_dir, scenario)
        vpn_base = _vpn_base(scenario)
    tgw_raw = dict(v.mapping(raw.get("tgw"), "tgw"))
    v.keys(tgw_raw, "tgw", TGW_KEYS)
    from emulator.campaign.tgwrun import DEFAULT_TOPOLOGY

    topo = tgw_raw.get("topology")
    topology = DEFAULT_TOPOLOGY if topo is None else v.string(topo, "tgw.topology")
    if not os.path.isabs(topology):
        topology = os.path.join(base_dir, topology)
    tgw: dict[str, Any] = {
        "flows": v.integer(tgw_raw.get("flows", 16), "tgw.flows", minimum=1, maximum=10_000),
        "packets": v.integer(tgw_raw.get("packets", 8), "tgw.packets", minimum=2, maximum=1000),
        "duration": v.number(tgw_raw.get("duration", 60.0), "tgw.duration", above=0.0),
        "gap": v.number(tgw_raw.get("gap", 1.0), "tgw.gap", above=0.0),
    }
    tgw_base = None
    if "tgw" in kinds:
        from emulator.campaign.tgwrun import TgwBase
        from tgw_dataplane.loader import load_any

        try:
            t = load_any(topology)
        except ConfigError as err:
            raise ConfigError(f"tgw.topology: {err}") from None
        tgw_base = TgwBase(t, topology, **tgw)
        for ent in entries:
            if ent.fault.kind == "tgw":
                for j, mem in enumerate(ent.members):
                    w = f"faults[{ent.index}]" + (f".combine[{j}]" if len(ent.members) > 1 else "")
                    tgw_base.check_fault(mem.fault.name, {}, w)
                    for r in mem.ranges.values():
                        for value in (r.fixed, *r.options):
                            if value is not None:
                                tgw_base.check_fault(mem.fault.name, {r.param.name: value}, f"{w}.params")
    return CampaignSpec(
        path=path,
        name=name,
        scenario=scenario,
        tgw_topology=topology,
        tgw=tgw,
        seeds=seeds,
        first_seed=first_seed,
        invariants=invariants,
        shrink=shrink,
        entries=entries,
        raw=raw,
        vpn_base=vpn_base,
        tgw_base=tgw_base,
    )


def _vpn_base(path: str) -> Any:
    from emulator.campaign.runner import VpnBase
    from emulator.scenario import Scenario

    try:
        sc = Scenario.load(path)  # validates the base scenario whole
    except ConfigError as e:
        raise ConfigError(f"scenario {path}: {e}") from None
    return VpnBase(sc.raw, sc.base_dir, sc.name)


def _entry(x: Any, where: str, index: int) -> Entry:
    m = v.mapping(x, where, none_is_empty=False)
    v.keys(m, where, ENTRY_KEYS)
    seeds = None if m.get("seeds") is None else v.integer(m["seeds"], f"{where}.seeds", minimum=1, maximum=MAX_SEEDS)
    if "combine" in m:
        for k in ("fault", "params"):
            if k in m:
                v.fail(f"{where}.{k}", "not with combine (each combined fault has its own fault and params)")
        items = v.sequence(m["combine"], f"{where}.combine")
        if len(items) < 2:
            v.fail(f"{where}.combine", "must list at least two faults")
        members = []
        for j, item in enumerate(items):
            w = f"{where}.combine[{j}]"
            im = v.mapping(item, w, none_is_empty=False)
            v.keys(im, w, {"fault", "params"}, required=("fault",))
            members.append(_member(im, w))
            if members[-1].fault.kind != members[0].fault.kind:
                v.fail(f"{w}.fault", f"a {members[-1].fault.kind} fault cannot run with {members[0].fault.kind} faults")
        return Entry(index, members, seeds)
    if "fault" not in m:
        v.fail(f"{where}.fault", "required (or combine: a list of faults)")
    return Entry(index, [_member(m, where)], seeds)


def _member(m: Any, where: str) -> Member:
    name = m["fault"]
    fd = FAULTS.get(name) if isinstance(name, str) else None
    if fd is None:
        v.fail(f"{where}.fault", f"unknown fault {name!r} (allowed: {v.allowed(FAULTS)})")
    params = dict(v.mapping(m.get("params"), f"{where}.params"))
    v.keys(params, f"{where}.params", [p.name for p in fd.all_params()])
    ranges = {p.name: _range(p, params.get(p.name, p.default), f"{where}.params.{p.name}") for p in fd.all_params()}
    return Member(fd, ranges)


def _range(p: Param, value: Any, where: str) -> Range:
    if isinstance(value, dict):
        m = v.mapping(value, where)
        v.keys(m, where, {"one_of"}, required=("one_of",))
        opts = v.sequence(m["one_of"], f"{where}.one_of")
        if not opts:
            v.fail(f"{where}.one_of", "must list at least one value")
        return Range(p, options=tuple(p.check(o, f"{where}.one_of[{i}]") for i, o in enumerate(opts)))
    if isinstance(value, list | tuple):
        if p.type in ("float", "int"):
            items = v.sequence(value, where, length=2)
            lo = p.check(items[0], f"{where}[0]")
            hi = p.check(items[1], f"{where}[1]")
            if hi < lo:
                v.fail(where, f"must be [lo, hi] with lo <= hi, got {list(value)!r}")
            if math.isinf(hi):
                v.fail(f"{where}[1]", "must be finite (a range is drawn from)")
            return Range(p, lo=float(lo), hi=float(hi))
        if not value:
            v.fail(where, "must list at least one value")
        return Range(p, options=tuple(p.check(o, f"{where}[{i}]") for i, o in enumerate(value)))
    return Range(p, fixed=p.check(value, where))
