"""scapy is a test oracle and teaching tool; the runtime packages must never import it (style.md §3.3)."""

from __future__ import annotations

import subprocess
import sys


def test_packages_do_not_import_scapy() -> None:
    code = (
        "import sys, pkgutil, importlib\n"
        "import emulator, cgw_peer, tgw_dataplane\n"
        "for pkg in (emulator, cgw_peer, tgw_dataplane):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'scapy' or m.startswith('scapy.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
