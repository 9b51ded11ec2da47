"""The error vocabulary shared by every layer (standard library only, imports nothing of the project).

:class:`ConfigError` is a bad configuration value: a CLI flag, a ``--config`` file, a scenario, a topology, a
flow, a fault plan. Its message names the field and the allowed values; the ``awsnetemu`` command prints it as
one line and exits with status 2. The protocol cores (``cgw_peer``, ``tgw_dataplane``) raise it too, which is
why it lives at the bottom of the layers and not in the CLI module.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong. The message names the field and the allowed values."""
