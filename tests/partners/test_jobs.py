"""Re-verification reminders: who gets them, about which organisations, in which language, and how often."""

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from service.config import settings
from service.db import utcnow
from service.notifications import service as outbox
from service.notifications.models import OutboxMessage
from service.partners import service as partners
from service.partners.models import Organisation
from service.users.models import User
from tests.factories import make_partner, make_user, page_login

BASE_URL = "https://accord.example/"


def verified_days_ago(session: Session, org: Organisation, days: int) -> Organisation:
    """Sets the verification `days` back, as if the time had passed since it was made."""
    org.verified_at = utcnow() - timedelta(days=days)
    session.add(org)
    session.commit()
    return org


def age(session: Session, org: Organisation, days: int) -> None:
    """Lets `days` pass for `org`: every timestamp of its verification moves back together."""
    org.verified_at -= timedelta(days=days)
    if org.reverification_reminded_at is not None:
        org.reverification_reminded_at -= timedelta(days=days)
    session.add(org)
    session.commit()


def remind(session: Session) -> int:
    return partners.remind_reverification(session=session, older_than_days=365, base_url=BASE_URL)


def outbox_by_recipient(session: Session) -> dict[str, list[OutboxMessage]]:
    found: dict[str, list[OutboxMessage]] = {}
    for message in session.exec(select(OutboxMessage).order_by(OutboxMessage.id)):
        found.setdefault(message.to_address, []).append(message)
    return found


def local_date(org: Organisation):
    return org.verified_at.astimezone(ZoneInfo(settings.timezone)).date()


def test_staff_are_reminded_once_of_old_verifications_in_their_language(session, smtp_server):
    controller, collector = smtp_server
    coordinator = make_user(session, "coordinator", email="coordinator@example.test")
    make_user(session, "admin", email="admin@example.test", language="en")
    make_user(session, "coordinator", "communications", email="both@example.test")
    make_user(session, "communications", email="press@example.test")
    make_user(session, "coordinator", email="former@example.test", is_active=False)

    old = partners.verify(
        session=session, actor=coordinator, org=make_partner(session, name="Сдружение „Стара проверка“")
    )
    just_due = partners.verify(
        session=session, actor=coordinator, org=make_partner(session, name="„Хлебозавод Примерно“ АД")
    )
    verified_days_ago(session, old, 400)
    verified_days_ago(session, just_due, 366)
    recent = partners.verify(session=session, actor=coordinator, org=make_partner(session, name="Сдружение „Наскоро“"))
    verified_days_ago(session, recent, 300)
    pending = make_partner(session, name="Сдружение „Непроверено“")
    suspended = partners.verify(session=session, actor=coordinator, org=make_partner(session, name="„Спряно“ ООД"))
    verified_days_ago(session, suspended, 500)
    partners.suspend(session=session, actor=coordinator, org=suspended, reason="Закрито")
    make_user(session, "partner", email="partner@example.test", organisation=old)

    assert remind(session) == 2

    sent = outbox_by_recipient(session)
    assert sorted(sent) == ["admin@example.test", "both@example.test", "coordinator@example.test"]
    for recipient in sent.values():
        [message] = recipient
        linked = re.findall(r"https://accord\.example/staff/partners/(\d+)", message.body)
        assert linked == [str(old.id), str(just_due.id)]  # the oldest verification first
        assert old.name in message.body and just_due.name in message.body
        for org in (recent, pending, suspended):
            assert org.name not in message.body
    # The dates in the reader's language: Bulgarian by default, English for the English-speaking admin.
    bg_date, en_date = f"{local_date(old):%d.%m.%Y} г.", f"{local_date(old).day} {local_date(old):%b %Y}"
    assert (
        bg_date in sent["coordinator@example.test"][0].body and en_date not in sent["coordinator@example.test"][0].body
    )
    assert en_date in sent["admin@example.test"][0].body and bg_date not in sent["admin@example.test"][0].body
    assert sent["admin@example.test"][0].subject == "Partners due for re-verification: 2"  # English is the source

    # They reach a real SMTP server, each staff member once.
    assert outbox.send_due(session=session, settings=settings.model_copy(update={"smtp_port": controller.port})) == 3
    received = {envelope.rcpt_tos[0]: got for envelope, got in collector.messages}
    assert sorted(received) == sorted(sent)
    assert "„Хлебозавод Примерно“ АД" in received["admin@example.test"].get_content()
    assert received["coordinator@example.test"]["Subject"] == sent["coordinator@example.test"][0].subject

    # A second run (a restart, a second scheduler) reminds of nothing new.
    assert remind(session) == 0
    assert sum(len(m) for m in outbox_by_recipient(session).values()) == 3


def test_a_renewed_verification_is_reminded_of_again_when_it_grows_old(session):
    coordinator = make_user(session, "coordinator", email="coordinator@example.test")
    org = partners.verify(session=session, actor=coordinator, org=make_partner(session))
    other = partners.verify(session=session, actor=coordinator, org=make_partner(session))
    verified_days_ago(session, org, 400)
    verified_days_ago(session, other, 400)
    assert remind(session) == 2
    assert remind(session) == 0

    partners.verify(session=session, actor=coordinator, org=org)
    assert remind(session) == 0  # a fresh verification is not due
    age(session, org, 450)

    assert remind(session) == 1
    first, second = outbox_by_recipient(session)["coordinator@example.test"]
    assert org.name in second.body and f"/staff/partners/{org.id}" in second.body
    assert other.name not in second.body  # still reminded of its own, unchanged verification
    assert second.dedupe_key != first.dedupe_key
    assert remind(session) == 0


def test_the_dashboard_lists_what_is_due_until_it_is_verified_again(client, session):
    coordinator = make_user(session, "coordinator")
    org = verified_days_ago(
        session, partners.verify(session=session, actor=make_user(session), org=make_partner(session)), 400
    )
    page_login(client, coordinator)
    assert f'href="/staff/partners/{org.id}"' in client.get("/staff").text
    assert remind(session) == 1
    assert f'href="/staff/partners/{org.id}"' in client.get("/staff").text  # reminded, still due
    partners.verify(session=session, actor=coordinator, org=org)
    assert f'href="/staff/partners/{org.id}"' not in client.get("/staff").text


def test_nothing_is_sent_when_nothing_is_due(session):
    coordinator = make_user(session, "coordinator")
    verified_days_ago(session, partners.verify(session=session, actor=coordinator, org=make_partner(session)), 364)
    make_partner(session)

    assert remind(session) == 0
    assert outbox_by_recipient(session) == {}


def test_a_re_verification_made_while_the_job_runs_is_reminded_of_in_its_turn(engine, session):
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "on SQLite the job's transaction holds the write lock from its first read: no one verifies meanwhile"
        )
    coordinator = make_user(session, "coordinator", email="coordinator@example.test")
    org = verified_days_ago(
        session, partners.verify(session=session, actor=coordinator, org=make_partner(session)), 400
    )

    done: list[bool] = []

    def re_verify_meanwhile(state) -> None:
        # Right after the job has read what is due: another staff member re-verifies, in their own transaction.
        if not done and any(mapper.class_ is User for mapper in state.all_mappers):
            done.append(True)
            with Session(engine, expire_on_commit=False) as other:
                partners.verify(session=other, actor=coordinator, org=other.get(Organisation, org.id))

    event.listen(session, "do_orm_execute", re_verify_meanwhile)
    assert remind(session) == 1  # about the verification it read; harmless
    event.remove(session, "do_orm_execute", re_verify_meanwhile)
    assert done

    session.refresh(org)
    assert org.verified_at > utcnow() - timedelta(minutes=1)
    age(session, org, 450)
    assert remind(session) == 1  # the renewed verification, a year on
    assert len(outbox_by_recipient(session)["coordinator@example.test"]) == 2
