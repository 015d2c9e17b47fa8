"""What the deployment tests share: app processes started and killed as a service manager would, the
production nginx configuration (`bench/nginx-app.conf`) filled in, who holds the scheduler's leader lock,
and which outbox messages the SMTP server received.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from service.scheduler import _LEADER_LOCK_KEY
from tests.conftest import PG, PROJECT, Collector, accord_env, free_port, wait_for

NGINX_APP_SITE = PROJECT / "bench" / "nginx-app.conf"
# `make_msgid(idstring=f"outbox-{id}")`: every e-mail names the outbox row it was sent from.
OUTBOX_MESSAGE_ID = re.compile(r"\.outbox-(\d+)@")
UVICORN_ACCESS = re.compile(
    r'(?P<client>[^\s:]+):\d+ - "(?P<method>[A-Z]+) (?P<path>[^ ?]+)\S* HTTP/1\.1" (?P<status>\d{3})'
)


def app_site_config(*, listen: str, mirror_dir: Path, apps: list[str]) -> str:
    """`bench/nginx-app.conf` with its placeholders filled: `apps` are the app processes' host:port."""
    text = NGINX_APP_SITE.read_text()
    for placeholder, value in (("@LISTEN@", listen), ("@MIRROR_DIR@", str(mirror_dir))):
        text = text.replace(placeholder, value)
    for n, app in enumerate(apps, 1):
        text = text.replace(f"@APP_{n}@", app)
    left = re.findall(r"@[A-Z0-9_]+@", text)
    assert not left, f"placeholders left unfilled in {NGINX_APP_SITE.name}: {left}"
    return text


class Request(NamedTuple):
    method: str
    path: str
    status: int
    client: str | None  # the address the app took for the client's


@dataclass
class AppProcess:
    """One `accord serve` process (with `--workers N`, uvicorn's supervisor and its workers)."""

    port: int
    proc: subprocess.Popen
    log: Path
    own_group: bool

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def requests(self) -> list[Request]:
        """The requests its access log shows: the service's JSON lines (ACCORD_LOG_FORMAT=json), or uvicorn's."""
        found = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("logger") == "accord.access":
                        found.append(Request(entry["method"], entry["path"], entry["status"], entry["client"]))
            elif match := UVICORN_ACCESS.search(line):
                found.append(Request(match["method"], match["path"], int(match["status"]), match["client"]))
        return found

    def served(self, method: str, path: str) -> int:
        """How many requests for `path` it answered."""
        return sum((r.method, r.path) == (method, path) for r in self.requests())

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, no lock released; its whole process group when it has its own."""
        if self.own_group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.own_group:  # whatever of its group outlived it (a render worker, a uvicorn worker)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def launch(database_url: str, log: Path, *, workers: int = 1, own_group: bool = False, **env: str) -> AppProcess:
    """Starts `accord serve --port P --workers N` (output to `log`); `ready()` waits for it."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers)],
            cwd=PROJECT,
            env=accord_env(database_url, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )
    return AppProcess(port, proc, log, own_group)


def ready(*apps: AppProcess, seconds: float = 60) -> None:
    for app in apps:
        try:
            wait_for(app.url + "/healthz", app.proc, seconds)
        except Exception:
            for each in apps:
                each.stop()
            raise RuntimeError(f"{app.address} did not start:\n{app.log_text()[-3000:]}") from None


def wait_until(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds} s")
        time.sleep(0.1)


# --- the scheduler's leader on PostgreSQL ----------------------------------------------------------------


def _leader_client_ports(engine) -> list[int]:
    """The client ports of the database connections holding the leader's advisory lock (a bigint key shows
    in pg_locks as its high and low 32 bits, objsubid 1)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid = :high AND l.objid = :low "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"high": _LEADER_LOCK_KEY >> 32, "low": _LEADER_LOCK_KEY & 0xFFFFFFFF},
            ).scalars()
        )


def _socket_inodes(local_port: int, remote_port: int) -> set[str]:
    """The inodes of this machine's TCP sockets from `local_port` to `remote_port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                if (local, remote) == (local_port, remote_port):
                    inodes.add(fields[9])
    return inodes


def _owns_socket(pid: int, inodes: set[str]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in wanted:
                    return True
    return False


def scheduler_leaders(engine, apps: list[AppProcess]) -> list[AppProcess | None]:
    """Who holds the scheduler's leader lock now: pg_locks names the backend, its `client_port` the
    connection, /proc the app process that has that connection's socket open (None: no live app process,
    as for a moment after the holder was killed, until its backend has noticed)."""
    leaders = []
    for port in _leader_client_ports(engine):
        inodes = _socket_inodes(port, PG["port"])
        owners = [app for app in apps if app.proc.poll() is None and _owns_socket(app.proc.pid, inodes)]
        leaders.append(owners[0] if len(owners) == 1 else None)
    return leaders


# --- requests and e-mail ---------------------------------------------------------------------------------


def delivered(collector: Collector) -> Counter[int]:
    """How many times the SMTP server received each outbox message, by the outbox row's id."""
    counts: Counter[int] = Counter()
    for _envelope, message in collector.messages:
        match = OUTBOX_MESSAGE_ID.search(message["Message-ID"] or "")
        assert match, f"an e-mail not sent from the outbox: {message['Message-ID']}"
        counts[int(match[1])] += 1
    return counts
