"""Where a single web process's threads run: the event loop and the PDF render workers on one half of the CPUs,
the request threads (AnyIO's thread pool, which runs the synchronous routes and database work) on the other.

Measured on two cores (`bench/memoranda.py` and `perf sched timehist`): with every thread free to run anywhere, a
request thread woken on the event loop's CPU preempts the loop, and the loop then waits, runnable, while that thread
or a render runs on until the next scheduler tick (4 ms at HZ=250); `GET /healthz`'s p99 while ten memoranda were
issued went from 3 to 6–9 ms. Kept apart, the loop shares its CPU only with the renders, which run in Linux's
SCHED_IDLE class and give the CPU back the moment the loop wakes; the request threads share theirs with nothing of
ours, and the same p99 stayed within a fifth of the idle one.

Only for one web process with at least two CPUs, and only from `accord serve`: a test or a script that builds the
app keeps its threads where they are. Several processes would all pin their loops to the same CPUs, so it is off
with `--workers` above 1, and of several `accord serve` on one machine (one per core behind nginx) only the first
to start takes it (a lock in `ACCORD_DATA_DIR`); there, `ACCORD_CPU_LAYOUT=false` is the clearer choice.
"""

import fcntl
import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """The CPUs of the event loop (and the render workers), and those of the request threads."""

    loop: frozenset[int]
    threads: frozenset[int]

    def describe(self) -> str:
        loop, threads = _cpu_list(self.loop), _cpu_list(self.threads)
        return f"event loop and PDF renders on CPU {loop}, request threads on CPU {threads}"


def split(allowed: set[int] | frozenset[int]) -> Layout | None:
    """The first half of `allowed` (at least one CPU) for the loop, the rest for the threads; None below two CPUs."""
    cpus = sorted(allowed)
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return Layout(loop=frozenset(cpus[:half]), threads=frozenset(cpus[half:]))


_held: list[IO] = []  # the machine-wide lock, held as long as this process lives
_active: list[Layout] = []  # the layout applied in this process, if any


def loop_cpus() -> frozenset[int]:
    """The event loop's CPUs, where render workers go, under an applied layout; empty without one."""
    return _active[0].loop if _active else frozenset()


def apply(*, workers: int, data_dir: Path) -> Layout | None:
    """Pins the calling thread (the one that will run the event loop) and every other thread of this process, and
    makes each new request thread move to its CPUs as it starts. None (and nothing changed) where it does not apply:
    several workers, fewer than two CPUs, another `accord serve` on this machine holding the layout, or an AnyIO
    whose worker threads this does not know."""
    if workers != 1 or not hasattr(os, "sched_setaffinity"):
        return None
    layout = split(os.sched_getaffinity(0))
    worker_thread = _worker_thread_class()
    if layout is None or worker_thread is None or not _only_server(data_dir):
        return None
    try:
        os.sched_setaffinity(0, layout.loop)  # on Linux, 0 is the calling thread
    except OSError as error:
        logger.warning("The CPU layout was not applied: %s", error)
        return None
    _hook(worker_thread, layout.threads)
    here = threading.get_native_id()
    for task in os.listdir("/proc/self/task"):
        if int(task) != here:
            _pin(int(task), layout.threads)
    _active.append(layout)
    return layout


def off_the_loop(target: Callable[[], None]) -> Callable[[], None]:
    """`target` for a background thread that the event loop's thread starts (and whose CPU it would inherit): it
    moves to the request threads' CPUs first, where a layout is applied, and so do the threads it starts."""

    @functools.wraps(target)
    def run() -> None:
        if _active:
            _pin(0, _active[0].threads)
        target()

    return run


def _only_server(data_dir: Path) -> bool:
    """Whether this process got the machine's CPU layout lock (kept until it exits)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "cpu-layout.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return False
    _held.append(lock)
    return True


def _worker_thread_class() -> type[threading.Thread] | None:
    """AnyIO's worker thread class (the request threads), or None (with a warning) if this AnyIO has none."""
    try:
        from anyio._backends._asyncio import WorkerThread
    except ImportError:
        WorkerThread = None
    if getattr(WorkerThread, "run", None) is None:
        logger.warning("AnyIO's worker thread class was not found: the CPU layout is not applied")
        return None
    return WorkerThread


def _hook(worker_thread: type[threading.Thread], cpus: frozenset[int]) -> None:
    """Makes each new request thread pin itself to `cpus` as it starts: the event loop's thread creates them, and
    they would otherwise inherit its CPU."""
    run = worker_thread.run

    def pinned_run(self: threading.Thread) -> None:
        _pin(0, cpus)
        run(self)

    worker_thread.run = pinned_run  # type: ignore[method-assign]


def _pin(task: int, cpus: frozenset[int]) -> None:
    try:
        os.sched_setaffinity(task, cpus)
    except OSError as error:  # a thread that ended meanwhile, or CPUs taken away by the container
        logger.debug("Thread %s was not pinned to CPU %s: %s", task, _cpu_list(cpus), error)


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))
