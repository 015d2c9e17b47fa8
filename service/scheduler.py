"""The scheduler: APScheduler 3 with its job store in our database, run by exactly one process at a time.

Every process that may run jobs starts a `SchedulerRunner`; the runners compete for a leader lock (an
advisory lock held on a dedicated connection on PostgreSQL, a lock row with a lease on SQLite), and only
the holder runs the scheduler. When the leader dies, another runner takes the lock within a lease.
"""

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from service import observability
from service.config import settings
from service.cpus import off_the_loop
from service.db import UTCDateTime, utcnow, write_engine

log = logging.getLogger("accord.scheduler")
JOBSTORE_TABLE = "apscheduler_jobs"
_LEADER_LOCK_KEY = 0x4143434F5245  # the PostgreSQL advisory lock of the scheduler leader

_engine: Engine | None = None


def job_engine() -> Engine:
    """The engine of the process running the jobs (jobs are stored by name, so they take no arguments)."""
    if _engine is None:
        raise RuntimeError("No scheduler is running in this process.")
    return _engine


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[], None]
    every_seconds: Callable[[], int]


def collect_jobs() -> list[Job]:
    """Every domain's jobs."""
    from service.bulletins.jobs import JOBS as bulletin_jobs
    from service.consultations.jobs import JOBS as consultation_jobs
    from service.emergencies.jobs import JOBS as emergency_jobs
    from service.emergencies.sitrep import JOBS as sitrep_jobs
    from service.memoranda.jobs import JOBS as memoranda_jobs
    from service.notifications.jobs import JOBS as notification_jobs
    from service.partners.jobs import JOBS as partner_jobs

    return [
        *notification_jobs,
        *partner_jobs,
        *emergency_jobs,
        *sitrep_jobs,
        *memoranda_jobs,
        *bulletin_jobs,
        *consultation_jobs,
    ]


def run_job(job_id: str) -> None:
    """What the job store keeps for each job: the job of that id, its run counted and its log lines naming it."""
    job = next((job for job in collect_jobs() if job.id == job_id), None)
    if job is None:
        raise LookupError(f"No scheduled job is called {job_id!r} in this version.")
    with observability.job_run(job_id):
        job.func()


class SchedulerLock(SQLModel, table=True):
    """The leader lease on SQLite: one row per lock, renewed by its holder before it runs out."""

    __tablename__ = "scheduler_lock"

    name: str = Field(primary_key=True, max_length=50)
    holder: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class _LeaderLock:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pg_connection: sa.Connection | None = None

    def acquire_or_renew(self) -> bool:
        """Whether this process holds the lock now (taking it if free)."""
        if self.engine.dialect.name == "postgresql":
            return self._pg_acquire()
        return self._lease()

    def _pg_acquire(self) -> bool:
        if self._pg_connection is not None:
            try:
                self._pg_connection.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError:
                self._pg_connection = None  # the connection, and with it the lock, is gone
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _LEADER_LOCK_KEY}).scalar():
            self._pg_connection = conn
            return True
        conn.close()
        return False

    def _lease(self) -> bool:
        now = utcnow()
        with Session(write_engine(self.engine)) as session:
            row = session.get(SchedulerLock, "scheduler")
            if row is None:
                row = SchedulerLock(name="scheduler", holder=self.holder, expires_at=now)
            elif row.holder != self.holder and row.expires_at > now:
                return False
            row.holder = self.holder
            row.expires_at = now + timedelta(seconds=settings.scheduler_lock_seconds)
            session.add(row)
            session.commit()
            return True

    def release(self) -> None:
        if self._pg_connection is not None:
            # Unlocked before the connection goes, so a successor can take over at once (a closed
            # connection's server process lets go of its locks only a moment later).
            with contextlib.suppress(sa.exc.DBAPIError):
                self._pg_connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _LEADER_LOCK_KEY})
            # Closing alone would return the session, still holding the advisory lock, to the pool.
            self._pg_connection.invalidate()
            self._pg_connection.close()
            self._pg_connection = None
        elif self.engine.dialect.name != "postgresql":
            with Session(write_engine(self.engine)) as session:
                row = session.get(SchedulerLock, "scheduler")
                if row is not None and row.holder == self.holder:
                    session.delete(row)
                    session.commit()


class SchedulerRunner:
    """Competes for leadership in a background thread and runs the jobs while it leads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = _LeaderLock(engine)
        self.scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        # The jobs' threads are started from this one, so they too keep off the event loop's CPU (service.cpus).
        self._thread = threading.Thread(target=off_the_loop(self._loop), name="accord-scheduler-leader", daemon=True)

    @property
    def is_leader(self) -> bool:
        return self.scheduler is not None

    def start(self) -> None:
        global _engine
        _engine = self.engine
        self._thread.start()

    def _loop(self) -> None:
        period = max(settings.scheduler_lock_seconds / 3, 0.5)
        while not self._stop.is_set():
            try:
                leading = self.lock.acquire_or_renew()
            except sa.exc.SQLAlchemyError:
                log.exception("scheduler lock check failed")
                leading = False
            try:
                if leading and self.scheduler is None:
                    self._start_scheduler()
                elif not leading and self.scheduler is not None:
                    log.warning("lost the scheduler lock; stopping jobs in this process")
                    self._stop_scheduler()
            except Exception:
                # Ending this thread would keep the lock held (the PostgreSQL one for good) with no jobs running.
                log.exception("starting or stopping the scheduled jobs failed; trying again")
            self._stop.wait(period)

    def _start_scheduler(self) -> None:
        log.info("this process (%s) now runs the scheduled jobs", self.lock.holder)
        # A writer's engine: on SQLite the store's create-if-missing reads and then writes, which fails at once
        # ("database is locked") when the other processes' lease writes made its snapshot stale.
        store = SQLAlchemyJobStore(engine=write_engine(self.engine), tablename=JOBSTORE_TABLE)
        scheduler = BackgroundScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
            timezone="UTC",
        )
        scheduler.start(paused=True)
        try:
            for job in collect_jobs():
                scheduler.add_job(
                    run_job,
                    "interval",
                    args=[job.id],
                    seconds=job.every_seconds(),
                    id=job.id,
                    name=job.id,
                    replace_existing=True,
                    next_run_time=datetime.now().astimezone(),
                )
        except Exception:
            scheduler.shutdown(wait=False)  # not left running, paused, beside the one the next try starts
            raise
        scheduler.resume()
        self.scheduler = scheduler

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._stop_scheduler()
        self.lock.release()
