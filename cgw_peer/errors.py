"""Blame-typed errors (h11 style).

* :class:`DecodeError`: the peer sent bytes we cannot parse. ``receive_datagram`` catches it, counts it under
  its ``reason`` and drops the datagram; it never escapes a peer.
* :class:`ProtocolViolation`: well-formed but wrong; carries the notify type to answer with, if any.
* :class:`ConfigError`: bad configuration; the message names the field and the allowed values.
"""

from __future__ import annotations

from emulator.errors import ConfigError as _BaseConfigError


class DecodeError(ValueError):
    """Malformed wire data. ``reason`` is a short snake_case tag used for counters and traces."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ProtocolViolation(Exception):
    """The peer broke the protocol. ``notify`` is the Notify type to send back (0: none)."""

    def __init__(self, reason: str, notify: int = 0, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.notify = notify
        self.detail = detail


class ConfigError(_BaseConfigError):
    """Bad configuration. The message names the field and the allowed values."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LocalUsageError(Exception):
    """The API was misused (e.g. ``start()`` twice)."""
