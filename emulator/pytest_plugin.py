"""pytest plugin ``awsnetemu``: test a customer gateway against the AWS endpoint in your own test suite.

Installed with the package (entry point ``pytest11``), so any test suite can use the fixtures:

* ``aws_endpoint``: a factory for our AWS endpoint on real UDP (:class:`AwsEndpoint`). Pointed at your device
  (``--aws-cgw IP[:PORT] --aws-psk KEY``, or arguments), it plays the AWS side; without a device it brings up
  an emulated one (our own CGW engine, strongSwan profile) on loopback, so the test runs anywhere.
  ``endpoint.run_check("AWS-DPD-01")`` runs one check of the battery and returns its
  :class:`~emulator.conformance.model.CheckResult`; ``wait_event`` / ``wait_up`` wait for engine events.
* ``tunnel_pair``: a factory for an AWS endpoint and a CGW in virtual time (:class:`VirtualTunnel`, on
  :class:`emulator.simnet.SimNetwork`): deterministic, no sockets, minutes of protocol time in milliseconds.
* :func:`wait_for_event`: the same waiting helper for both.

Options (``pytest --help``, group "awsnetemu"): ``--aws-cgw``, ``--aws-local``, ``--aws-psk``,
``--aws-ike-version``, ``--aws-profile``, ``--aws-real-timers`` (AWS's timers instead of ``--fast``'s).

The module imports the emulator lazily, so loading the plugin costs nothing in test runs that do not use it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from emulator.conformance.model import CheckResult
    from emulator.conformance.session import EventRecord, Settings
    from emulator.trace import TraceRecord

_T = TypeVar("_T")
DEFAULT_PSK = "awsnetemu.conformance.psk"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("awsnetemu", "awsnetemu: AWS Site-to-Site VPN endpoint for customer-gateway tests")
    g.addoption("--aws-cgw", metavar="IP[:PORT]", help="the device under test (default: an emulated one)")
    g.addoption("--aws-local", metavar="IP[:PORT]", help="the AWS endpoint's address (default: the route's source)")
    g.addoption("--aws-psk", help="the tunnel's pre-shared key")
    g.addoption("--aws-ike-version", choices=["1", "2"], help="IKE version (default 1)")
    g.addoption("--aws-profile", metavar="FILE", help="tunnel options (YAML) or describe-vpn-connections JSON")
    g.addoption("--aws-real-timers", action="store_true", help="AWS's timers instead of the short --fast ones")


class _LoopThread:
    """An asyncio loop in a daemon thread; coroutines are run on it and waited for from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="awsnetemu-endpoint", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class AwsEndpoint:
    """The AWS endpoint of a conformance session on real UDP, driven from a synchronous test."""

    def __init__(self, settings: Settings, device: EmulatedDevice | None = None) -> None:
        from emulator.conformance.session import Session

        self.settings = settings
        self.device = device
        self._lt = _LoopThread()
        self.session: Session = Session(settings)
        self._lt.run(self._open(), 10)
        # The battery's start-up scenario brings the tunnel up (the device initiates, or AWS does); it runs in
        # the background so wait_event / wait_up can watch it, and once per endpoint.
        self._startup = asyncio.run_coroutine_threadsafe(self._run_startup(), self._lt.loop)
        if device is not None:
            device.start()

    async def _open(self) -> None:
        from emulator.conformance.scenarios import prepare_startup

        await self.session.open()
        prepare_startup(self.session)

    async def _run_startup(self) -> Any:
        from emulator.conformance.scenarios import startup

        s = self.session
        return await s.scenario("startup", lambda: startup(s))

    # -- waiting --------------------------------------------------------------------------------------------

    def events(self, name: str | None = None) -> list[EventRecord]:
        """Every event recorded so far (optionally only ``name``)."""
        return [r for r in list(self.session.events) if name is None or r.name == name]

    def wait_event(self, name: str, timeout: float = 30.0, **fields: Any) -> EventRecord:
        """The first event ``name`` whose fields include ``fields``, recorded already or within ``timeout`` s;
        AssertionError naming the event otherwise."""

        def pred(r: EventRecord) -> bool:
            return all(r.get(k) == v for k, v in fields.items())

        rec = self._lt.run(self.session.wait_event(name, timeout, since=0, current=False, pred=pred), timeout + 5)
        if rec is None:
            raise AssertionError(f"no {name} event {fields or ''} within {timeout} s")
        return rec

    def wait_up(self, timeout: float = 60.0) -> EventRecord:
        """The tunnel is UP (``tunnel_up``), already or within ``timeout`` s."""
        return self.wait_event("tunnel_up", timeout)

    # -- the battery's checks -------------------------------------------------------------------------------

    def run_check(self, check_id: str) -> CheckResult:
        """Run one check of the battery (after the start-up scenario, which runs once) and return its result."""
        from emulator.conformance.checks import get_check

        spec = get_check(check_id)
        return self._lt.run(self._run_check(spec), spec.hard_limit + 120)

    async def _run_check(self, spec: Any) -> CheckResult:
        from emulator.conformance.runner import _run_one

        await self._run_startup()
        return (await _run_one(self.session, spec)).result

    def close(self) -> None:
        try:
            self._startup.cancel()
            self._lt.run(self.session.close(), 10)
        finally:
            self._lt.stop()
            if self.device is not None:
                self.device.close()


class EmulatedDevice:
    """A stand-in customer gateway on loopback: our IKE engine in the CGW role (strongSwan profile: DPD every
    10 s, restart on timeout), initiating towards the endpoint, as a real device would."""

    def __init__(self, local: tuple[str, int], remote: tuple[str, int], psk: str, ike_version: int) -> None:
        self.local = local
        self.remote = remote
        self.psk = psk
        self.ike_version = ike_version
        self._lt: _LoopThread | None = None
        self._driver: Any = None

    def start(self) -> None:
        self._lt = _LoopThread()
        self._lt.run(self._start(), 10)

    async def _start(self) -> None:
        from dataclasses import replace

        from cgw_peer.config import (
            PROFILES,
            DpdTimeoutAction,
            IkeVersion,
            PeerConfig,
            Retransmit,
            Role,
            TunnelOptions,
        )
        from cgw_peer.peer import create_peer
        from emulator.drivers.asyncio_udp import UdpDriver

        v = IkeVersion.IKEV1 if self.ike_version == 1 else IkeVersion.IKEV2
        cfg = PeerConfig(
            role=Role.CGW,
            ike_version=v,
            options=TunnelOptions(dpd_timeout_action=DpdTimeoutAction.RESTART),
            # strongSwan's behaviour with quick retransmissions: the battery ignores the first copies of the
            # device's first message on purpose (AWS-RTX-01), so a test need not wait charon's 4 + 7.2 s.
            behaviour=replace(PROFILES["strongswan"], retransmit=Retransmit(timeout=0.5, base=1.5, tries=4)),
            psk=self.psk.encode(),
            name="emulated-device",
        )
        peer = create_peer(cfg, local=self.local, remote=self.remote, rng=random.Random(7))
        self._driver = UdpDriver()
        h = self._driver.add_peer(peer, name="device", local=self.local, remote=self.remote, natt=False)
        self._driver.start_peer(h)

    def close(self) -> None:
        if self._lt is None:
            return
        try:
            if self._driver is not None:
                self._lt.run(self._driver.aclose(), 10)
        finally:
            self._lt.stop()
            self._lt = None


def _free_port(ip: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def aws_endpoint(request: pytest.FixtureRequest) -> Iterator[Callable[..., AwsEndpoint]]:
    """Factory: ``aws_endpoint(cgw=None, *, local=None, psk=None, ike_version=None, profile=None,
    fast=None) -> AwsEndpoint``. Defaults come from the ``--aws-*`` options; with no device given anywhere, an
    :class:`EmulatedDevice` on loopback is the device. Every endpoint is closed after the test."""
    from emulator.conformance.profile import default_profile, load_profile
    from emulator.conformance.session import Settings, make_timers
    from emulator.conformance_cli import parse_address, route_source

    made: list[AwsEndpoint] = []
    opt = request.config.getoption

    def make(
        cgw: str | None = None,
        *,
        local: str | None = None,
        psk: str | None = None,
        ike_version: int | None = None,
        profile: str | None = None,
        fast: bool | None = None,
    ) -> AwsEndpoint:
        cgw = cgw or opt("--aws-cgw")
        version = int(ike_version or opt("--aws-ike-version") or 1)
        key = psk or opt("--aws-psk") or DEFAULT_PSK
        prof_path = profile or opt("--aws-profile")
        prof = load_profile(prof_path) if prof_path else default_profile()
        is_fast = (not opt("--aws-real-timers")) if fast is None else fast
        device = None
        if cgw is None:
            me = ("127.0.0.1", _free_port("127.0.0.1"))
            dev = ("127.0.0.2", _free_port("127.0.0.2"))
            device = EmulatedDevice(dev, me, key, version)
            cgw_addr, local_addr = dev, me
        else:
            cgw_addr = parse_address(cgw, "cgw")
            local_text = local or opt("--aws-local")
            local_addr = parse_address(local_text, "local") if local_text else (route_source(cgw_addr), 500)
        settings = Settings(
            cgw=cgw_addr,
            local=local_addr,
            psk=key,
            ike_version=version,
            profile=prof,
            timers=make_timers(prof, fast=is_fast),
            seed=int(time.time()),
        )
        ep = AwsEndpoint(settings, device)
        made.append(ep)
        return ep

    yield make
    for ep in made:
        ep.close()


class VirtualTunnel:
    """An AWS endpoint (``aws``) and a customer gateway (``cgw``) on a :class:`emulator.simnet.SimNetwork`,
    in virtual time. ``run_until_event`` advances time until an event happens (or the bound passes)."""

    AWS_IP = "203.0.113.1"
    CGW_IP = "198.51.100.1"

    def __init__(self, net: Any, aws: Any, cgw: Any) -> None:
        self.net = net
        self.aws = aws
        self.cgw = cgw

    @property
    def now(self) -> float:
        t: float = self.net.now
        return t

    def run_until(self, t: float) -> None:
        self.net.run_until(t)

    def events(self, name: str | None = None, node: str | None = None, **fields: Any) -> list[TraceRecord]:
        out: list[TraceRecord] = self.net.trace.select(name, node, **fields)
        return out

    def run_until_event(
        self, name: str, *, node: str | None = None, within: float = 60.0, **fields: Any
    ) -> TraceRecord:
        """Advance virtual time until event ``name`` (of ``node``, with ``fields``) happens after now; at most
        ``within`` virtual seconds; AssertionError otherwise."""
        start = self.now
        seen = len(self.net.trace.select(name, node, **fields))
        step = 0.25
        while self.now < start + within:
            self.net.run_until(min(self.now + step, start + within))
            got: list[TraceRecord] = self.net.trace.select(name, node, **fields)
            if len(got) > seen:
                return got[seen]
        raise AssertionError(f"no {name} {fields or ''} from {node or 'any node'} within {within} virtual s")

    def crash(self, node: str) -> None:
        """``node`` stops as with ``kill -9``."""
        self.net.crash(node)

    def revive(self, node: str) -> None:
        self.net.revive(node)


@pytest.fixture
def tunnel_pair() -> Callable[..., VirtualTunnel]:
    """Factory: ``tunnel_pair(ike_version=1, aws_options=None, cgw_profile="strongswan", seed=0, **cgw_behaviour)
    -> VirtualTunnel``. ``aws_options``: AWS tunnel options (a mapping in AWS spelling, e.g.
    ``{"DPDTimeoutSeconds": 30, "DPDTimeoutAction": "restart"}``); ``cgw_behaviour``: overrides of the CGW's
    :class:`cgw_peer.config.Behaviour` (``dpd_delay=10``...). The pair is started (the CGW initiates)."""

    def make(
        ike_version: int = 1,
        aws_options: Any = None,
        cgw_profile: str = "strongswan",
        seed: int = 0,
        **cgw_behaviour: Any,
    ) -> VirtualTunnel:
        from dataclasses import replace

        from cgw_peer.config import PROFILES, IkeVersion, PeerConfig, Role, TunnelOptions
        from cgw_peer.peer import create_peer
        from emulator.simnet import SimNetwork

        v = IkeVersion.IKEV1 if ike_version == 1 else IkeVersion.IKEV2
        if aws_options is None:
            opts = TunnelOptions()
        elif isinstance(aws_options, TunnelOptions):
            opts = aws_options
        else:
            opts = TunnelOptions.from_mapping(aws_options)
        if v.value not in [x.value for x in opts.ike_versions]:
            opts = replace(opts, ike_versions=(v,))
        psk = b"awsnetemu.virtual.psk"
        aws_cfg = PeerConfig(role=Role.AWS, ike_version=v, options=opts, psk=psk, name="aws")
        cgw_cfg = PeerConfig(
            role=Role.CGW,
            ike_version=v,
            options=replace(opts, startup_action=TunnelOptions().startup_action),
            behaviour=replace(PROFILES[cgw_profile], **cgw_behaviour),
            psk=psk,
            name="cgw",
        )
        aws_addr = (VirtualTunnel.AWS_IP, 500)
        cgw_addr = (VirtualTunnel.CGW_IP, 500)
        rng = random.Random(seed)
        aws = create_peer(aws_cfg, local=aws_addr, remote=cgw_addr, rng=random.Random(rng.getrandbits(64)))
        cgw = create_peer(cgw_cfg, local=cgw_addr, remote=aws_addr, rng=random.Random(rng.getrandbits(64)))
        net = SimNetwork(seed=seed)
        net.add_node("aws", aws, [VirtualTunnel.AWS_IP])
        net.add_node("cgw", cgw, [VirtualTunnel.CGW_IP])
        net.start_all()
        return VirtualTunnel(net, aws, cgw)

    return make


def wait_for_event(
    source: AwsEndpoint | VirtualTunnel, name: str, timeout: float = 30.0, **fields: Any
) -> EventRecord | TraceRecord:
    """Wait for an event on an endpoint (real seconds) or a virtual tunnel (virtual seconds)."""
    if isinstance(source, VirtualTunnel):
        node = fields.pop("node", None)
        return source.run_until_event(name, node=node, within=timeout, **fields)
    return source.wait_event(name, timeout, **fields)


__all__ = ["AwsEndpoint", "EmulatedDevice", "VirtualTunnel", "wait_for_event"]
