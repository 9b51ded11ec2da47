"""Wire codecs: the ISAKMP header and the IKEv1 payloads (pure functions, precompiled ``struct``)."""

from __future__ import annotations
