"""Test fixtures: a real database per test (SQLite file and PostgreSQL server), clients, live servers, SMTP.

Every test that takes `engine` (or anything built on it) runs twice: on SQLite and on PostgreSQL.
`ACCORD_TEST_BACKENDS=sqlite` narrows that for a quick local run; `make test` runs both.
"""

import email
import email.policy
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.config import settings
from service.db import create_db_engine, migrate, write_engine
from service.main import create_app

PROJECT = Path(__file__).resolve().parent.parent
PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "app"),
    "password": os.environ.get("PGPASSWORD", "app"),
}
BACKENDS = [b for b in os.environ.get("ACCORD_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_url(dbname: str) -> str:
    return f"postgresql+psycopg://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{dbname}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(sql)


def _drop_pg_database(name: str) -> None:
    """Drops a test database, waiting out an autovacuum worker a role without pg_signal_backend
    may not end (the error then names that role)."""
    for attempt in range(50):
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == 49:
                raise
            time.sleep(0.2)


class DatabaseFactory:
    """Makes fresh, migrated databases of one backend: migrated once, then copied per test."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.created: list[str] = []
        if backend == "sqlite":
            self.template = workdir / "template.db"
            migrate(f"sqlite:///{self.template}")
            engine = create_db_engine(f"sqlite:///{self.template}")
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()
        else:
            self.template = f"tmpl_{uuid.uuid4().hex[:12]}"
            _pg_admin(f'CREATE DATABASE "{self.template}"')
            migrate(pg_url(self.template))

    def new_url(self) -> str:
        """The URL of a new database holding the migrated, empty schema."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        if self.backend == "sqlite":
            path = self.workdir / f"{name}.db"
            shutil.copyfile(self.template, path)
            return f"sqlite:///{path}"
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}" STRATEGY FILE_COPY')
        self.created.append(name)
        return pg_url(name)

    def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        else:
            _drop_pg_database(url.rsplit("/", 1)[1])

    def close(self) -> None:
        if self.backend == "postgresql":
            _drop_pg_database(self.template)


@pytest.fixture(scope="session", autouse=True)
def memoranda_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Memorandum PDFs go to a temporary archive, never the project's `memoranda/`."""
    kept = settings.memoranda_dir, settings.pdf_warm_up
    settings.memoranda_dir = tmp_path_factory.mktemp("memoranda")
    settings.pdf_warm_up = False  # render workers start when a test first renders, not with every app
    yield settings.memoranda_dir
    settings.memoranda_dir, settings.pdf_warm_up = kept


@pytest.fixture(autouse=True)
def public_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test's static mirror of the public site goes to its own folder, never the project's `var/`."""
    kept = settings.public_mirror_dir
    settings.public_mirror_dir = tmp_path_factory.mktemp("public")
    yield settings.public_mirror_dir
    settings.public_mirror_dir = kept


@pytest.fixture(autouse=True)
def attachments_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Consultation attachments go to a temporary folder, never the project's `var/`."""
    kept = settings.attachments_dir
    settings.attachments_dir = tmp_path_factory.mktemp("attachments")
    yield settings.attachments_dir
    settings.attachments_dir = kept


def only(backend: str) -> pytest.MarkDecorator:
    """Runs a test on one database (skipped when ACCORD_TEST_BACKENDS leaves that one out)."""
    skip = pytest.mark.skipif(backend not in BACKENDS, reason=f"{backend} is not in ACCORD_TEST_BACKENDS")
    return pytest.mark.parametrize("database_factory", [pytest.param(backend, marks=skip)], indirect=True)


@pytest.fixture(scope="session", params=BACKENDS)
def database_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(request.param, tmp_path_factory.mktemp(request.param))
    yield factory
    factory.close()


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> Iterator[str]:
    url = database_factory.new_url()
    yield url
    database_factory.drop(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session for building data and checking results; service functions commit through it."""
    with Session(write_engine(engine), expire_on_commit=False) as session:
        yield session


@pytest.fixture
def app(engine: Engine):
    return create_app(engine, run_scheduler=False)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


class Collector:
    """An SMTP server's handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope, message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Collector]]:
    """A real SMTP server (aiosmtpd) on loopback."""
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def accord_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment for an `accord` subprocess on this database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env.update(
        {
            "ACCORD_DATABASE_URL": database_url,
            "ACCORD_SECRET_KEY": "test-secret-key",
            "ACCORD_MEMORANDA_DIR": str(settings.memoranda_dir),
            "ACCORD_PDF_WARM_UP": "false",
            # Test servers run side by side: none pins its threads (tests/core/test_cpus.py turns it on)
            "ACCORD_CPU_LAYOUT": "false",
            "ACCORD_PUBLIC_MIRROR_DIR": str(settings.effective_public_mirror_dir),
            "ACCORD_ATTACHMENTS_DIR": str(settings.effective_attachments_dir),
            **extra,
        }
    )
    return env


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 (loopback)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


class LiveServer:
    def __init__(self, url: str, database_url: str, proc: subprocess.Popen) -> None:
        self.url = url
        self.database_url = database_url
        self.proc = proc


def start_server(database_url: str, *, workers: int = 1, **env: str) -> LiveServer:
    """`accord serve` in a subprocess on a free port (the scheduler off unless asked for)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=PROJECT,
        env=accord_env(database_url, **{"ACCORD_RUN_SCHEDULER": "false", **env}),
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/healthz", proc)
    except Exception:
        proc.kill()
        raise
    return LiveServer(url, database_url, proc)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def live_server(database_url: str) -> Iterator[LiveServer]:
    server = start_server(database_url)
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's browser is Debian's Chromium (no browser download)."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}
