"""The outbox against a real SMTP server (aiosmtpd on loopback): delivery, dedupe, retries and racing senders."""

import sqlite3
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from service.config import settings
from service.db import utcnow, write_engine
from service.notifications import service as outbox
from service.notifications.models import OutboxMessage, OutboxStatus
from tests.conftest import Collector, free_port


def smtp_settings(port: int):
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout_seconds": 5.0})


def queue(session: Session, n: int = 1, **fields) -> None:
    for i in range(n):
        outbox.enqueue(
            session=session,
            to_address=fields.get("to_address", f"person{i}@example.test"),
            subject=fields.get("subject", f"Съобщение {i}"),
            body=fields.get("body", f"Текст {i}"),
            dedupe_key=fields.get("dedupe_key"),
        )
    session.commit()


def messages(session: Session) -> list[OutboxMessage]:
    return list(
        session.exec(select(OutboxMessage).order_by(OutboxMessage.id).execution_options(populate_existing=True))
    )


def make_due(session: Session) -> None:
    """Moves every retry into the past, as if the back-off had passed."""
    for message in messages(session):
        message.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.add(message)
    session.commit()


def test_a_queued_message_reaches_the_smtp_server_with_its_cyrillic_intact(session, smtp_server):
    controller, collector = smtp_server
    subject = "Напомняне: партньори за повторна проверка — №3"
    body = "Здравейте!\n\nСдружение „Щит“ е проверено преди повече от година.\nЪгъл, ю, я, ѝ."
    assert outbox.enqueue(session=session, to_address="ivan@example.test", subject=subject, body=body)
    session.commit()

    assert outbox.send_due(session=session, settings=smtp_settings(controller.port)) == 1

    [(envelope, got)] = collector.messages
    assert envelope.rcpt_tos == ["ivan@example.test"]
    assert got["To"] == "ivan@example.test"
    assert got["Subject"] == subject
    assert got.get_content().strip() == body
    [row] = messages(session)
    assert row.status == OutboxStatus.sent and row.attempts == 1 and row.sent_at is not None
    # Nothing is due any more: a second run sends nothing.
    assert outbox.send_due(session=session, settings=smtp_settings(controller.port)) == 0
    assert len(collector.messages) == 1


def test_the_same_dedupe_key_is_queued_once(session, smtp_server):
    controller, collector = smtp_server
    assert outbox.enqueue(session=session, to_address="a@example.test", subject="Първо", body="1", dedupe_key="k-1")
    session.commit()
    assert not outbox.enqueue(session=session, to_address="a@example.test", subject="Второ", body="2", dedupe_key="k-1")
    session.commit()

    outbox.send_due(session=session, settings=smtp_settings(controller.port))

    assert [m.subject for m in messages(session)] == ["Първо"]
    assert [got["Subject"] for _, got in collector.messages] == ["Първо"]


def test_an_unreachable_server_is_retried_after_the_back_off_and_the_message_goes_once(session):
    port = free_port()  # nothing listens here yet
    queue(session, to_address="maria@example.test", subject="Проба", body="Тяло")

    before = utcnow()
    assert outbox.send_due(session=session, settings=smtp_settings(port)) == 0
    [row] = messages(session)
    assert row.status == OutboxStatus.pending
    assert row.attempts == 1
    assert row.last_error and "Connection" in row.last_error
    assert row.next_attempt_at >= before + outbox.backoff(1)
    # Not due yet: another run leaves it alone.
    assert outbox.send_due(session=session, settings=smtp_settings(port)) == 0
    assert messages(session)[0].attempts == 1

    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        make_due(session)
        assert outbox.send_due(session=session, settings=smtp_settings(port)) == 1
        assert outbox.send_due(session=session, settings=smtp_settings(port)) == 0
    finally:
        controller.stop()

    assert [(env.rcpt_tos, got["Subject"]) for env, got in collector.messages] == [(["maria@example.test"], "Проба")]
    [row] = messages(session)
    assert row.status == OutboxStatus.sent and row.attempts == 2


def test_a_message_fails_for_good_after_max_attempts(session):
    port = free_port()
    queue(session)
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        make_due(session)
        assert outbox.send_due(session=session, settings=smtp_settings(port)) == 0
        assert messages(session)[0].attempts == attempt

    [row] = messages(session)
    assert row.status == OutboxStatus.failed
    assert row.last_error
    make_due(session)
    outbox.send_due(session=session, settings=smtp_settings(port))
    assert messages(session)[0].attempts == outbox.MAX_ATTEMPTS


def race(engine, port: int) -> list[int]:
    """Two senders, each with its own session, start `send_due` at the same moment; returns what each sent."""
    start = threading.Barrier(2)
    sent: list[int] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            with Session(write_engine(engine), expire_on_commit=False) as own:
                start.wait()
                sent.append(outbox.send_due(session=own, settings=smtp_settings(port)))
        except BaseException as error:  # re-raised in the test's thread, below
            errors.append(error)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return sent


def test_two_racing_senders_deliver_each_message_once(engine, session, smtp_server):
    controller, collector = smtp_server
    queue(session, 20)

    assert sum(race(engine, controller.port)) == 20

    subjects = sorted(got["Subject"] for _, got in collector.messages)
    assert subjects == sorted(f"Съобщение {i}" for i in range(20))
    assert {m.status for m in messages(session)} == {OutboxStatus.sent}
    assert {m.attempts for m in messages(session)} == {1}


def test_a_racing_sender_does_not_retry_a_message_the_other_just_failed(engine, session):
    queue(session, 20)

    assert race(engine, free_port()) == [0, 0]  # nothing listens

    # Each message was tried once; the other sender respected the back-off instead of trying again at once.
    assert [m.attempts for m in messages(session)] == [1] * 20
    assert {m.status for m in messages(session)} == {OutboxStatus.pending}


class TransactionWatcher(Collector):
    """Takes each message while checking, from another connection, that the sender holds no transaction."""

    def __init__(self, engine) -> None:
        super().__init__()
        self.engine = engine
        self.free: list[bool] = []

    async def handle_DATA(self, server, session, envelope):
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                open_elsewhere = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                    )
                ).scalar()
            self.free.append(open_elsewhere == 0)
        else:
            # A sender holding its write transaction would make this wait, then fail.
            conn = sqlite3.connect(self.engine.url.database, timeout=1, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                self.free.append(True)
            except sqlite3.OperationalError:
                self.free.append(False)
            finally:
                conn.close()
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.parametrize("expire_on_commit", [False, True], ids=["job-session", "default-session"])
def test_no_transaction_is_open_while_the_smtp_server_takes_the_message(engine, session, expire_on_commit):
    queue(session, 3)
    watcher = TransactionWatcher(engine)
    controller = Controller(watcher, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    try:
        # The job's session keeps loaded values at commit; a default one expires them and would reload.
        with Session(write_engine(engine), expire_on_commit=expire_on_commit) as sender:
            assert outbox.send_due(session=sender, settings=smtp_settings(controller.port)) == 3
    finally:
        controller.stop()

    assert watcher.free == [True, True, True]
