"""The scheduler: two `accord scheduler` processes on one database run each job once; the leader lock; retries."""

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service import scheduler
from service.config import settings
from service.db import create_db_engine, utcnow
from service.notifications import service as outbox
from service.notifications.models import OutboxMessage, OutboxStatus
from service.partners import service as partners
from service.scheduler import _LEADER_LOCK_KEY, SchedulerLock, SchedulerRunner, _LeaderLock
from tests.conftest import PROJECT, accord_env, stop
from tests.factories import make_partner, make_user

LEADER_LINE = "now runs the scheduled jobs"
LOCK_SECONDS = 3


def wait_until(condition: Callable[[], bool], seconds: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        for proc in procs:
            assert proc.poll() is None, f"scheduler {proc.pid} exited with {proc.returncode}"
        time.sleep(0.1)


def start_scheduler(database_url: str, smtp_port: int, log: Path) -> subprocess.Popen:
    env = accord_env(
        database_url,
        ACCORD_SMTP_HOST="127.0.0.1",
        ACCORD_SMTP_PORT=str(smtp_port),
        ACCORD_OUTBOX_INTERVAL_SECONDS="1",
        ACCORD_SCHEDULER_LOCK_SECONDS=str(LOCK_SECONDS),
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "scheduler"], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def led(log: Path) -> bool:
    return LEADER_LINE in log.read_text(errors="replace")


def leader_locks(engine) -> list[str]:
    """Who holds the leader lock now: the lease's holder on SQLite, the advisory lock's holders on PostgreSQL."""
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":
            # A bigint advisory key shows as its high and low 32 bits, objsubid 1.
            rows = session.execute(
                sa.text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                    "AND classid = :high AND objid = :low "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"high": _LEADER_LOCK_KEY >> 32, "low": _LEADER_LOCK_KEY & 0xFFFFFFFF},
            ).all()
            return [f"backend {pid}" for (pid,) in rows]
        lease = session.get(SchedulerLock, "scheduler")
        return [lease.holder] if lease is not None and lease.expires_at > utcnow() else []


def outbox_rows(engine) -> list[OutboxMessage]:
    with Session(engine) as session:  # a short read: SQLite's writers in the schedulers must not wait for it
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.mark.slow
def test_two_schedulers_send_the_reminder_once_and_the_survivor_takes_over(
    database_url, engine, session, smtp_server, tmp_path
):
    controller, collector = smtp_server
    coordinator = make_user(session, "coordinator", email="coordinator@example.test")
    org = partners.verify(session=session, actor=coordinator, org=make_partner(session, name="Сдружение „Щит“"))
    org.verified_at = utcnow() - timedelta(days=400)
    session.add(org)
    session.commit()

    def to(address: str) -> list:
        return [got for envelope, got in collector.messages if envelope.rcpt_tos == [address]]

    logs = [tmp_path / "scheduler-a.log", tmp_path / "scheduler-b.log"]
    procs: list[subprocess.Popen] = []
    try:
        procs = [start_scheduler(database_url, controller.port, log) for log in logs]

        wait_until(lambda: to("coordinator@example.test"), 30, "the reminder's delivery", procs)
        time.sleep(LOCK_SECONDS + 1)  # several outbox runs and lease renewals later

        [reminder] = to("coordinator@example.test")
        assert org.name in reminder.get_content()
        assert f"/staff/partners/{org.id}" in reminder.get_content()
        [row] = outbox_rows(engine)
        assert row.status == OutboxStatus.sent and row.attempts == 1
        leaders = [proc for proc, log in zip(procs, logs, strict=True) if led(log)]
        assert len(leaders) == 1, [log.read_text() for log in logs]
        [leader] = leaders
        [follower] = [proc for proc in procs if proc is not leader]
        holders = leader_locks(engine)
        assert len(holders) == 1
        if engine.dialect.name == "sqlite":
            assert f":{leader.pid}:" in holders[0]

        leader.send_signal(signal.SIGKILL)  # no chance to release the lock
        leader.wait(10)
        outbox.enqueue(session=session, to_address="after@example.test", subject="След смяната", body="Тест")
        session.commit()

        wait_until(lambda: to("after@example.test"), 4 * LOCK_SECONDS + 5, "delivery by the survivor", [follower])
        assert led(logs[procs.index(follower)])
        new_holders = leader_locks(engine)
        assert len(new_holders) == 1 and new_holders != holders
        if engine.dialect.name == "sqlite":
            assert f":{follower.pid}:" in new_holders[0]
        # The survivor ran the reminder job again at its start; nothing is due, so nothing is sent twice.
        assert len(to("coordinator@example.test")) == 1
        assert len(to("after@example.test")) == 1
        # The mail server has the message a moment before the sender commits the row as sent.
        wait_until(lambda: {row.status for row in outbox_rows(engine)} == {OutboxStatus.sent}, 10, "sent", [follower])
        for log in logs:
            assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")
    finally:
        for proc in procs:
            stop(proc)


def test_a_released_leader_lock_is_free_for_another_process_at_once(database_url, engine):
    other_engine = create_db_engine(database_url)  # its own connections, as another process would have
    try:
        leader, other = _LeaderLock(engine), _LeaderLock(other_engine)
        assert leader.acquire_or_renew()
        assert leader.acquire_or_renew()  # renewing
        assert not other.acquire_or_renew()

        leader.release()

        assert leader_locks(engine) == []
        assert other.acquire_or_renew()
        other.release()
    finally:
        other_engine.dispose()


def test_a_leader_whose_jobs_fail_to_start_keeps_trying(engine, monkeypatch, caplog):
    monkeypatch.setattr(settings, "scheduler_lock_seconds", LOCK_SECONDS)  # a renewal and a retry every second
    monkeypatch.setattr(scheduler, "_engine", None)  # the runner sets the process's job engine; restored after
    # A job table the store cannot write to, as a damaged one would be: every start fails until it is gone.
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE apscheduler_jobs")  # the migrated one
        conn.exec_driver_sql("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY)")
    runner = SchedulerRunner(engine)
    runner.start()
    try:

        def failed() -> bool:
            return any("trying again" in record.getMessage() for record in caplog.records)

        wait_until(failed, 10, "a failed start", [])
        assert not runner.is_leader
        assert len(leader_locks(engine)) == 1  # it still holds the lock, so no other process could step in

        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE apscheduler_jobs")

        wait_until(lambda: runner.is_leader, 10, "a successful start on a later try", [])
        with engine.connect() as conn:
            jobs = conn.exec_driver_sql("SELECT id FROM apscheduler_jobs ORDER BY id").scalars().all()
        assert jobs == sorted(job.id for job in scheduler.collect_jobs())
        assert "partners.reverification_reminders" in jobs
    finally:
        runner.stop()
    assert leader_locks(engine) == []
