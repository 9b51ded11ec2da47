"""Layers (issue 12, HELPERS.md design rules): the protocol cores import nothing from ``emulator`` except the
action and error vocabulary, and importing the cores never loads a CLI module, a driver or the scenario runner.

Two independent checks: a static scan of every import statement (including imports inside functions, which a
run-time check only sees when the function runs), and a fresh interpreter that imports every core module and
lists what got loaded."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORES = ("cgw_peer", "tgw_dataplane")
ALLOWED_FROM_EMULATOR = frozenset(("emulator.actions", "emulator.errors"))
# emulator modules the cores' import closure may load: the allowed vocabulary and the package itself
EMULATOR_RUNTIME = ("actions", "errors", "clock", "scheduler", "node", "link", "pcap")
FORBIDDEN_PREFIXES = ("emulator.drivers", "emulator.scenario", "emulator.report", "asyncio")
FORBIDDEN = frozenset(("emulator.cli", "emulator.__main__"))


def _modules(pkg: str) -> list[Path]:
    return sorted(p for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _emulator_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of an ``emulator`` module in ``path``, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "emulator")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "emulator":  # from emulator import x: each name is a module
                out.extend((node.lineno, f"emulator.{a.name}") for a in node.names)
            elif node.module.split(".")[0] == "emulator":
                out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("pkg", CORES)
def test_cores_import_only_the_action_and_error_vocabulary(pkg: str) -> None:
    files = _modules(pkg)
    assert len(files) > 5
    bad = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for p in files
        for line, mod in _emulator_imports(p)
        if mod not in ALLOWED_FROM_EMULATOR
    ]
    assert bad == [], "core modules importing emulator modules other than actions/errors:\n" + "\n".join(bad)


def test_the_scan_sees_nested_and_aliased_imports(tmp_path: Path) -> None:
    """The scanner itself: imports inside functions, ``from emulator import cli`` and ``import emulator.x as y``."""
    p = tmp_path / "m.py"
    p.write_text(
        "from emulator.errors import ConfigError\n"
        "import emulator.drivers.asyncio_udp as d\n"
        "def f():\n    from emulator import cli, actions\n"
        "class C:\n    def g(self):\n        import emulator.scenario\n"
    )
    got = [m for _l, m in _emulator_imports(p)]
    assert got == [
        "emulator.errors",
        "emulator.drivers.asyncio_udp",
        "emulator.cli",
        "emulator.actions",
        "emulator.scenario",
    ]


def test_importing_the_cores_loads_no_cli_driver_or_scenario_module() -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"for pkg in {list(CORES)!r}:\n"
        "    p = importlib.import_module(pkg)\n"
        "    for m in pkgutil.walk_packages(p.__path__, pkg + '.'):\n"
        "        importlib.import_module(m.name)\n"
        f"for m in {list(EMULATOR_RUNTIME)!r}:\n"
        "    importlib.import_module('emulator.' + m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    loaded = json.loads(res.stdout)
    assert "tgw_dataplane.dataplane" in loaded and "cgw_peer" in loaded
    bad = [m for m in loaded if m in FORBIDDEN or m.startswith(FORBIDDEN_PREFIXES) or m.endswith("_cli")]
    assert bad == []


def test_the_cli_is_one_static_list_of_subcommand_modules() -> None:
    """``awsnetemu`` imports its subcommands statically (no run-time import by name, so no cycle a static tool
    misses), and the TGW command lives in the runtime, not in the core."""
    from emulator import cli, tgw_cli

    assert tgw_cli in cli.SUBCOMMAND_MODULES
    assert not (ROOT / "tgw_dataplane" / "cli.py").exists()
    src = (ROOT / "emulator" / "cli.py").read_text()
    assert "importlib" not in src and "not built yet" not in src


MIDDLEBOX_MODULES = ("middlebox", "appliances", "gwlb", "registry")


@pytest.mark.parametrize("mod", MIDDLEBOX_MODULES)
def test_middleboxes_do_not_import_the_dataplane(mod: str) -> None:
    """The plug-ins see the dataplane through ``MiddleboxHost`` only: no import of ``tgw_dataplane.dataplane``,
    not even for type checking, so there is no cycle to hold together by import order."""
    tree = ast.parse((ROOT / "tgw_dataplane" / f"{mod}.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert "tgw_dataplane.dataplane" not in imported


def test_registration_is_a_static_mapping_and_gwlb_state_lives_on_the_dataplane() -> None:
    import gc
    import weakref

    from tgw_dataplane import gwlb, middlebox, registry
    from tgw_dataplane.dataplane import Dataplane
    from tgw_dataplane.model import load_topology

    assert set(registry.MIDDLEBOXES) == {"stateful-firewall", "router", "gwlb-endpoint", "gwlb-target"}
    assert not any(hasattr(m, n) for m in (middlebox, gwlb) for n in ("register_middlebox", "_REGISTRY", "_INSTANCES"))
    # no module-level mutable state in the plug-in modules
    for m in (middlebox, gwlb, registry):
        tree = ast.parse(Path(m.__file__ or "").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                fn = node.value.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                assert name not in ("dict", "WeakKeyDictionary", "WeakValueDictionary", "defaultdict"), m.__name__
    topo = load_topology(ROOT / "fixtures" / "tgw" / "gwlb-story12.yaml")
    a, b = Dataplane(topo), Dataplane(topo)
    ga = gwlb.gwlb_of(a, "gwlb-1")
    assert ga is a.middlebox_host.state[gwlb.STATE_KEY]["gwlb-1"] and ga is not gwlb.gwlb_of(b, "gwlb-1")
    ref = weakref.ref(ga)
    del a, ga
    gc.collect()
    assert ref() is None  # the GWLB state goes with its dataplane
