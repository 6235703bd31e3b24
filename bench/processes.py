"""Where the machine's CPU goes, by kind of process, and which gateway processes answer a URL."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def _process_kind(p: Any) -> str:
    cmd = " ".join(p.info["cmdline"] or [])
    name = p.info["name"] or ""
    if "gateway.cli worker" in cmd:
        return "worker (fetch, pipeline, inference)"
    if "multiprocessing" in cmd and ("spawn_main" in cmd or "forkserver" in cmd):
        return "worker decode processes"
    if "gateway.cli serve" in cmd:
        return "gateways"
    if name == "weed" or "weed" in cmd.split(" ")[0]:
        return "S3 (weed)"
    if name.startswith("postgres") or "postgres" in cmd.split(" ")[0]:
        return "PostgreSQL"
    if "bench.run" in cmd:
        return "bench client"
    return "other"


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """Every process's CPU seconds (user + system) so far, by pid, with the kind it is."""
    import psutil

    out = {}
    for p in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = p.info["cpu_times"]
        if times is not None:
            out[p.pid] = (_process_kind(p), times.user + times.system)
    out[-1] = ("wall", time.perf_counter())
    return out


def cpu_spent_since(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds by kind of process since ``before`` (processes that ended meanwhile are not counted;
    PostgreSQL backends live as long as their pooled connections, so they are)."""
    now = cpu_by_process()
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in now.items():
        if pid == -1:
            continue
        spent[kind] = spent.get(kind, 0.0) + seconds - (before[pid][1] if pid in before else 0.0)
    result = {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.005}
    result["wall_s"] = round(now[-1][1] - before[-1][1], 3)
    return result


async def answering_pids(url: str, wanted: int, timeout: float = 60.0) -> set[int]:
    """The gateway processes behind ``url`` (/healthz names its pid), over fresh concurrent connections."""
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as http:
        while len(seen) < wanted and time.monotonic() < deadline:
            replies = await asyncio.gather(*(http.get(url + "/healthz") for _ in range(4 * wanted)))
            seen.update(r.json()["pid"] for r in replies)
    return seen
