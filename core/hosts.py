"""This machine as a box host of a cluster, built from the settings; and the hosts as
`burrow host ls` shows them (leases, load, boxes).

The primitives are the box runtime's, below core/: leases (boxes/hosts.py), placement
(boxes/placement.py) and fenced writes (boxes/registry.py), since the box manager calls them
under a box's lock and on every write of a box's record. Here they get the settings and the
view that joins them with the box registry.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from boxes.config import RuntimeConfig
from boxes.errors import HostNotFoundError
from boxes.hosts import HostInfo, HostLease, HostLoad, Hosts, HostSpec
from boxes.registry import Registry
from core.keys import Keys
from core.roles import parse_listen
from core.settings import Settings

# Where this process's memory limit is read: its cgroup's (v2, then v1), else the machine's.
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"),
                  Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
_MEMINFO = Path("/proc/meminfo")


def memory_mb() -> int:
    """The memory this process may use, in MB: its cgroup's limit if it has one, else the
    machine's."""
    total = 0
    for line in _MEMINFO.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) // 1024
    for path in _CGROUP_LIMITS:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) // (1 << 20) < total:
            return int(raw) // (1 << 20)  # (v1 says "no limit" with a huge number)
    return total


def host_spec(settings: Settings) -> HostSpec:
    """What this machine registers as, from BURROW_HOST_NAME, _ADDRESS, _MAX_BOXES and
    _MEMORY_MB."""
    name = settings.host_name or socket.gethostname()
    _, port = parse_listen(settings.host_listen)
    return HostSpec(name=name, address=settings.host_address or f"{socket.gethostname()}:{port}",
                    max_boxes=settings.host_max_boxes,
                    memory_mb=settings.host_memory_mb or memory_mb()).validate()


def host_lease(settings: Settings, redis: Redis, keys: Keys,
               load: Callable[[], Awaitable[HostLoad]] | None = None,
               on_lapse: Callable[[str], Awaitable[None]] | None = None) -> HostLease:
    """This machine's lease (not yet registered: register(), then start())."""
    return HostLease(redis, keys, host_spec(settings), settings.host_lease_s, load=load,
                     on_lapse=on_lapse)


@dataclass(frozen=True)
class HostRow:
    """One host as `burrow host ls` shows it."""

    host: HostInfo
    boxes: list[str]        # the boxes the registry places on it, by id
    cached_layers: int      # the box layers it reports cached


async def host_table(hosts: Hosts, registry: Registry) -> list[HostRow]:
    """Every registered host (live, or lapsed a short while) with the boxes placed on it."""
    placed: dict[str, list[str]] = {}
    for box in await registry.all():
        if box.host is not None:
            placed.setdefault(box.host, []).append(box.id)
    rows = []
    for info in await hosts.all():
        layers = await hosts.layers(info.id)
        rows.append(HostRow(host=info, boxes=sorted(placed.get(info.id, [])),
                            cached_layers=len(layers)))
    return rows


def _describe(row: HostRow) -> str:
    info = row.host
    lease = f"lease {info.lease_ms / 1000:.1f} s" if info.live else "LAPSED"
    return (f"{info.id}  {info.address}  {lease}{'  DRAINING' if info.draining else ''}  "
            f"boxes {info.boxes}/{info.max_boxes}  memory {info.memory_used_mb}/"
            f"{info.memory_mb} MB  placed {len(row.boxes)}  cached layers {row.cached_layers}")


async def host_rows(settings: Settings) -> list[str]:
    """`burrow host ls`: a line per registered host."""
    redis = Redis.from_url(settings.redis_url or "")
    try:
        keys = Keys(settings.redis_prefix)
        registry = Registry(redis, RuntimeConfig(data_dir=settings.data_dir.resolve()), keys)
        return [_describe(row) for row in await host_table(Hosts(redis, keys), registry)]
    finally:
        await redis.aclose()


async def drain(settings: Settings, host_id: str, draining: bool) -> str:
    """`burrow host drain`: mark the host (LookupError if it is not registered)."""
    redis = Redis.from_url(settings.redis_url or "")
    try:
        try:
            info = await Hosts(redis, Keys(settings.redis_prefix)).drain(host_id, draining)
        except HostNotFoundError as exc:
            raise LookupError(exc.message) from None
        return (f"{info.id} drains: it freezes its boxes and gives them up" if draining
                else f"{info.id} takes boxes again")
    finally:
        await redis.aclose()
