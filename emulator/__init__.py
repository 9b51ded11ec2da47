"""awsnetemu runtime: virtual clock, scheduler, links with fault plans, simulated network, traces, pcaps.

The runtime knows nothing about IKE or TGW. Protocol cores (``cgw_peer``, ``tgw_dataplane``) are sans-I/O:
they take ``now`` and bytes and return actions; this package carries the actions out, either in virtual time
(:class:`emulator.simnet.SimNetwork`) or on real sockets (``emulator.drivers``).
"""

from __future__ import annotations

__version__ = "0.1.0"
