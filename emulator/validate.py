"""One validation step for every input of the runtime: scenario files, ``awsnetemu vpn`` flags and ``--config``
files, fault plans, output paths.

Every loader turns its raw input (YAML, JSON, argparse strings) into typed values through the functions below
before anything runs, so that a bad value fails at load time with one line naming the field, in the spelling of
the file or flag (``schedule[2].every``, ``links.cgw->aws.loss``, ``aws.behaviour.dpd_delay``, ``dpd-delay``),
and the allowed values. Each function raises :class:`emulator.errors.ConfigError`; the ``awsnetemu`` command
prints it and exits with status 2.

The rules, once for all inputs:

* **Numbers are numbers**: ``int``/``float`` (or text that parses as one, as flags arrive); never a boolean
  (``True`` is an ``int`` in Python), a list, a date. NaN is always refused, infinity wherever an instant or
  a period must be finite (:func:`number` ``allow_inf``).
* **Booleans are booleans**: YAML ``true``/``false``. The string ``'no'`` is refused in a scenario (it used to
  mean yes); the ``vpn`` command, whose ``--initiate`` flag takes words, also accepts yes/no/true/false/on/off.
* **Mappings and lists are what they say**, and unknown keys are an error listing the allowed ones.
* **Timers of a run have a floor** (:data:`MIN_PERIOD`, :func:`check_timer_floors`): see below.
* **Output paths** are checked before the run (:func:`output_dir`, :func:`output_file`), and a scenario
  ``name`` that would write outside ``--out`` is refused (:func:`safe_name`).

Timer floor. AWS's smallest documented periods are seconds (DPD probes every 10 s, ``DPDTimeoutSeconds`` >= 30,
``ike-dpd.md`` §1.1-1.2); strongSwan's first retransmission waits 4 s, libreswan's 0.5 s (§5). Far smaller values
are still useful in tests and benchmarks (a run of minutes squeezed into a second), so the floor is
:data:`MIN_PERIOD` = 10 ms: 50 times below libreswan's smallest wait, yet a probe every 10 ms for an hour of
virtual time is 360,000 exchanges, which the event budget (:data:`DEFAULT_MAX_EVENTS`) still bounds. Below it,
a period of zero or of a microsecond makes virtual time stand still (a zero DPD delay livelocked the scheduler)
while the trace grows without bound (DPD every millisecond: 3.4 GB in two minutes). The floor applies to every
period a run repeats: DPD delay and interval, the CGW's DPD timeout, every retransmission wait, the restart
backoff, the NAT keepalive, the ``esp`` action's ``every``. Fault windows and link delays need none: they
schedule nothing by themselves (a window is tested per datagram), so only their bounds must be finite numbers.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from emulator.errors import ConfigError

if TYPE_CHECKING:
    from cgw_peer.config import Behaviour

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "MIN_PERIOD",
    "allowed",
    "boolean",
    "check_timer_floors",
    "choice",
    "cidr",
    "fail",
    "integer",
    "ip_address",
    "key_text",
    "keys",
    "load_yaml",
    "mapping",
    "number",
    "output_dir",
    "output_file",
    "safe_name",
    "sanitise_name",
    "seconds",
    "sequence",
    "string",
    "string_list",
    "window",
]

MIN_PERIOD = 0.01
"""The smallest timer period (seconds) a run accepts: 10 ms (module docstring: why)."""

DEFAULT_MAX_EVENTS = 1_000_000
"""Default event budget of a virtual-time run (scenario key ``max_events``, ``awsnetemu run --max-events``).
The largest embedded scenario (``09-rekey-while-dpd``, 2,000 virtual seconds) records about 1,250 events, so
the default leaves a margin of 800x while bounding a run's trace at about 150 MB of JSON lines and a minute of
CPU."""

_T = TypeVar("_T")


def fail(where: str, message: str) -> NoReturn:
    """Raise the one-line :class:`ConfigError` ``"<where>: <message>"`` (line breaks in it are escaped)."""
    text = f"{where}: {message}" if where else message
    raise ConfigError(text.replace("\r", "\\r").replace("\n", "\\n"))


def allowed(values: Iterable[Any]) -> str:
    """``a, b, c``: the allowed values as a message lists them."""
    return ", ".join(str(v) for v in values)


def _show(v: Any) -> str:
    """A value as an error message shows it (short, one line)."""
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# ============================================================================================= scalars


def number(
    v: Any,
    where: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    allow_inf: bool = False,
) -> float:
    """A finite real number (``allow_inf``: or +/- infinity) with optional bounds; never NaN, never a boolean.

    ``minimum`` is inclusive, ``above`` exclusive. Text that parses as a number is accepted (flags are text).
    """
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        fail(where, f"expected a number, got {_show(v)}")
    try:
        f = float(v)
    except (ValueError, OverflowError):
        fail(where, f"expected a number, got {_show(v)}")
    if math.isnan(f):
        fail(where, f"expected a number, got {_show(v)} (NaN)")
    if math.isinf(f) and not allow_inf:
        fail(where, f"must be a finite number, got {_show(v)}")
    if minimum is not None and maximum is not None and not minimum <= f <= maximum:
        fail(where, f"must be between {minimum:g} and {maximum:g}, got {_show(v)}")
    if minimum is not None and not f >= minimum:
        fail(where, f"must be >= {minimum:g}, got {_show(v)}")
    if above is not None and not f > above:
        fail(where, f"must be > {above:g}, got {_show(v)}")
    if maximum is not None and not f <= maximum:
        fail(where, f"must be <= {maximum:g}, got {_show(v)}")
    return f


def integer(v: Any, where: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number (``3``, ``3.0`` or ``"3"``); never a boolean, never 3.5."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        fail(where, f"expected an integer, got {_show(v)}")
    if isinstance(v, int):
        i = v
    elif isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            fail(where, f"expected an integer, got {_show(v)}")
        i = int(v)
    else:
        try:
            i = int(v.strip())
        except ValueError:
            fail(where, f"expected an integer, got {_show(v)}")
    if minimum is not None and i < minimum:
        fail(where, f"must be >= {minimum}, got {_show(v)}")
    if maximum is not None and i > maximum:
        fail(where, f"must be <= {maximum}, got {_show(v)}")
    return i


def seconds(v: Any, where: str, *, floor: float = MIN_PERIOD, zero: bool = False) -> float:
    """A period of a run: finite, >= ``floor`` (``zero``: 0 is also allowed, meaning off)."""
    f = number(v, where)
    if zero and f == 0:
        return 0.0
    if not f >= floor:
        extra = " or 0 (off)" if zero else ""
        fail(where, f"must be a period of at least {floor:g} s{extra} (the run's timer floor), got {_show(v)}")
    return f


_TRUE_WORDS = ("yes", "true", "on", "1")
_FALSE_WORDS = ("no", "false", "off", "0")


def boolean(v: Any, where: str, *, words: bool = False) -> bool:
    """A boolean. ``words``: also the flag words yes/no, true/false, on/off (any case)."""
    if isinstance(v, bool):
        return v
    if words and isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE_WORDS:
            return True
        if s in _FALSE_WORDS:
            return False
        fail(where, f"expected yes or no, got {_show(v)}")
    hint = " (quoted text is not a boolean)" if isinstance(v, str) else ""
    fail(where, f"expected true or false{hint}, got {_show(v)}")


def choice(v: Any, where: str, options: Sequence[_T]) -> _T:
    """One of ``options`` (compared with ``==``; booleans never match numbers)."""
    for o in options:
        if type(v) is type(o) and v == o:
            return o
    fail(where, f"must be one of {allowed(options)}, got {_show(v)}")


def string(v: Any, where: str, *, empty: bool = False, single_line: bool = True) -> str:
    """Text (not a number, list or mapping that a ``str()`` would quietly turn into text)."""
    if not isinstance(v, str):
        hint = " (quote it in YAML)" if isinstance(v, int | float) and not isinstance(v, bool) else ""
        fail(where, f"expected text{hint}, got {_show(v)}")
    if not empty and not v:
        fail(where, "must not be empty")
    if single_line and any(c in v for c in "\r\n\x00"):
        fail(where, f"must be one line of text, got {_show(v)}")
    return v


# ========================================================================================= containers


def mapping(v: Any, where: str, *, none_is_empty: bool = True) -> Mapping[Any, Any]:
    """A mapping (``null`` counts as an empty one unless ``none_is_empty`` is False)."""
    if v is None and none_is_empty:
        return {}
    if not isinstance(v, Mapping):
        fail(where, f"must be a mapping, got {_show(v)}")
    return v


def key_text(k: Any) -> str:
    """A key as a field path shows it: as written when it is plain text, else its ``repr`` (so that a key with a
    newline or a control character cannot break the one-line message)."""
    if isinstance(k, str) and k and k.isprintable() and k.strip() == k:
        return k
    return repr(k)


def keys(m: Mapping[Any, Any], where: str, known: Iterable[str], required: Iterable[str] = ()) -> None:
    """Every key of ``m`` is one of ``known``; every ``required`` key is present."""
    known_set = set(known)
    for k in m:
        if not isinstance(k, str) or k not in known_set:
            fail(_join(where, key_text(k)), f"unknown key (allowed: {allowed(sorted(known_set))})")
    for k in required:
        if k not in m:
            fail(_join(where, k), "required")


def sequence(v: Any, where: str, *, none_is_empty: bool = True, length: int | None = None) -> list[Any]:
    """A list (``null``: empty). ``length``: exactly that many items."""
    if v is None and none_is_empty:
        return []
    if isinstance(v, str | bytes) or not isinstance(v, Sequence):
        fail(where, f"must be a list, got {_show(v)}")
    if length is not None and len(v) != length:
        fail(where, f"must be a list of {length} items, got {_show(v)}")
    return list(v)


def string_list(v: Any, where: str, *, single: bool = False) -> tuple[str, ...]:
    """A list of text items (``single``: one bare string is also accepted, as a list of one)."""
    if single and isinstance(v, str):
        return (string(v, where),)
    return tuple(string(x, f"{where}[{i}]") for i, x in enumerate(sequence(v, where)))


def window(v: Any, where: str) -> tuple[float, float]:
    """``[start, end]``: finite ``start``, ``end >= start`` (``end`` may be ``.inf``: open-ended)."""
    items = sequence(v, where, none_is_empty=False, length=2)
    start = number(items[0], f"{where}[0]")
    end = number(items[1], f"{where}[1]", allow_inf=True)
    if not end >= start:
        fail(where, f"must be [start, end] with end >= start, got {_show(v)}")
    return (start, end)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# ============================================================================================ network


def ip_address(v: Any, where: str) -> str:
    """An IPv4 or IPv6 address, normalised."""
    s = string(v, where)
    try:
        return str(ipaddress.ip_address(s.strip()))
    except ValueError:
        fail(where, f"expected an IP address, got {_show(v)}")


def cidr(v: Any, where: str) -> str:
    """A CIDR block (host bits allowed and cleared), normalised."""
    s = string(v, where)
    try:
        return str(ipaddress.ip_network(s.strip(), strict=False))
    except ValueError:
        fail(where, f"expected a CIDR block such as 10.1.0.0/24, got {_show(v)}")


# ============================================================================================== files


def load_yaml(path: Any, where: str) -> Any:
    """The YAML document in ``path`` (any encoding YAML detects; errors name ``where`` and the file)."""
    import yaml

    p = string(path, where)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        fail(where, f"cannot read {p}: {e.strerror or e}")
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())  # one line
        fail(where, f"{p} is not valid YAML: {first}")
    except (RecursionError, ValueError, OverflowError) as e:  # pathological nesting, odd scalars
        fail(where, f"{p} cannot be read as YAML: {type(e).__name__}")


def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def output_dir(path: Any, where: str) -> str:
    """A directory the run may write into: an existing writable directory, or one that can be created under
    the nearest existing directory (nothing is created here)."""
    p = string(path, where)
    if os.path.exists(p):
        if not os.path.isdir(p):
            fail(where, f"{p} exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            fail(where, f"{p} is not writable")
        return p
    base = _nearest_existing(p)
    if not os.path.isdir(base):
        fail(where, f"cannot create {p}: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        fail(where, f"cannot create {p}: {base} is not writable")
    return p


def output_file(path: Any, where: str) -> str:
    """A file the run may create or overwrite: not a directory, in an existing writable directory."""
    p = string(path, where)
    if os.path.isdir(p):
        fail(where, f"{p} is a directory, expected a file name")
    if os.path.exists(p) and not os.access(p, os.W_OK):
        fail(where, f"{p} is not writable")
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        fail(where, f"cannot write {p}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(where, f"cannot write {p}: the directory {parent} is not writable")
    return p


_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
NAME_RULE = "1-100 characters of A-Z a-z 0-9 . _ - not starting with . or -"
"""What a scenario ``name`` may be: it names the output files inside ``--out``, so it holds no path separator
and cannot be ``.`` or ``..``."""


def safe_name(v: Any, where: str) -> str:
    """A name for output files inside ``--out``: :data:`NAME_RULE` (refused, not rewritten, when given)."""
    s = string(v, where)
    if not _NAME_RE.fullmatch(s):
        fail(where, f"must be {NAME_RULE} (it names the output files in --out), got {_show(v)}")
    return s


def sanitise_name(text: str) -> str:
    """A file stem made into a :func:`safe_name` (the default name of a scenario file): every other character
    becomes ``_``, a leading ``.`` or ``-`` too, and it is cut at 100 characters."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:100]
    if not s:
        return "scenario"
    if s[0] in ".-":
        s = "_" + s[1:]
    return s


# ============================================================================================= timers


def check_timer_floors(beh: Behaviour, where: str, *, floor: float = MIN_PERIOD) -> None:
    """Every period of a :class:`~cgw_peer.config.Behaviour` that a run repeats is >= ``floor`` (the module
    docstring says why): DPD delay/interval/timeout, each retransmission wait, the restart backoff, the NAT
    keepalive. ``where`` is the prefix of the field names (``aws.behaviour.`` or ``behaviour.``)."""

    def check(name: str, value: float | None) -> None:
        if value is not None and not value >= floor:
            fail(f"{where}{name}", f"must be at least {floor:g} s (the run's timer floor), got {value!r}")

    if beh.dpd_enabled:
        check("dpd_delay", beh.dpd_delay)
        check("dpd_interval", beh.dpd_interval)
        check("dpd_timeout", beh.dpd_timeout)
    rt = beh.retransmit
    check("retransmit.timeout", rt.timeout)
    check("retransmit.limit", rt.limit)
    check("retransmit.budget", rt.budget)
    waits = rt.waits()
    # Each wait may be shortened by up to `jitter` (a fraction), so the shortest possible wait counts.
    shortest = min(waits) * (1.0 - rt.jitter) if waits else floor
    if not shortest >= floor:
        fail(
            f"{where}retransmit",
            f"the shortest retransmission wait would be {shortest:g} s, below the run's timer floor of {floor:g} s "
            "(raise timeout, or base to >= 1, or lower jitter)",
        )
    check("restart_backoff_initial", beh.restart_backoff_initial)
    check("restart_backoff_max", beh.restart_backoff_max)
    if beh.nat_keepalive != 0:  # 0 turns keepalives off (cgw_peer.natt.Keepalive), in both IKE versions
        check("nat_keepalive", beh.nat_keepalive)
