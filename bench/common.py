"""Shared pieces of the benchmarks: a real `accord serve` on a fresh database, and a load loop."""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from service.db import migrate

PROJECT = Path(__file__).resolve().parent.parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "app", "password": "app"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[str]:
    """A migrated, empty database of `backend`; dropped afterwards."""
    if backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        migrate(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{name}"
    migrate(url)
    try:
        yield url
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def server(database_url: str, *, workers: int = 1) -> Iterator[str]:
    """`accord serve` on `database_url` (scheduler off), until the block ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env.update(ACCORD_DATABASE_URL=database_url, ACCORD_RUN_SCHEDULER="false", ACCORD_SECRET_KEY="bench")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)  # noqa: S310 (loopback)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@dataclass
class Result:
    name: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:8.1f} req/s  p50 {self.percentile(50):6.1f} ms  "
            f"p99 {self.percentile(99):6.1f} ms  errors {self.errors}"
        )


def load(
    name: str,
    base_url: str,
    request: Callable[[httpx.Client, int], httpx.Response],
    *,
    clients: int,
    seconds: float,
    ok: Callable[[httpx.Response], bool] = lambda r: r.status_code < 400,
    headers: dict[str, str] | None = None,
) -> Result:
    """`clients` threads, each with its own keep-alive connection, calling `request` for `seconds`."""
    result = Result(name)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        latencies, errors, count = [], 0, 0
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                response = request(client, index)
                latencies.append(time.perf_counter() - start)
                count += 1
                errors += not ok(response)
        with lock:
            result.requests += count
            result.errors += errors
            result.latencies.extend(latencies)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result


# --- the summary `make bench` ends with ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One measured figure against its target, for the table `bench/run.py` prints at the end."""

    bench: str
    what: str
    measured: str
    target: str
    met: bool | None  # None: measured for the record, no target


TARGETS: list[Target] = []


def report_target(bench: str, what: str, measured: str, target: str = "", met: bool | None = None) -> None:
    TARGETS.append(Target(bench, what, measured, target, met))


def targets_table(targets: list[Target]) -> str:
    """The figures as one plain-text table, each marked MET or MISSED against its target."""
    header = ("benchmark", "figure", "measured", "target", "")
    rows = [
        (t.bench, t.what, t.measured, t.target, "" if t.met is None else "MET" if t.met else "MISSED") for t in targets
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    met = sum(t.met is True for t in targets)
    missed = sum(t.met is False for t in targets)
    lines.append(f"\n{met} targets met, {missed} missed")
    return "\n".join(lines)
