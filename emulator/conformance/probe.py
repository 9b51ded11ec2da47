"""Active probes: send one crafted message to the device and wait for its answer (asyncio-dgram streams).

Each :class:`Probe` is a UDP socket of its own, bound to the battery's local address on an ephemeral port and
connected to one of the device's ports (500, 4500, or ``--cgw``'s port), wrapped in an ``asyncio_dgram``
stream: :meth:`Probe.request` sends, and reads until an answer that matches arrives or the try times out,
retrying a bounded number of times. Being connected, the socket also learns the ICMP errors the kernel reports
for it (port unreachable, host unreachable), which :class:`Unreachable` carries up as a configuration error.

The long-running AWS endpoint is not a probe: it stays on the UDP driver (:mod:`emulator.conformance.session`).
A probe's datagrams are recorded in the session like the endpoint's, so they appear in the check's capture.

:func:`engine_exchange` runs a whole negotiation the same way (the PSK-mismatch check): an initiator IKE engine
whose datagrams travel over probe sockets instead of the driver.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

import asyncio_dgram

from emulator.actions import Address, Event, Transmit
from emulator.conformance.session import Datagram, Session
from emulator.conformance.wire import IKE_PORT, NON_ESP_MARKER, IkeInfo


class Unreachable(Exception):
    """The device's address cannot be reached at all (no route, no host, nothing listening)."""

    def __init__(self, dst: Address, err: OSError) -> None:
        self.dst = dst
        self.errno_name = errno.errorcode.get(err.errno or 0, str(err.errno))
        text = {
            "ENETUNREACH": "no route to that network",
            "EHOSTUNREACH": "no host answers at that address",
            "ECONNREFUSED": "nothing listens on that UDP port (ICMP port unreachable)",
            "EADDRNOTAVAIL": "the local address is not one of this machine's",
        }.get(self.errno_name, err.strerror or self.errno_name)
        super().__init__(f"cannot reach {dst[0]}:{dst[1]}: {text} ({self.errno_name})")


class Probe:
    """A request/response client on its own connected UDP socket (see the module docstring)."""

    def __init__(self, session: Session, dst: Address, stream: Any, local: Address) -> None:
        self.session = session
        self.dst = dst
        self.stream = stream
        self.local = local

    @classmethod
    async def open(cls, session: Session, dst: Address) -> Probe:
        fam = socket.AF_INET6 if ":" in dst[0] else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            sock.bind((session.settings.local[0], 0))
            sock.connect(dst)
        except OSError as e:
            sock.close()
            raise Unreachable(dst, e) from None
        sock.setblocking(False)
        local = sock.getsockname()
        stream = await asyncio_dgram.from_socket(sock)
        return cls(session, dst, stream, (local[0], local[1]))

    @property
    def marked(self) -> bool:
        """RFC 3948 framing: every IKE message to a port other than 500 carries the non-ESP marker."""
        return self.dst[1] != IKE_PORT

    def close(self) -> None:
        self.stream.close()

    async def __aenter__(self) -> Probe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _check_error(self) -> None:
        try:
            _ = self.stream.exception
        except OSError as e:
            raise Unreachable(self.dst, e) from None

    async def send(self, message: bytes) -> Datagram:
        """Send one IKE message (the marker is added on a non-500 port) and record it."""
        data = NON_ESP_MARKER + message if self.marked else message
        self._check_error()
        await self.stream.send(data)
        return self.session.record_datagram(self.session.now(), "out", self.local, self.dst, data)

    async def recv(self, timeout: float) -> Datagram | None:
        """The next datagram from the device within ``timeout`` seconds (recorded), or None."""
        self._check_error()
        try:
            data, addr = await asyncio.wait_for(self.stream.recv(), timeout)
        except TimeoutError:
            self._check_error()
            return None
        except asyncio_dgram.TransportClosed:
            self._check_error()
            return None
        return self.session.record_datagram(self.session.now(), "in", (addr[0], addr[1]), self.local, data)

    async def request(
        self,
        message: bytes | Callable[[], bytes],
        match: Callable[[IkeInfo], bool],
        *,
        timeout: float | None = None,
        tries: int | None = None,
    ) -> tuple[Datagram | None, list[Datagram]]:
        """Send ``message`` (or a fresh one from the callable on each try) and wait for an answer that
        ``match`` es, resending after ``timeout`` up to ``tries`` times. Returns ``(answer or None, what we
        sent)``."""
        t = self.session.timers
        per_try = t.probe_timeout if timeout is None else timeout
        n = t.probe_tries if tries is None else tries
        sent: list[Datagram] = []
        loop = asyncio.get_running_loop()
        for _ in range(n):
            data = message() if callable(message) else message
            sent.append(await self.send(data))
            end = loop.time() + per_try
            while True:
                left = end - loop.time()
                if left <= 0:
                    break
                d = await self.recv(left)
                if d is None:
                    break
                if d.info.kind == "ike" and match(d.info):
                    return d, sent
        return None, sent


async def engine_exchange(
    session: Session,
    engine: Any,
    *,
    until: Callable[[Event], bool],
    timeout: float,
) -> tuple[list[Event], list[Datagram]]:
    """Drive an initiator ``engine`` (created with local address ``(our IP, 500)``) over probe sockets until
    an event satisfies ``until`` or ``timeout`` seconds pass. Its datagrams go out from ephemeral ports, so the
    device sees a NATed initiator, which is what RFC 3947 / RFC 7296 §2.23 allow. Returns its events and the
    datagrams it exchanged."""
    cgw = session.settings.cgw
    probes: dict[int, Probe] = {}
    events: list[Event] = []
    seen: list[Datagram] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    local_ip = session.settings.local[0]
    inbox: asyncio.Queue[tuple[int, Datagram]] = asyncio.Queue()
    readers: list[asyncio.Task[None]] = []

    async def reader(port: int, p: Probe) -> None:
        while True:
            d = await p.recv(3600)
            if d is not None:
                await inbox.put((port, d))

    async def probe_for(port: int) -> Probe:
        p = probes.get(port)
        if p is None:
            p = await Probe.open(session, (cgw[0], port))
            probes[port] = p
            readers.append(asyncio.create_task(reader(port, p)))
        return p

    async def act(actions: list[Any]) -> bool:
        for a in actions:
            if isinstance(a, Transmit):
                p = await probe_for(a.dst[1])
                data = a.data[4:] if a.data[:4] == NON_ESP_MARKER else a.data
                seen.append(await p.send(data))
            elif isinstance(a, Event):
                events.append(a)
                if until(a):
                    return True
        return False

    try:
        if await act(engine.start(session.now())):
            return events, seen
        while True:
            left = end - loop.time()
            if left <= 0:
                return events, seen
            deadline = engine.next_deadline()
            wait = left
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - session.now()))
            try:
                port, d = await asyncio.wait_for(inbox.get(), wait)
            except TimeoutError:
                due = deadline is not None and session.now() >= deadline
                if due and await act(engine.handle_timer(session.now())):
                    return events, seen
                continue
            seen.append(d)
            local_port = 4500 if port != IKE_PORT else IKE_PORT
            if await act(engine.receive_datagram(d.data, (cgw[0], port), (local_ip, local_port), session.now())):
                return events, seen
    finally:
        for task in readers:
            task.cancel()
        for p in probes.values():
            p.close()
