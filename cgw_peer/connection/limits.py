"""Rate limits as token buckets (sans-I/O: every call takes ``now``): AWS's per-tunnel VPN figures and EC2
instance bandwidth with a baseline and burst credits per ENI.

Sources (``../shared/reference/tgw.md``):

* VPN tunnel: 1.25 Gbps and 140,000 packets/s per tunnel (§1.12, the archived TGW quotas page; the current Site-to-
  Site VPN quotas page gives the same "up to" figures). Whether the figures hold per direction or for both
  directions together is not documented **[U]**: the connection model gives each direction its own
  :class:`TunnelLimit` (as EC2 does for instance bandwidth).
* EC2 (§2, ``ec2-instance-network-bandwidth.md``): instances up to 16 vCPUs have a *baseline* and a network I/O
  credit mechanism to burst, "typically from 5 to 60 minutes"; credits are full at launch, an instance earns
  credits while below its baseline and returns to the baseline when they are spent; inbound and outbound have
  separate buckets. The figures per type come from ``general-purpose-instances.md`` (:data:`INSTANCE_BANDWIDTH`).

The EC2 model (:class:`Ec2Bandwidth`, one per ENI and direction) is two buckets a packet must both pass:

* the *credit bucket*: rate = baseline, depth = ``(burst - baseline) * burst_seconds`` bits, full at launch.
  Sending above the baseline drains it at ``actual - baseline``; sending below refills it at ``baseline -
  actual`` (a bucket at rate baseline does exactly that). Empty, it lets the baseline through and nothing more;
* the *peak bucket*: rate = burst, depth = ``burst * peak_window`` bits (at least one packet), so that even with
  credits nothing passes faster than the burst rate.

AWS does not publish the credit bucket's size: ``burst_seconds`` is the time a full bucket sustains the full
burst rate, default :data:`DEFAULT_BURST_SECONDS` (300 s, the short end of "5 to 60 minutes") **[U]**. What does
not conform is dropped at once (a policer); ENA says exceeding packets are "queued or dropped", and the queue is
not modelled **[U]**. Drops count under ENA's own names (``bw_in_allowance_exceeded``,
``bw_out_allowance_exceeded``, ``pps_allowance_exceeded``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cgw_peer.errors import ConfigError

__all__ = [
    "DEFAULT_BURST_SECONDS",
    "DEFAULT_PEAK_WINDOW",
    "INSTANCE_BANDWIDTH",
    "VPN_TUNNEL_BPS",
    "VPN_TUNNEL_PPS",
    "Ec2Bandwidth",
    "InstanceBandwidth",
    "TokenBucket",
    "TunnelLimit",
]

VPN_TUNNEL_BPS = 1.25e9
"""Bits per second one VPN tunnel carries at most (tgw.md §1.12)."""
VPN_TUNNEL_PPS = 140_000.0
"""Packets per second one VPN tunnel carries at most (tgw.md §1.12)."""
DEFAULT_BURST_SECONDS = 300.0
"""How long a full credit bucket sustains the full burst rate ("typically from 5 to 60 minutes", EC2BW) [U]."""
DEFAULT_PEAK_WINDOW = 0.001
"""Depth of the peak-rate bucket, in seconds at the burst rate (1 ms: a line-rate burst of about that length)."""


@dataclass(frozen=True, slots=True)
class InstanceBandwidth:
    """An instance type's network bandwidth: ``baseline`` and ``burst`` in bits per second."""

    baseline: float
    burst: float


INSTANCE_BANDWIDTH: dict[str, InstanceBandwidth] = {
    "t3.nano": InstanceBandwidth(0.032e9, 5.0e9),
    "t3.micro": InstanceBandwidth(0.064e9, 5.0e9),
    "t3.small": InstanceBandwidth(0.128e9, 5.0e9),
    "t3.2xlarge": InstanceBandwidth(2.048e9, 5.0e9),
    "m5.large": InstanceBandwidth(0.75e9, 10.0e9),
}
"""Baseline / burst per instance type (``general-purpose-instances.md``, via tgw.md §2)."""


class TokenBucket:
    """A token bucket: ``rate`` units per second, at most ``depth`` units stored, full at ``start``.

    :meth:`take` spends ``amount`` units if that many are stored (True) and leaves the bucket untouched otherwise
    (False). Time never runs backwards here: an earlier ``now`` than the last one counts as the same instant."""

    __slots__ = ("at", "depth", "level", "rate")

    def __init__(self, rate: float, depth: float, start: float = 0.0, *, full: bool = True) -> None:
        if not rate >= 0 or not depth > 0:
            raise ConfigError("bucket", f"rate >= 0 and depth > 0 expected, got rate {rate!r}, depth {depth!r}")
        self.rate = float(rate)
        self.depth = float(depth)
        self.level = self.depth if full else 0.0
        """Units stored at :attr:`at`."""
        self.at = start

    def refill(self, now: float) -> float:
        """Bring the level up to ``now``; returns it."""
        if now > self.at:
            self.level = min(self.depth, self.level + (now - self.at) * self.rate)
            self.at = now
        return self.level

    def take(self, amount: float, now: float) -> bool:
        level = self.refill(now)
        if level >= amount - 1e-9 * amount:  # a rounding error in the refill must not cost a packet
            self.level = level - amount
            return True
        return False


class Ec2Bandwidth:
    """One ENI's bandwidth in one direction: a credit bucket at the baseline and a peak bucket at the burst rate
    (see the module docstring). ``baseline``/``burst`` in bits per second; ``burst_seconds`` sizes the credits.

    :meth:`admit` takes the packet's length in octets; it returns True (the packet passes) or False (dropped,
    counted in :attr:`dropped`). :attr:`exhausted_at` is the first instant a packet found the credits spent."""

    __slots__ = ("credits", "dropped", "exhausted_at", "passed", "peak")

    def __init__(
        self,
        baseline: float,
        burst: float,
        *,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        peak_window: float = DEFAULT_PEAK_WINDOW,
        start: float = 0.0,
    ) -> None:
        if not 0 < baseline <= burst:
            raise ConfigError("bandwidth", f"0 < baseline <= burst expected, got {baseline!r} / {burst!r}")
        if not burst_seconds >= 0 or not peak_window > 0:
            raise ConfigError("bandwidth", "burst_seconds >= 0 and peak_window > 0 expected")
        # A bucket holds at least one largest packet (65,535 octets), or nothing could ever pass.
        floor = 65_535 * 8
        self.credits = TokenBucket(baseline, max(floor, (burst - baseline) * burst_seconds), start)
        """Rate = baseline; level = the credits left (bits)."""
        self.peak = TokenBucket(burst, max(floor, burst * peak_window), start)
        self.passed = 0
        self.dropped = 0
        self.exhausted_at: float | None = None

    def admit(self, octets: int, now: float) -> bool:
        bits = octets * 8
        peak, credits = self.peak, self.credits
        if peak.refill(now) < bits * (1 - 1e-9):
            self.dropped += 1
            return False
        if not credits.take(bits, now):
            if self.exhausted_at is None:
                self.exhausted_at = now
            self.dropped += 1
            return False
        peak.level -= bits
        self.passed += 1
        return True


class TunnelLimit:
    """A VPN tunnel's limits in one direction: bits per second and packets per second (:data:`VPN_TUNNEL_BPS`,
    :data:`VPN_TUNNEL_PPS` by default), each a token bucket one ``window`` deep (default 10 ms of traffic).

    :meth:`admit` returns ``None`` (passes) or the drop reason: ``tunnel_bandwidth_exceeded`` or
    ``tunnel_pps_exceeded``; :attr:`drops` counts them."""

    __slots__ = ("bps", "drops", "pps")

    def __init__(
        self, bps: float = VPN_TUNNEL_BPS, pps: float = VPN_TUNNEL_PPS, *, window: float = 0.01, start: float = 0.0
    ) -> None:
        if not bps > 0 or not pps > 0 or not window > 0:
            raise ConfigError("tunnel_limits", "bps, pps and window must be > 0")
        # At least two packets deep: a bucket that holds one packet loses the tokens that arrive while it is full,
        # and would pass less than ``pps`` on average.
        self.bps = TokenBucket(bps, max(2 * 65_535 * 8, bps * window), start)
        self.pps = TokenBucket(pps, max(2.0, pps * window), start)
        self.drops: dict[str, int] = {}

    def admit(self, octets: int, now: float) -> str | None:
        bits = octets * 8
        if self.pps.refill(now) < 1.0 - 1e-9:
            return self._drop("tunnel_pps_exceeded")
        if not self.bps.take(bits, now):
            return self._drop("tunnel_bandwidth_exceeded")
        self.pps.level -= 1.0
        return None

    def _drop(self, reason: str) -> str:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return reason
