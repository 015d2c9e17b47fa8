"""The CPU layout of a single `accord serve`: the event loop and the PDF render workers on one half of the CPUs, the
request threads on the other; a second `accord serve` on the same machine leaves its threads alone."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service.cpus import Layout, split
from tests.conftest import PROJECT, accord_env, free_port, stop, wait_for

ALLOWED = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="the layout needs at least two CPUs")


def test_the_split_gives_the_loop_the_first_half_and_the_threads_the_rest():
    assert split({0}) is None
    assert split(set()) is None
    assert split({0, 1}) == Layout(loop=frozenset({0}), threads=frozenset({1}))
    assert split({0, 1, 2, 3}) == Layout(loop=frozenset({0, 1}), threads=frozenset({2, 3}))
    assert split({7, 3, 5}) == Layout(loop=frozenset({3}), threads=frozenset({5, 7}))
    assert split({0, 1}).describe() == "event loop and PDF renders on CPU 0, request threads on CPU 1"


def serve(database_url: str, data_dir: Path, log: Path, *, scheduler: bool = False) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = accord_env(
        database_url, ACCORD_CPU_LAYOUT="true", ACCORD_DATA_DIR=str(data_dir), ACCORD_PDF_WARM_UP="true",
        ACCORD_RUN_SCHEDULER=str(scheduler).lower(),
    )  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/healthz", proc, seconds=60)
    except Exception:
        proc.kill()
        raise
    return proc, url


def threads_of(pid: int, *, but_uvloops: bool = False) -> dict[int, frozenset[int]]:
    """Each thread's CPUs (without uvloop's own idle helper threads, if asked)."""
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            if but_uvloops and Path(f"/proc/{pid}/task/{task}/comm").read_text().strip() == "libuv-worker":
                continue
            found[int(task)] = frozenset(os.sched_getaffinity(int(task)))
        except OSError:
            continue  # ended meanwhile
    return found


def render_workers_of(pid: int, seconds: float = 60) -> dict[int, frozenset[int]]:
    """The CPUs of `pid`'s PDF render workers, once they have started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        workers = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                if parent == pid and b"_worker_main" in command:
                    workers[int(entry)] = frozenset(os.sched_getaffinity(int(entry)))
            except OSError:
                continue  # ended meanwhile
        if workers:
            return workers
        time.sleep(0.2)
    raise AssertionError("no render worker started")


@needs_two_cpus
def test_one_server_keeps_its_event_loop_apart_from_its_request_threads(database_url, tmp_path):
    layout = split(ALLOWED)
    proc, url = serve(database_url, tmp_path / "data", tmp_path / "first.log", scheduler=True)
    second = None
    try:
        for _ in range(5):  # /healthz is a synchronous route: it runs in a request thread
            urllib.request.urlopen(url + "/healthz", timeout=10).read()  # noqa: S310 (loopback)
        renders = render_workers_of(proc.pid)
        assert set(renders.values()) == {layout.loop}
        time.sleep(1)  # the scheduler's leader has started the jobs' threads; the renders have warmed up
        for render in renders:  # alive (not a zombie), still there
            assert Path(f"/proc/{render}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            assert frozenset(os.sched_getaffinity(render)) == layout.loop
        threads = threads_of(proc.pid, but_uvloops=True)
        assert threads.pop(proc.pid) == layout.loop  # the main thread runs the event loop
        # The request threads that answered, the scheduler's: every other thread of ours keeps off the loop's CPUs.
        assert len(threads) >= 3
        assert set(threads.values()) == {layout.threads}
        assert f"CPU layout: {layout.describe()}" in (tmp_path / "first.log").read_text()

        # A second server on the same machine (same data folder) finds the layout taken and pins nothing.
        second, second_url = serve(database_url, tmp_path / "data", tmp_path / "second.log")
        urllib.request.urlopen(second_url + "/healthz", timeout=10).read()  # noqa: S310 (loopback)
        assert set(threads_of(second.pid).values()) == {ALLOWED}
        assert "CPU layout" not in (tmp_path / "second.log").read_text()
    finally:
        if second is not None:
            stop(second)
        stop(proc)
