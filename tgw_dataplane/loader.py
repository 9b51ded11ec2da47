"""Load a topology from a file in either format: YAML (``TOPOLOGY.md``) or AWS API JSON (:mod:`aws_import`)."""

from __future__ import annotations

from pathlib import Path

from emulator.errors import ConfigError
from tgw_dataplane.aws_import import load_aws_json
from tgw_dataplane.checks import show_path
from tgw_dataplane.model import Topology, load_topology


def load_any(path: str | Path) -> Topology:
    """Load and validate a YAML topology or merged AWS API JSON, told apart by content: a document whose first
    non-blank byte is ``{`` is AWS JSON (a YAML flow mapping would also start so, but TOPOLOGY.md files are
    block mappings). Raises ConfigError naming the file and the field."""
    p = Path(path)
    if not p.is_file():  # a directory, a FIFO (which would block the open) or nothing
        raise ConfigError(f"topology {show_path(path)}: {'not a regular file' if p.exists() else 'no such file'}")
    try:
        with open(p, "rb") as f:
            head = f.read(4096).lstrip()
    except OSError as e:
        raise ConfigError(f"topology {show_path(path)}: {e.strerror or e}") from None
    if head.startswith(b"{"):
        return load_aws_json(path)
    return load_topology(path)
