"""The database: engines, sessions, SQLite pragmas, the UTC timestamp type and the migration check."""

import asyncio
import select
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import annotated_types
import anyio
import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from service.config import PROJECT_ROOT, settings

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
# Write transactions take SQLite's write lock at BEGIN, so two writers queue instead of one failing
# with "database is locked" when it upgrades a read snapshot that went stale.
WRITE = {"accord_write": True}
# Ids are `integer` columns, 32 bits on PostgreSQL: a bigger (or non-positive) id in a path, query or body
# is refused as invalid input (422) rather than failing inside the query (500).
MAX_ID = 2**31 - 1
Id = Annotated[int, annotated_types.Interval(ge=1, le=MAX_ID)]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; store timezone-aware values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EnumText(sa.types.TypeDecorator):
    """An enum stored as its plain string value (no database enum type to migrate), read back as the enum."""

    impl = sa.String
    cache_ok = True

    def __init__(self, enum: type, length: int = 30) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else self.enum(value)


SQLITE_WRITE_WAIT_SECONDS = 30
T = TypeVar("T")


class DatabaseBusy(RuntimeError):
    """No write slot on the SQLite database in time."""


# A pooled connection whose way to the server vanished without a word (a firewall's idle timeout, a host
# gone) is found dead by the kernel's keepalive probes within about 1½ minutes; `_check_alive` then
# discards it instead of handing it out to hang. (Settings in the URL win.)
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 10, "keepalives_count": 3}


def _postgresql_timeouts(url: str) -> dict[str, Any]:
    """libpq start-up options giving every connection the statement and lock timeouts (any in the URL win)."""
    options = [
        f"-c {name}={round(seconds * 1000)}"
        for name, seconds in (
            ("statement_timeout", settings.db_statement_timeout_seconds),
            ("lock_timeout", settings.db_lock_timeout_seconds),
        )
        if seconds > 0
    ]
    given = sa.engine.make_url(url).query.get("options")
    options += [given] if isinstance(given, str) else list(given or ())
    return {"options": " ".join(options)} if options else {}


def create_db_engine(url: str, *, timeouts: bool = False) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a busy timeout and explicit BEGINs.

    With `timeouts` (the app's engine; not migrations' or commands', whose work may rightly take long) a
    statement, a lock wait, a wait for a pooled connection and a wait for SQLite's write lock are cut short
    as the settings say, and `service.limits` answers those requests 503.
    """
    pool = {"pool_timeout": settings.db_pool_timeout_seconds} if timeouts else {}
    if not url.startswith("sqlite"):
        given = sa.engine.make_url(url).query
        connect_args = {name: value for name, value in _KEEPALIVES.items() if name not in given}
        connect_args |= _postgresql_timeouts(url) if timeouts else {}
        engine = sa.create_engine(url, pool_size=10, max_overflow=20, connect_args=connect_args, **pool)
        event.listen(engine, "checkout", _check_alive)
        engine._accord_connect_args = connect_args  # for the event loop's connections (`event_loop_pool_open`)
        engine._accord_pool_timeout = pool.get("pool_timeout", 30.0)
        return engine
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_wait = settings.sqlite_write_wait_seconds if timeouts else SQLITE_WRITE_WAIT_SECONDS
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": write_wait}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={round(write_wait * 1000)}")
        cursor.close()

    # Writers of this process queue on a lock, in order, instead of in SQLite's busy handler, which
    # sleeps in growing steps and lets an unlucky writer wait seconds under load.
    writers = threading.Lock()

    def _release(info: dict) -> None:
        if info.pop("accord_writer", False):
            writers.release()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if not conn.get_execution_options().get("accord_write"):
            conn.exec_driver_sql("BEGIN")
            return
        if not writers.acquire(timeout=write_wait):
            raise DatabaseBusy(f"No write slot on the SQLite database within {write_wait:g} s.")
        conn.connection.info["accord_writer"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn.connection.info)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: sa.Connection) -> None:
        _release(conn.connection.info)

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        _release(record.info)  # a connection handed back without commit or rollback still lets go

    return engine


def _check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection checked as it is handed out, without the round trip of a ping.

    An idle connection has nothing to read. One the server has ended (a restart, a terminated backend, an
    idle timeout) has its farewell or the end of the stream waiting: it is discarded, and the pool hands
    out a fresh one in its place. (SQLAlchemy's pre-ping would ask the server instead: a round trip more on
    every request, a tenth of a pledge's.)"""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise sa.exc.DisconnectionError("the connection is broken")
    poller = select.poll()
    poller.register(dbapi_connection.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise sa.exc.DisconnectionError("the server has closed the connection")


@asynccontextmanager
async def lent_connection(pool: AsyncConnectionPool) -> AsyncIterator[Any]:
    """A connection of the event loop's `pool`, checked as `_check_alive` checks the engine's: a dead one
    is closed and the next taken at once (psycopg_pool's own check would wait a growing back-off between
    them: seconds, after a restart of the database). No connection within the pool's timeout: SQLAlchemy's
    TimeoutError, which the app answers 503 as it does for the engine's pool."""
    for _ in range(pool.max_size + 1):
        try:
            connection = await pool.getconn()
        except PoolTimeout as error:
            raise sa.exc.TimeoutError(f"No connection to the database within {pool.timeout:g} s.") from error
        try:
            _check_alive(connection, None, None)
            break
        except sa.exc.DisconnectionError:
            await connection.close()
            await pool.putconn(connection)  # discarded; the pool makes another
    else:
        raise sa.exc.DisconnectionError("no live connection to the database")
    try:
        yield connection
    finally:
        with anyio.CancelScope(shield=True):  # a request cancelled meanwhile must not keep the connection
            await pool.putconn(connection)  # rolls back what was left open, or discards a broken connection


@asynccontextmanager
async def event_loop_pool_open(app: Any, engine: Engine, size: int) -> AsyncIterator[None]:
    """On PostgreSQL, a pool of psycopg's asynchronous connections for work done in the event loop itself
    (a partner's pledge), open in this event loop while the block runs (the app's lifespan): connected as
    `engine`'s own connections are (the same parameters, timeouts and adapters), at most `size` of them,
    made when first wanted. `event_loop_pool(app)` hands it out."""
    if engine.dialect.name != "postgresql":
        yield
        return
    _, params = engine.dialect.create_connect_args(engine.url)
    pool = AsyncConnectionPool(
        kwargs={**params, **getattr(engine, "_accord_connect_args", {})},
        min_size=0,
        max_size=size,
        open=False,
        timeout=getattr(engine, "_accord_pool_timeout", 30.0),
        name="accord-event-loop",
    )
    await pool.open(wait=False)  # (a database down at start-up is the readiness probe's to report)
    app.state.event_loop_pool = (asyncio.get_running_loop(), pool)
    try:
        yield
    finally:
        app.state.event_loop_pool = None
        await pool.close()


def event_loop_pool(app: Any) -> AsyncConnectionPool | None:
    """The pool `event_loop_pool_open` opened in the running event loop, if any (none on SQLite, nor for an
    app run without its lifespan: those requests go the thread pool's way)."""
    held = getattr(app.state, "event_loop_pool", None)
    return held[1] if held is not None and held[0] is asyncio.get_running_loop() else None


def write_engine(engine: Engine) -> Engine:
    """The same engine, marked so that its transactions start as writers (made once per engine: every
    writing request asks for it)."""
    marked = getattr(engine, "_accord_write_engine", None)
    if marked is None:
        marked = engine.execution_options(**WRITE)
        engine._accord_write_engine = marked  # a cycle, collected with the engine
    return marked


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session for jobs and commands; the service functions called inside commit."""
    with Session(write_engine(engine) if write else engine, expire_on_commit=False) as session:
        yield session


def loop_local(app: Any, name: str, make: Callable[[], T]) -> T:
    """`app.state.<name>`, made by `make()` once per event loop (an asyncio lock or limiter is bound to one)."""
    loop = asyncio.get_running_loop()
    held = getattr(app.state, name, None)
    if held is None or held[0] is not loop:
        held = (loop, make())
        setattr(app.state, name, held)
    return held[1]


def _sqlite_write_gate(app: Any) -> asyncio.Lock:
    """The queue of this app's writing requests on SQLite (one lock per event loop)."""
    return loop_local(app, "sqlite_write_gate", asyncio.Lock)


@asynccontextmanager
async def write_turn(request: Request) -> AsyncIterator[Engine]:
    """A writing request's turn, with the engine to write with: on SQLite queued behind this process's
    other writing requests, in the event loop.

    On SQLite a writing request holds the write lock from its first query to its end, across several
    hops through the thread pool (dependencies, route, response). Writing requests therefore queue here
    before they take a thread: queued in pool threads instead, 40 of them would take every thread while
    the one holding the lock waited for a thread to go on, and all stalled for 30 s.
    """
    engine: Engine = request.app.state.engine
    gate = _sqlite_write_gate(request.app) if engine.dialect.name == "sqlite" else None
    if gate is not None:
        await gate.acquire()
    try:
        yield write_engine(engine)
    finally:
        if gate is not None:
            gate.release()


@asynccontextmanager
async def request_session(request: Request, *, write: bool) -> AsyncIterator[Session]:
    """A session for part of a request: a writer (in its `write_turn`) or a plain reader."""
    async with write_turn(request) if write else nullcontext(request.app.state.engine) as engine:
        session = Session(engine, expire_on_commit=False)
        try:
            yield session
        finally:
            if session.in_transaction():  # ending it is I/O (a ROLLBACK): off the event loop
                with anyio.CancelScope(shield=True):  # a client gone away must not leave the lock held
                    await run_in_threadpool(session.close)
            else:
                session.close()


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session: a writer for unsafe methods, a plain reader for GET and HEAD."""
    async with request_session(request, write=request.method not in ("GET", "HEAD", "OPTIONS")) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def alembic_config(url: str) -> Any:
    """The Alembic configuration, built in code so every command reads the same settings."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Brings the database at `url` to the newest schema."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


class DatabaseNotMigrated(RuntimeError):
    """The database's schema is not the one this version needs."""


def check_migrated(engine: Engine) -> None:
    """Refuses an unmigrated or outdated database, naming the command that fixes it."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    from service.audit import sealing_problem

    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        problem = sealing_problem(conn) if current == head else None
    if current != head:
        raise DatabaseNotMigrated(
            f"The database {engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{current or 'none'}, but this version needs {head}. Run `accord migrate` (or `make run`)."
        )
    if problem:  # every change would go unaudited: better not to start
        raise DatabaseNotMigrated(
            f"In the database {engine.url.render_as_string(hide_password=True)} {problem}. Create it again as "
            "migrations/versions/0006_audit_sealed_at_commit.py does, or restore the database from a backup."
        )
