"""IKEv1 (RFC 2409) engine: Main Mode with PSK, Quick Mode, Informational, RFC 3706 DPD."""

from __future__ import annotations
