"""Typed reads of parsed YAML/JSON for the topology loaders: every value is checked for its type and range
before it is used, and a bad one raises :class:`emulator.errors.ConfigError` with one line naming the field
(``vpcs.vpc-a.subnets.subnet-a1.cidr``) and what is allowed.

The rules (the same as the runtime's validator, ``emulator/validate.py``, which the cores may not import):
numbers are numbers, never booleans, and finite; integers are integers (``1500.5`` is not an MTU); booleans are
booleans (``'no'`` is not false); mappings and lists are what they say; identifiers are text (YAML's bare
``111111111111`` account ids, integers, are taken as their digits). A key or value quoted in a message is
shown with ``repr`` when it is not plain printable text, so a message stays one line.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from emulator.errors import ConfigError

E = TypeVar("E", bound=StrEnum)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def show(v: object) -> str:
    """A value for a message: plain printable text as is, anything else (or anything long) as ``repr``."""
    if isinstance(v, str) and v.isprintable() and v.strip() == v and 0 < len(v) <= 80:
        return v
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def show_path(p: object) -> str:
    """A file name for a message: as is when printable, else (or when empty) its ``repr``."""
    t = str(p)
    return t if t and t.isprintable() else repr(t)


def fail(where: str, message: str) -> ConfigError:
    """The error for ``where`` (returned, for ``raise fail(...)``)."""
    return ConfigError(f"{where}: {message}" if where else message)


def mapping(v: object, where: str, *, optional: bool = True) -> dict[str, Any]:
    """A mapping with text keys (``None`` or absent -> ``{}`` when optional)."""
    if v is None and optional:
        return {}
    if not isinstance(v, Mapping):
        raise fail(where, f"must be a mapping, not {type(v).__name__}")
    for k in v:
        if not _plain(k):
            raise fail(where, f"key {show(k)} is not an identifier (printable text without spaces)")
    return dict(v)


def _plain(k: object) -> bool:
    return isinstance(k, str) and 0 < len(k) <= 256 and k.isprintable() and not any(c.isspace() for c in k)


def sequence(v: object, where: str, *, optional: bool = True) -> list[Any]:
    """A list (``None`` or absent -> ``[]`` when optional)."""
    if v is None and optional:
        return []
    if not isinstance(v, list):
        raise fail(where, f"must be a list, not {type(v).__name__}")
    return v


def keys(d: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse keys outside ``allowed``."""
    allowed = set(allowed)
    extra = [show(k) for k in d if k not in allowed]
    if extra:
        raise fail(where, f"unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(sorted(allowed))})")


def ident(v: object, where: str) -> str:
    """An identifier: printable text without spaces (an integer is taken as its digits, as YAML reads account
    ids)."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return str(v)
    if not _plain(v):
        raise fail(where, f"{show(v)} is not an identifier (printable text without spaces)")
    assert isinstance(v, str)
    return v


def idents(v: object, where: str) -> list[str]:
    """A list of identifiers."""
    return [ident(x, f"{where}[{i}]") for i, x in enumerate(sequence(v, where))]


def boolean(v: object, where: str) -> bool:
    """``true`` or ``false`` (YAML booleans only)."""
    if not isinstance(v, bool):
        raise fail(where, f"{show(v)} is not one of true, false")
    return v


def integer(v: object, where: str, lo: int, hi: int) -> int:
    """An integer in ``lo..hi``."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise fail(where, f"{show(v)} is not an integer in {lo}..{hi}")
    if not lo <= v <= hi:
        raise fail(where, f"{v} is out of range {lo}..{hi}")
    return v


def number(v: object, where: str, lo: float, hi: float) -> float:
    """A finite number in ``lo..hi`` (seconds, rates)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise fail(where, f"{show(v)} is not a number in {lo:g}..{hi:g}")
    x = float(v)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise fail(where, f"{show(v)} is out of range {lo:g}..{hi:g} (a finite number)")
    return x


def choice(cls: type[E], v: object, where: str) -> E:
    """A member of the text enum ``cls``."""
    try:
        return cls(v) if isinstance(v, str) else cls("\0")
    except ValueError:
        raise fail(where, f"{show(v)} is not one of {', '.join(m.value for m in cls)}") from None


def network(v: object, where: str) -> IPNetwork:
    """A CIDR block with no host bits set (``10.0.0.0/16``, ``2001:db8::/56``)."""
    if not isinstance(v, str):
        raise fail(where, f"{show(v)} is not a CIDR (text like 10.0.0.0/16)")
    try:
        return ipaddress.ip_network(v, strict=True)
    except ValueError as e:
        raise fail(where, f"{show(v)} is not a CIDR ({e})") from None


def address(v: object, where: str, version: int | None = None) -> str:
    """An IP address as text (``version`` 4 or 6 to require one family)."""
    if not isinstance(v, str):
        raise fail(where, f"{show(v)} is not an IP address")
    try:
        a = ipaddress.ip_address(v)
    except ValueError:
        raise fail(where, f"{show(v)} is not an IP address") from None
    if version is not None and a.version != version:
        raise fail(where, f"{v} is not an IPv{version} address")
    return str(a)
