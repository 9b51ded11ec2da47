"""A reusable lab for tests against a real strongSwan charon: namespaces, configs, processes, captures.

Everything follows ``../shared/reference/real-peers.md`` (netns recipe §1.2, configs §1.3-1.4, tshark §4).

Topology built by :class:`Lab` (one per test, unique names with the ``ane-`` prefix)::

    netns <tag>o ("ours": the emulator)            netns <tag>c ("charon")
      veth <tag>o  10.99.0.1/24  <------------->  veth <tag>c  10.99.0.2/24
      lo 10.1.0.1/24                                lo 10.2.0.1/24   (kernel-libipsec needs an own address
                                                                       inside its local_ts)

API (all paths are under the lab's work directory; every process is started by PID and stopped by PID):

* ``require_tools()``: skip the test when charon/swanctl/tshark/dumpcap/ike-scan/root are missing, or FAIL it
  when ``CI`` is set (``CI=true``): a CI run must not pass by skipping its interop tests.
* ``Lab(tmp_path)`` / the ``lab`` fixture (conftest.py, cleaned up by a finalizer):
  - ``lab.start_charon(CharonConf(...), name="charon") -> Charon`` starts charon in the charon netns with a
    private ``/run`` (pidfile) and its own strongswan.conf/swanctl.conf; waits for vici and loads the config.
  - ``lab.start_capture(name="cap", side="ours") -> Capture``: dumpcap on that side's veth (UDP only);
    ``capture.stop()`` returns the pcapng path.
  - ``lab.start_emulator(args, name="ours") -> Emulator``: ``ip netns exec <ours> python -m emulator vpn
    --events ... --pcap ... --keys ... ARGS``; waits for its ``listening`` event.
  - ``lab.run_in(side, argv)``: run a short command (e.g. ike-scan) in a namespace.
  - ``lab.snat(side)``: that side's UDP 500 / 4500 leave its veth as ports 30500 / 34500 (nftables source
    NAT in its namespace, replies translated back by conntrack): the side is "behind a NAT" that rewrites
    the IKE source port, as most NATs do.
  - ``lab.cleanup()``: kill what is still running (SIGKILL, by PID), delete both namespaces.
* ``CharonConf``: one swanctl connection ``vpn`` with child ``tun1`` (IKEv1 or IKEv2; ``version=2`` works the
  same), DPD, retransmission, kernel backend (``libipsec`` with ``encap = yes``, or ``netlink``).
* ``Charon``: ``dpd_notifies()`` (DPD type and sequence number of every R-U-THERE/ACK charon parsed or
  generated, from its log at ``enc_log=4``), ``list_sas()`` (vici, dict keyed by connection name),
  ``ike_state()``/``child_state()``, ``wait_state(state, timeout)``, ``wait_down(timeout)``, ``log()``,
  ``wait_log(regex, timeout)``, ``initiate()``, ``terminate()``, ``stop()`` (SIGTERM: charon sends
  Deletes), ``kill()`` (SIGKILL), ``restart(conf=None)``.
* ``Emulator``: ``events(name=None, **match)``, ``wait_event(name, timeout, after=..., **match)``,
  ``datagrams()`` (our own ``--pcap`` as ``(t, src, sport, dst, dport, payload)`` on the events' clock),
  ``stop()`` (SIGTERM, returns the exit code), ``kill()`` (SIGKILL), ``stderr()``, ``pcap``, ``keys_dir``.
* ``emulator_args(role, proposal=..., esp_proposal=..., version=1, extra=[...])``: the usual flags for our
  peer facing the lab's charon; ``conf(**overrides)``: a :class:`CharonConf` with overrides.
* ``tshark_fields(pcap, fields, display_filter, keys_dir=None)`` -> rows of strings;
  ``tshark_count(pcap, display_filter, keys_dir=None)``. With ``keys_dir`` tshark runs with
  ``WIRESHARK_CONFIG_DIR=keys_dir`` (our own ``--keys`` output).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.tools import tool_missing

CHARON = "/usr/lib/ipsec/charon"
OUR_IP = "10.99.0.1"
CHARON_IP = "10.99.0.2"
OUR_NET = "10.1.0.0/24"
CHARON_NET = "10.2.0.0/24"
PSK = "lab.psk.0123456789"  # AWS PreSharedKey rules: letters, digits, '.' and '_' only
REPO = Path(__file__).resolve().parents[2]

_counter = itertools.count(1)


# -- tools ------------------------------------------------------------------------------------------------


def missing_tools() -> list[str]:
    """What this machine lacks for real-peer tests (empty when everything is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if not os.access(CHARON, os.X_OK):
        missing.append(CHARON)
    for tool in ("swanctl", "tshark", "dumpcap", "ike-scan", "ip", "nft"):
        if shutil.which(tool) is None:
            missing.append(tool)
    try:
        import vici  # noqa: F401
    except ImportError:
        missing.append("python vici")
    return missing


def require_tools() -> None:
    """Skip (or, with ``CI`` set, fail) when a real-peer prerequisite is missing."""
    missing = missing_tools()
    if not missing:
        return
    tool_missing(f"real-peer tests need: {', '.join(missing)} (run `make system`)")


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _run(argv: Sequence[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, **kw)


def _stop_pid(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
    """Signal one process we started, wait for it; SIGKILL if it does not go. Returns its exit code."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(5)


# -- charon configuration ---------------------------------------------------------------------------------


@dataclass
class CharonConf:
    """One charon instance: strongswan.conf globals and one swanctl connection ``vpn`` / child ``tun1``."""

    version: int = 1
    local_addr: str = CHARON_IP
    remote_addr: str = OUR_IP
    remote_port: int = 500
    proposals: str = "aes128-sha1-modp2048"
    esp_proposals: str = "aes128-sha1-modp2048"
    local_ts: str = CHARON_NET
    remote_ts: str = OUR_NET
    start_action: str = "none"
    """none | trap | start (``start`` initiates as soon as the config is loaded)."""
    dpd_action: str = "clear"
    dpd_delay: str = "2s"
    dpd_timeout: str = "6s"
    close_action: str = "none"
    keyingtries: int = 1
    encap: bool = True
    kernel: str = "libipsec"
    """``libipsec`` (CHILD_SAs install, needs ``encap``) or ``netlink`` (IKE only; CHILD install fails)."""
    psk: str = PSK
    retransmit_tries: int = 3
    retransmit_timeout: float = 1.0
    retransmit_base: float = 1.4
    keep_alive: str = "20s"
    """charon.keep_alive: NAT keepalive interval when charon is behind a NAT."""
    rekey_time: str = "8h"
    """IKE SA rekey time (IKEv1: charon re-authenticates with a new Main Mode)."""
    child_rekey_time: str = "1h"
    """CHILD_SA rekey time (IKEv1: a new Quick Mode)."""
    extra_conn: str = ""
    extra_children: str = ""
    """More ``children`` entries besides ``tun1`` (swanctl syntax), e.g. a second child SA."""
    extra_global: str = ""
    """More ``charon { }`` settings in strongswan.conf (e.g. ``block_threshold = 100``)."""
    enc_log: int = 1
    """filelog level of charon's ``enc`` subsystem (3+ dumps parsed payloads, e.g. DPD sequence numbers)."""

    def strongswan_conf(self, d: Path) -> str:
        kp = "kernel-libipsec kernel-netlink" if self.kernel == "libipsec" else "kernel-netlink"
        return f"""charon {{
  port = 500
  port_nat_t = 4500
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = {self.retransmit_tries}
  retransmit_timeout = {self.retransmit_timeout}
  retransmit_base = {self.retransmit_base}
  keep_alive = {self.keep_alive}
  {self.extra_global}
  load = random nonce aes sha1 sha2 md5 hmac gmp kdf pem pkcs1 x509 pubkey revocation constraints openssl {kp} \
socket-default vici updown
  plugins {{
    vici {{ socket = unix://{d}/charon.vici }}
  }}
  filelog {{
    main {{
      path = {d}/charon.log
      time_format = %T
      time_add_ms = yes
      ike_name = yes
      append = yes
      flush_line = yes
      default = 1
      ike = 4
      knl = 1
      enc = {self.enc_log}
      net = 2
      cfg = 1
    }}
    stderr {{ default = 0 }}
  }}
}}
"""

    def swanctl_conf(self) -> str:
        return f"""connections {{
  vpn {{
    version = {self.version}
    local_addrs = {self.local_addr}
    remote_addrs = {self.remote_addr}
    remote_port = {self.remote_port}
    proposals = {self.proposals}
    encap = {"yes" if self.encap else "no"}
    dpd_delay = {self.dpd_delay}
    dpd_timeout = {self.dpd_timeout}
    rekey_time = {self.rekey_time}
    keyingtries = {self.keyingtries}
    {self.extra_conn}
    local {{
      auth = psk
      id = {self.local_addr}
    }}
    remote {{
      auth = psk
      id = {self.remote_addr}
    }}
    children {{
      tun1 {{
        local_ts = {self.local_ts}
        remote_ts = {self.remote_ts}
        esp_proposals = {self.esp_proposals}
        mode = tunnel
        start_action = {self.start_action}
        dpd_action = {self.dpd_action}
        close_action = {self.close_action}
        rekey_time = {self.child_rekey_time}
      }}
      {self.extra_children}
    }}
  }}
}}
secrets {{
  ike-vpn {{
    id-l = {self.local_addr}
    id-r = {self.remote_addr}
    secret = "{self.psk}"
  }}
}}
"""


def _dec(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.decode(errors="replace")
    if isinstance(o, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _dec(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_dec(v) for v in o]
    return o


class Charon:
    """One charon process in a namespace (started by :meth:`Lab.start_charon`)."""

    def __init__(self, lab: Lab, conf: CharonConf, directory: Path, side: str = "charon") -> None:
        self.lab = lab
        self.conf = conf
        self.ns = lab.ns_charon if side == "charon" else lab.ns_ours
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "charon.log"
        self.vici_path = directory / "charon.vici"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Charon:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "strongswan.conf").write_text(self.conf.strongswan_conf(self.dir))
        (self.dir / "swanctl.conf").write_text(self.conf.swanctl_conf())
        if self.vici_path.exists():
            self.vici_path.unlink()
        inner = f"mount -t tmpfs tmpfs /run && exec env STRONGSWAN_CONF={self.dir}/strongswan.conf {CHARON}"
        out = open(self.dir / "charon.stdout", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "sh", "-c", inner],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        self.lab.procs.append(self.proc)
        wait_until(lambda: self.vici_path.exists() or self.proc.poll() is not None, 10, "charon vici socket")  # type: ignore[union-attr]
        if self.proc.poll() is not None:
            raise AssertionError(f"charon exited: {(self.dir / 'charon.stdout').read_text()[-2000:]}")
        res = self.swanctl("--load-all", "--noprompt", "--file", str(self.dir / "swanctl.conf"))
        if "loaded connection 'vpn'" not in res.stdout:
            raise AssertionError(f"swanctl --load-all failed: {res.stdout}{res.stderr}")
        return self

    def swanctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return _run(["swanctl", *args, "--uri", f"unix://{self.vici_path}"], check=check, timeout=30)

    def _session(self) -> Any:
        import vici

        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(str(self.vici_path))
        return vici.Session(s), s

    def list_sas(self) -> dict[str, Any]:
        """``{conn name: IKE SA dict}`` (strings decoded) from vici ``list-sas``; the newest SA per name."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        sess, s = self._session()
        try:
            out: dict[str, Any] = {}
            for sa in sess.list_sas():
                for name, v in _dec(sa).items():
                    out[name] = v
            return out
        finally:
            s.close()

    def ike_state(self, conn: str = "vpn") -> str | None:
        sa = self.list_sas().get(conn)
        return None if sa is None else str(sa.get("state"))

    def child_state(self, conn: str = "vpn") -> str | None:
        sa = self.list_sas().get(conn)
        if not sa:
            return None
        for child in (sa.get("child-sas") or {}).values():
            return str(child.get("state"))
        return None

    def wait_state(self, state: str = "ESTABLISHED", timeout: float = 10.0, conn: str = "vpn") -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            sa = self.list_sas().get(conn)
            return sa if sa and sa.get("state") == state else None

        result: dict[str, Any] = wait_until(check, timeout, f"charon IKE SA {conn} {state}", 0.05)
        return result

    def wait_down(self, timeout: float = 10.0, conn: str = "vpn") -> None:
        wait_until(lambda: conn not in self.list_sas(), timeout, f"charon IKE SA {conn} gone", 0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """First match of ``pattern`` in the log (from character offset ``start``)."""
        rx = re.compile(pattern)
        m: re.Match[str] = wait_until(lambda: rx.search(self.log(), start), timeout, f"charon log /{pattern}/", 0.05)
        return m

    def dpd_notifies(self) -> list[tuple[str, int, int]]:
        """IKEv1 DPD notifies in charon's log as ``(direction, type, seq)``: direction ``"in"`` (parsed) or
        ``"out"`` (generated), type 36136 (R-U-THERE) or 36137 (ACK). Needs ``CharonConf(enc_log=4)``, where
        charon dumps every payload field it parses or generates (rule 13 = notify type, rule 15 = data)."""
        line_rx = re.compile(r"^\S+ (\d+)\[ENC\] <[^>]*> (.*)$")
        state: dict[str, dict[str, Any]] = {}
        out: list[tuple[str, int, int]] = []
        for line in self.log().splitlines():
            m = line_rx.match(line)
            if not m:
                continue
            th, text = m.group(1), m.group(2).strip()
            st = state.setdefault(th, {})
            if re.match(r"(parsing \S+ payload, |generating payload of type )", text):
                st.clear()  # a new payload: forget the previous one's fields
                continue
            rule = re.match(r"(parsing|generating) rule (13 U_INT_16|15 CHUNK_DATA)", text)
            if rule:
                st["dir"] = "in" if rule.group(1) == "parsing" else "out"
                st["want"] = "type" if rule.group(2).startswith("13") else "data"
                continue
            want = st.get("want")
            if want is None:
                continue
            if text.startswith("=>"):
                v = text[2:].strip()
                if want == "type" and v.isdigit():  # parsed: the value itself
                    st["type"] = int(v)
                    st["want"] = None
                continue
            hexm = re.match(r"0: ((?:[0-9A-F]{2} ?)+)", text)
            if hexm:
                raw = bytes.fromhex(hexm.group(1).replace(" ", "")[:16])
                if want == "type":  # generated: two bytes, network order
                    st["type"] = int.from_bytes(raw[:2], "big")
                elif st.get("type") in (36136, 36137) and len(raw) >= 4:
                    out.append((st["dir"], st["type"], int.from_bytes(raw[:4], "big")))
                st["want"] = None
        return out

    def initiate(self, child: str = "tun1", timeout: int = 10) -> subprocess.CompletedProcess[str]:
        return self.swanctl("--initiate", "--child", child, "--timeout", str(timeout))

    def terminate(self, conn: str = "vpn") -> subprocess.CompletedProcess[str]:
        return self.swanctl("--terminate", "--ike", conn, "--timeout", "5")

    def stop(self) -> int | None:
        """SIGTERM: charon sends Deletes for its SAs, then exits."""
        assert self.proc is not None
        return _stop_pid(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a dead peer (no Deletes)."""
        assert self.proc is not None
        _stop_pid(self.proc, signal.SIGKILL)

    def restart(self, conf: CharonConf | None = None) -> Charon:
        """A new charon process (same directory; the log is appended to) with ``conf`` or the same one."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if conf is not None:
            self.conf = conf
        return self.start()


# -- our peer ---------------------------------------------------------------------------------------------


class Emulator:
    """``awsnetemu vpn`` as a subprocess in the lab's 'ours' namespace."""

    def __init__(self, lab: Lab, args: Sequence[str], directory: Path) -> None:
        self.lab = lab
        self.args = list(args)
        self.dir = directory
        self.events_path = directory / "events.jsonl"
        self.pcap = directory / "ours.pcap"
        self.keys_dir = directory / "keys"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Emulator:
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in (self.events_path, self.pcap):
            if p.exists():
                p.unlink()
        argv = [
            "ip", "netns", "exec", self.lab.ns_ours, sys.executable, "-m", "emulator", "vpn",
            "--events", str(self.events_path), "--pcap", str(self.pcap), "--keys", str(self.keys_dir),
            *self.args,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        self.stderr_path = self.dir / "stderr.txt"
        err = open(self.stderr_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env)
        err.close()
        self.lab.procs.append(self.proc)
        wait_until(
            lambda: self.events(name="listening") or self.proc.poll() is not None,  # type: ignore[union-attr]
            timeout,
            "emulator listening",
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"emulator exited {self.proc.returncode}: {self.stderr()}")
        return self

    def events(self, name: str | None = None, **match: Any) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            if name is not None and rec.get("event") != name:
                continue
            if all(rec.get(k) == v for k, v in match.items()):
                out.append(rec)
        return out

    def wait_event(self, name: str, timeout: float = 10.0, after: float = -1.0, **match: Any) -> dict[str, Any]:
        """The first event ``name`` (with ``t > after`` and the given field values)."""

        def check() -> dict[str, Any] | None:
            for rec in self.events(name, **match):
                if rec["t"] > after:
                    return rec
            return None

        rec: dict[str, Any] = wait_until(check, timeout, f"emulator event {name} {match or ''}", 0.05)
        return rec

    def datagrams(self) -> list[tuple[float, str, int, str, int, bytes]]:
        """What our peer's ``--pcap`` recorded: ``(t, src_ip, sport, dst_ip, dport, payload)`` with ``t`` on the
        events' clock (seconds since the peer started)."""
        from emulator.pcap import read_pcap

        start = self.wait_event("listening")["wall_clock_start"]
        out = []
        for ts, frame in read_pcap(str(self.pcap)):
            ihl = (frame[0] & 0x0F) * 4
            src = socket.inet_ntoa(frame[12:16])
            dst = socket.inet_ntoa(frame[16:20])
            sport, dport = struct.unpack("!HH", frame[ihl : ihl + 4])
            out.append((ts - start, src, sport, dst, dport, frame[ihl + 8 :]))
        return out

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self) -> int | None:
        assert self.proc is not None
        return _stop_pid(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        assert self.proc is not None
        _stop_pid(self.proc, signal.SIGKILL)


# -- captures and tshark ----------------------------------------------------------------------------------


class Capture:
    """dumpcap on a lab veth, UDP only."""

    def __init__(self, lab: Lab, side: str, path: Path) -> None:
        self.lab = lab
        self.side = side
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Capture:
        ns, iface = (
            (self.lab.ns_ours, self.lab.veth_ours)
            if self.side == "ours"
            else (
                self.lab.ns_charon,
                self.lab.veth_charon,
            )
        )
        if self.path.exists():
            self.path.unlink()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "dumpcap", "-q", "-i", iface, "-f", "udp", "-w", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.lab.procs.append(self.proc)
        wait_until(lambda: self.path.exists() and self.path.stat().st_size > 0, 10, "dumpcap file")
        time.sleep(0.2)  # dumpcap writes the file header just before the capture filter is live
        return self

    def stop(self) -> Path:
        if self.proc is not None:
            # dumpcap writes packets from its ring buffer in batches: give the last ones time to land,
            # then SIGINT (its Ctrl-C path flushes and closes the file).
            time.sleep(0.5)
            _stop_pid(self.proc, signal.SIGINT)
        return self.path


def tshark_fields(
    pcap: Path | str,
    fields: Sequence[str],
    display_filter: str = "",
    keys_dir: Path | str | None = None,
    extra: Sequence[str] = (),
) -> list[list[str]]:
    """Rows of ``-T fields`` output (tab-separated columns, one row per matching frame)."""
    argv = ["tshark", "-r", str(pcap), *extra]
    if display_filter:
        argv += ["-Y", display_filter]
    argv += ["-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    env = dict(os.environ)
    if keys_dir is not None:
        env["WIRESHARK_CONFIG_DIR"] = str(keys_dir)
    res = _run(argv, env=env, timeout=60)
    return [line.split("\t") for line in res.stdout.splitlines() if line.strip()]


def tshark_count(pcap: Path | str, display_filter: str, keys_dir: Path | str | None = None) -> int:
    return len(tshark_fields(pcap, ["frame.number"], display_filter, keys_dir))


# -- the lab ----------------------------------------------------------------------------------------------


@dataclass
class Lab:
    """Two namespaces joined by a veth pair (see the module docstring). Call :meth:`setup` first."""

    workdir: Path
    tag: str = field(default_factory=lambda: f"ane{os.getpid() % 100000}x{next(_counter)}")
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    created: bool = False

    @property
    def ns_ours(self) -> str:
        return f"{self.tag}o"

    @property
    def ns_charon(self) -> str:
        return f"{self.tag}c"

    @property
    def veth_ours(self) -> str:
        return f"{self.tag}o"[-15:]

    @property
    def veth_charon(self) -> str:
        return f"{self.tag}c"[-15:]

    def setup(self) -> Lab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        o, c = self.ns_ours, self.ns_charon
        self.created = True
        steps = [
            ["ip", "netns", "add", o],
            ["ip", "netns", "add", c],
            ["ip", "link", "add", self.veth_ours, "type", "veth", "peer", "name", self.veth_charon],
            ["ip", "link", "set", self.veth_ours, "netns", o],
            ["ip", "link", "set", self.veth_charon, "netns", c],
            ["ip", "-n", o, "addr", "add", f"{OUR_IP}/24", "dev", self.veth_ours],
            ["ip", "-n", c, "addr", "add", f"{CHARON_IP}/24", "dev", self.veth_charon],
            ["ip", "-n", o, "addr", "add", "10.1.0.1/24", "dev", "lo"],
            ["ip", "-n", c, "addr", "add", "10.2.0.1/24", "dev", "lo"],
            ["ip", "-n", o, "link", "set", "lo", "up"],
            ["ip", "-n", c, "link", "set", "lo", "up"],
            ["ip", "-n", o, "link", "set", self.veth_ours, "up"],
            ["ip", "-n", c, "link", "set", self.veth_charon, "up"],
        ]
        for argv in steps:
            _run(argv)
        return self

    def start_charon(self, conf: CharonConf | None = None, name: str = "charon", side: str = "charon") -> Charon:
        """charon in the charon namespace (or, with ``side="ours"``, a second one in ours: lab self-checks)."""
        return Charon(self, conf or CharonConf(), self.workdir / name, side).start()

    def start_emulator(self, args: Sequence[str], name: str = "ours") -> Emulator:
        return Emulator(self, args, self.workdir / name).start()

    def start_capture(self, name: str = "cap", side: str = "ours") -> Capture:
        return Capture(self, side, self.workdir / f"{name}.pcapng").start()

    def run_in(self, side: str, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        ns = self.ns_ours if side == "ours" else self.ns_charon
        return _run(["ip", "netns", "exec", ns, *argv], check=False, timeout=timeout)

    def snat(self, side: str, ports: dict[int, int] | None = None) -> None:
        """Source NAT on ``side``'s veth: UDP from port 500 / 4500 leaves as 30500 / 34500 (same address)."""
        ip, veth = (OUR_IP, self.veth_ours) if side == "ours" else (CHARON_IP, self.veth_charon)
        table = ["nft", "add", "table", "ip", "anenat"]
        chain = ["nft", "add", "chain", "ip", "anenat", "post", "{ type nat hook postrouting priority 100 ; }"]
        for argv in (table, chain):
            res = self.run_in(side, argv)
            assert res.returncode == 0, res.stderr
        for sport, nport in (ports or {500: 30500, 4500: 34500}).items():
            rule = ["nft", "add", "rule", "ip", "anenat", "post", "oifname", veth, "udp", "sport", str(sport)]
            res = self.run_in(side, [*rule, "snat", "to", f"{ip}:{nport}"])
            assert res.returncode == 0, res.stderr

    def cleanup(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                _stop_pid(p, signal.SIGKILL)
        self.procs.clear()
        if self.created:
            for ns in (self.ns_ours, self.ns_charon):
                _run(["ip", "netns", "del", ns], check=False)
            self.created = False


def emulator_args(
    role: str,
    *,
    proposal: str = "aes128-sha1-modp2048",
    esp_proposal: str | None = None,
    version: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The usual flags for our peer facing the lab's charon (addresses, PSK, selectors, one proposal)."""
    args = [
        "--role", role, "--local", OUR_IP, "--remote", CHARON_IP, "--ike-version", str(version), "--psk", PSK,
        "--proposal", proposal, "--esp-proposal", esp_proposal or proposal,
        "--local-ts", OUR_NET, "--remote-ts", CHARON_NET,
    ]  # fmt: skip
    return args + list(extra)


def conf(**kw: Any) -> CharonConf:
    """A :class:`CharonConf` with overrides (shorthand for tests)."""
    return replace(CharonConf(), **kw)
