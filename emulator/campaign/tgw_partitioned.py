"""``awsnetemu tgw replay --dask``: a large capture replayed in partitions on a Dask cluster, then merged.

1. **Partition** (this process, streaming): every record of the capture goes, byte for byte (its pcap record
   header included, so timestamps are not re-encoded), to partition ``crc32(canonical flow key) % P``. The key
   is the dataplane's symmetric one (:attr:`tgw_dataplane.packet.Packet.key`: both directions of a flow give the
   same key), so each partition, hence each worker, holds whole flows: a stateful appliance, an appliance-mode
   pin or a GWLB flow entry sees every packet of its flow. Frames that do not parse go to partition 0.
2. **Replay** (the workers): :func:`tgw_dataplane.replay.replay` over one partition, with the whole capture's
   first timestamp as time 0 (``origin``), writing ``hops/*.pcap`` and ``flowlogs.txt`` of that partition.
3. **Merge** (this process, streaming): per node, the partitions' captures by timestamp (``heapq.merge``; each
   is in capture order already); the flow logs by their ``start`` field (records are created in time order, so
   each partition's lines are sorted by it); the summaries by adding their counts.

The result equals one replay of the whole capture record for record, except the order of records that carry
the same timestamp (flow logs: the same ``start`` second) in different partitions, which follows the partition
number, and the order of ``summary.json``'s flows (by name here). With a topology using ``packet-random``
settings each worker draws from its own generator. Memory: this process holds one buffered record per partition
and node being merged; each worker holds the flow state of its partitions' flows.

The partitions and the workers' outputs live under ``OUT/.partitions`` (deleted after the merge): workers must
be able to read and write there, as they can on a :class:`distributed.LocalCluster` (``--dask local``) or on a
cluster that shares the file system.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from emulator.errors import ConfigError

_CHUNK = 1 << 20
_BUF = 1 << 16


def partition_of(frame: bytes, parts: int) -> int:
    """The partition of a raw IP frame: by the symmetric flow key; unparsable frames go to 0."""
    from tgw_dataplane.packet import parse

    p = parse(frame)
    if isinstance(p, str):
        return 0
    k = p.key
    return zlib.crc32(k.to_bytes((k.bit_length() + 7) // 8 or 1, "big")) % parts


def _records(f: BinaryIO, endian: str) -> Iterator[tuple[bytes, bytes]]:
    """(16-byte record header, record data) of a checked capture, from after its file header."""
    rec = struct.Struct(endian + "IIII")
    buf = b""
    off = 0
    while True:
        if len(buf) - off < 16:
            more = f.read(_CHUNK)
            if not more:
                return
            buf = buf[off:] + more
            off = 0
            continue
        incl = rec.unpack_from(buf, off)[2]
        end = off + 16 + incl
        if end > len(buf):
            more = f.read(max(_CHUNK, end - len(buf)))
            if not more:
                return
            buf = buf[off:] + more
            off = 0
            continue
        yield buf[off : off + 16], buf[off + 16 : end]
        off = end


def write_partitions(pcap: str, parts: int, directory: Path) -> tuple[list[str], float | None, int]:
    """Split a checked capture into ``parts`` captures under ``directory`` (same file header, records copied
    as they are); returns their paths, the first timestamp and the number of records."""
    from tgw_dataplane.pcapfile import check_pcap

    directory.mkdir(parents=True, exist_ok=True)
    paths = [str(directory / f"part-{i:03d}.pcap") for i in range(parts)]
    first: float | None = None
    n = 0
    with open(pcap, "rb") as f:
        info = check_pcap(f, pcap)
        f.seek(0)
        head = f.read(24)
        outs = [open(p, "wb", buffering=_BUF) for p in paths]  # noqa: SIM115 - closed below
        try:
            for o in outs:
                o.write(head)
            ts = struct.Struct(info.endian + "II")
            ether = info.linktype == 1
            for hdr, data in _records(f, info.endian):
                if first is None:
                    sec, frac = ts.unpack_from(hdr)
                    first = sec + frac / info.units
                frame = data
                if ether:
                    frame = data[14:] if len(data) >= 14 and data[12:14] in (b"\x08\x00", b"\x86\xdd") else b""
                o = outs[partition_of(frame, parts) if frame else 0]
                o.write(hdr)
                o.write(data)
                n += 1
        finally:
            for o in outs:
                o.close()
    return paths, first, n


class _DirOutput:
    """A ReplayOutput into one partition's directory (hops/*.pcap, flowlogs.txt)."""

    def __init__(self, out: Path) -> None:
        self.hops = out / "hops"
        self.hops.mkdir(parents=True, exist_ok=True)
        self._fl = open(out / "flowlogs.txt", "w")  # noqa: SIM115 - closed by close()
        self._started: set[str] = set()

    def hop_capture(self, node: str, file_name: str, data: bytes) -> None:
        mode = "ab" if file_name in self._started else "wb"
        self._started.add(file_name)
        with open(self.hops / file_name, mode) as f:
            f.write(data)

    def flow_log_lines(self, lines: list[str]) -> None:
        self._fl.write("".join(line + "\n" for line in lines))

    def close(self) -> None:
        self._fl.close()


def replay_partition(
    topology: str, part: str, out: str, origin: float, appliance_mode: Mapping[str, bool]
) -> dict[str, Any]:
    """Replay one partition (on a worker): outputs under ``out``; returns the summary as JSON plus the first-seen
    order of flow names."""
    from tgw_dataplane.loader import load_any
    from tgw_dataplane.pcapfile import check_pcap, iter_frames
    from tgw_dataplane.replay import replay

    topo = load_any(topology)
    sink = _DirOutput(Path(out))
    try:
        with open(part, "rb") as f:
            info = check_pcap(f, part)
            f.seek(0)
            summary = replay(topo, iter_frames(f, info), sink, appliance_mode=dict(appliance_mode), origin=origin)
    finally:
        sink.close()
    return summary.to_json()


def _pcap_records(path: Path) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, 0, record bytes) of a per-hop capture written by a replay (raw IP, microseconds)."""
    with open(path, "rb") as f:
        head = f.read(24)
        endian = "<" if head[:4] == b"\xd4\xc3\xb2\xa1" or head[:4] == b"\x4d\x3c\xb2\xa1" else ">"
        units = 1e9 if head[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
        ts = struct.Struct(endian + "II")
        for hdr, data in _records(f, endian):
            sec, frac = ts.unpack_from(hdr)
            yield sec + frac / units, 0, hdr + data


def merge_captures(part_dirs: list[Path], out: Path) -> list[str]:
    """Per node, the partitions' captures merged by timestamp into ``out/hops``; returns the file names."""
    hops = out / "hops"
    hops.mkdir(parents=True, exist_ok=True)
    names = sorted({p.name for d in part_dirs if (d / "hops").is_dir() for p in (d / "hops").iterdir()})
    for name in names:
        files = [d / "hops" / name for d in part_dirs if (d / "hops" / name).is_file()]
        with open(files[0], "rb") as f:
            head = f.read(24)
        streams = [_pcap_records(p) for p in files]
        with open(hops / name, "wb", buffering=_BUF) as w:
            w.write(head)
            for _, _, rec in heapq.merge(*streams, key=lambda r: r[0]):
                w.write(rec)
    return names


def _flow_lines(path: Path) -> Iterator[tuple[int, str]]:
    from tgw_dataplane.flowlogs import FIELDS

    i = FIELDS.index("start")
    with open(path) as f:
        f.readline()  # the header
        for line in f:
            line = line.rstrip("\n")
            if line:
                yield int(line.split(" ", i + 1)[i]), line


def merge_flow_logs(part_dirs: list[Path], out: Path) -> int:
    """The partitions' flow logs merged by ``start`` into ``out/flowlogs.txt``; returns the number of records."""
    from tgw_dataplane.flowlogs import FIELDS

    n = 0
    with open(out / "flowlogs.txt", "w") as w:
        w.write(" ".join(FIELDS) + "\n")
        streams = [_flow_lines(d / "flowlogs.txt") for d in part_dirs if (d / "flowlogs.txt").is_file()]
        for _, line in heapq.merge(*streams, key=lambda r: r[0]):
            w.write(line + "\n")
            n += 1
    return n


def merge_summaries(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the partitions' ``summary.json`` documents."""
    drops: dict[str, int] = {}
    flows: dict[str, dict[str, Any]] = {}
    hop_files: set[str] = set()
    packets = delivered = 0
    for d in docs:
        packets += d["packets"]
        delivered += d["delivered"]
        for k, v in d["drops"].items():
            drops[k] = drops.get(k, 0) + v
        for name, fc in d["flows"].items():
            have = flows.setdefault(name, {"packets": 0, "delivered": 0, "dropped": 0, "reasons": {}})
            for k in ("packets", "delivered", "dropped"):
                have[k] += fc[k]
            for r, c in fc["reasons"].items():
                have["reasons"][r] = have["reasons"].get(r, 0) + c
        hop_files.update(d["hop_captures"])
    return {
        "packets": packets,
        "delivered": delivered,
        "drops": dict(sorted(drops.items())),
        "flows": dict(sorted(flows.items())),
        "hop_captures": sorted(hop_files),
    }


def replay_partitioned(
    topology: str,
    pcap: str,
    out: Path,
    appliance_mode: Mapping[str, bool],
    dask: str,
    workers: int = 2,
    partitions: int | None = None,
) -> dict[str, Any]:
    """The whole ``--dask`` replay (module docstring): partition, replay on the cluster, merge into ``out``.
    Returns the merged summary document (``summary.json``)."""
    from distributed import Client, LocalCluster

    parts = partitions or max(1, 2 * workers)
    if not 1 <= parts <= 1024:
        raise ConfigError(f"partitions: {parts} (allowed: 1..1024)")
    work = out / ".partitions"
    if work.exists():
        shutil.rmtree(work)
    paths, first, _ = write_partitions(pcap, parts, work)
    cluster: Any = None
    try:
        if dask == "local":
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
            )
            client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        else:
            try:
                client = Client(dask, set_as_default=False, timeout="15s")  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError, ValueError) as e:
                raise ConfigError(f"--dask: cannot reach a Dask scheduler at {dask!r}: {e}") from None
        try:
            dirs = [work / f"out-{i:03d}" for i in range(parts)]
            futs = [
                client.submit(
                    replay_partition,
                    os.path.abspath(topology),
                    os.path.abspath(p),
                    os.path.abspath(d),
                    first or 0.0,
                    dict(appliance_mode),
                    key=f"awsnetemu-tgw-replay-{i}-{zlib.crc32(os.path.abspath(p).encode()):08x}",
                    pure=False,
                )
                for i, (p, d) in enumerate(zip(paths, dirs, strict=True))
            ]
            docs = client.gather(futs)  # type: ignore[no-untyped-call]
        finally:
            client.close()  # type: ignore[no-untyped-call]
    finally:
        if cluster is not None:
            cluster.close()
    merge_captures(dirs, out)
    merge_flow_logs(dirs, out)
    summary = merge_summaries(list(docs))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work)
    return summary
