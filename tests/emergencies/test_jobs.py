"""Scheduled work on pledges, and the e-mails partners get about them.

Each job acts once: a second run (a restart, a second scheduler) changes nothing and queues no mail. An
overdue pledge's partner is reminded at most once a day. Accepted, declined and cancelled pledges are
told to the organisation's partner users in their own language, through a real SMTP server.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, col, select

from service import scheduler
from service.config import settings
from service.db import utcnow
from service.emergencies import jobs, service
from service.emergencies.models import Need, Pledge
from service.i18n import format_number, gettext_in
from service.notifications import service as outbox
from service.notifications.models import OutboxMessage
from tests.emergencies.build import Logistics
from tests.emergencies.state import changes, logistics_state
from tests.factories import api_headers, make_partner, make_user

ITEM = "Бутилирана вода"


def smtp_settings(port: int):
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout_seconds": 5.0})


def mail(engine, kind: str = "") -> list[OutboxMessage]:
    """The queued e-mail, oldest first; only of one kind (`pledge.overdue`, ...) when given."""
    with Session(engine) as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            query = query.where(col(OutboxMessage.dedupe_key).startswith(kind + ":"))
        return list(session.exec(query))


@pytest.fixture
def world(session, engine):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="Сдружение „Алфа“")
    other = make_partner(session, name="„Бета“ ООД")
    users = {
        "bg": make_user(session, "partner", organisation=org, email="ivana@alfa.example"),
        "en": make_user(session, "partner", organisation=org, email="john@alfa.example", language="en"),
    }
    make_user(session, "partner", organisation=org, email="former@alfa.example", is_active=False)
    make_user(session, "partner", organisation=other, email="petar@beta.example")
    build = Logistics(engine, coordinator)
    need = build.need(build.emergency(), item_name=ITEM, quantity=5000)
    return build, org, other, need, users, coordinator


def expire(build: Logistics) -> int:
    with build.session() as session:
        return service.expire_offered_pledges(session=session)


def flag(build: Logistics) -> int:
    with build.session() as session:
        return service.flag_overdue(session=session)


def past_due(build: Logistics, pledge_id: int, hours: float = 1) -> None:
    build.update(Pledge, pledge_id, deliver_by=utcnow() - timedelta(hours=hours))


# --- expiring offers nobody took up ----------------------------------------------------------------------


def test_offered_pledges_past_their_deliver_by_expire_once(world, engine):
    build, org, other, need, _users, _ = world
    due = [build.pledge(need, org.id), build.pledge(need, other.id)]
    fresh = build.pledge(need, org.id)
    accepted = build.pledge(need, org.id, "accepted")
    for pid in (*due, accepted):
        past_due(build, pid)
    mail_before = len(mail(engine))

    assert expire(build) == 2

    assert {pid: build.get(Pledge, pid).status for pid in (*due, fresh, accepted)} == {
        due[0]: "expired",
        due[1]: "expired",
        fresh: "offered",
        accepted: "accepted",  # late, but that is the overdue job's business
    }
    after_first = logistics_state(engine)
    assert expire(build) == 0
    assert changes(after_first, logistics_state(engine)) == []
    assert len(mail(engine)) == mail_before


# --- overdue deliveries ----------------------------------------------------------------------------------


def test_an_overdue_pledge_is_flagged_and_its_partner_reminded_at_most_once_a_day(world, engine, client):
    build, org, other, need, _users, coordinator = world
    late = build.pledge(need, org.id, "accepted", quantity=100)
    late_in_transit = build.pledge(need, other.id, "in_transit", quantity=50)
    partly_received = build.pledge(need, org.id, "partial", quantity=40)
    still_offered = build.pledge(need, org.id, quantity=30)
    on_time = build.pledge(need, org.id, "accepted", quantity=20)
    for pid in (late, late_in_transit, partly_received, still_offered):
        past_due(build, pid)

    assert flag(build) == 2

    flagged = {pid: build.get(Pledge, pid) for pid in (late, late_in_transit, partly_received, still_offered, on_time)}
    assert {pid for pid, p in flagged.items() if p.overdue_since is not None} == {late, late_in_transit}
    reminders = mail(engine, "pledge.overdue")
    assert sorted(m.to_address for m in reminders) == ["ivana@alfa.example", "john@alfa.example", "petar@beta.example"]
    assert all(ITEM in m.subject for m in reminders)
    staff = api_headers(client, coordinator)
    assert client.get(f"/api/v1/pledges/{late}", headers=staff).json()["overdue"] is True
    assert client.get(f"/api/v1/pledges/{on_time}", headers=staff).json()["overdue"] is False
    board = client.get(f"/api/v1/emergencies/{build.get(Need, need).emergency_id}/coverage", headers=staff).json()
    assert sorted(p["id"] for p in board["overdue"]) == sorted([late, late_in_transit])

    # Run again at once, and again after 23 hours: flagged already, reminded today; nothing changes.
    first = logistics_state(engine)
    assert flag(build) == 0
    assert changes(first, logistics_state(engine)) == []
    reminded_at = build.get(Pledge, late).last_reminder_at
    build.update(Pledge, late, last_reminder_at=reminded_at - timedelta(hours=23))
    before = logistics_state(engine)
    assert flag(build) == 0
    assert changes(before, logistics_state(engine)) == []

    # A day and an hour after the last reminder: reminded again, once.
    build.update(Pledge, late, last_reminder_at=reminded_at - timedelta(hours=25))
    assert flag(build) == 1
    again = mail(engine, "pledge.overdue")[len(reminders) :]
    assert sorted(m.to_address for m in again) == ["ivana@alfa.example", "john@alfa.example"]
    assert build.get(Pledge, late).last_reminder_at > reminded_at
    assert build.get(Pledge, late).overdue_since == flagged[late].overdue_since  # still overdue since then
    second = logistics_state(engine)
    assert flag(build) == 0
    assert changes(second, logistics_state(engine)) == []


def test_a_receipt_clears_the_overdue_flag(world, engine, client):
    build, org, _other, need, _users, coordinator = world
    late = build.pledge(need, org.id, "accepted", quantity=100)
    past_due(build, late)
    assert flag(build) == 1
    staff = api_headers(client, coordinator)
    assert client.get(f"/api/v1/pledges/{late}", headers=staff).json()["overdue"] is True

    receipt = client.post(f"/api/v1/pledges/{late}/receipts", json={"quantity": 30}, headers=staff)

    assert receipt.status_code == 201, receipt.text
    assert client.get(f"/api/v1/pledges/{late}", headers=staff).json()["overdue"] is False
    assert build.get(Pledge, late).overdue_since is None
    # Something has arrived: the job neither flags it again nor reminds, even a day later.
    build.update(Pledge, late, last_reminder_at=utcnow() - timedelta(days=2))
    before = logistics_state(engine)
    assert flag(build) == 0
    assert changes(before, logistics_state(engine)) == []


def test_a_pledge_that_ends_while_overdue_is_no_longer_shown_overdue(world, client):
    build, org, _other, need, users, coordinator = world
    cancelled, withdrawn = build.pledge(need, org.id, "accepted"), build.pledge(need, org.id, "in_transit")
    for pid in (cancelled, withdrawn):
        past_due(build, pid)
    assert flag(build) == 2
    staff, partner = api_headers(client, coordinator), api_headers(client, users["bg"])

    client.post(f"/api/v1/pledges/{cancelled}/cancel", json={"reason": "Пътят е затворен"}, headers=staff)
    client.post(f"/api/v1/pledges/{withdrawn}/withdraw", headers=partner)

    for pid, status in [(cancelled, "cancelled"), (withdrawn, "withdrawn")]:
        got = client.get(f"/api/v1/pledges/{pid}", headers=partner).json()
        assert (got["status"], got["overdue"]) == (status, False)


def test_the_scheduled_jobs_act_once(world, engine, monkeypatch):
    build, org, _other, need, _users, _ = world
    monkeypatch.setattr(scheduler, "_engine", engine)  # the engine the scheduler's process gives its jobs
    offered, accepted = build.pledge(need, org.id), build.pledge(need, org.id, "accepted")
    for pid in (offered, accepted):
        past_due(build, pid)
    assert {job.id for job in jobs.JOBS} == {"emergencies.expire_pledges", "emergencies.overdue_pledges"}

    for job in jobs.JOBS:
        job.func()
    assert build.get(Pledge, offered).status == "expired"
    assert build.get(Pledge, accepted).overdue_since is not None
    after = logistics_state(engine)
    assert (
        len(mail(engine, "pledge.overdue")) == 2
    )  # the overdue reminder to each of the organisation's two active users

    for job in jobs.JOBS:
        job.func()
    assert changes(after, logistics_state(engine)) == []


# --- e-mail about a pledge's fate ------------------------------------------------------------------------


def test_partners_are_told_in_their_language_when_a_pledge_is_accepted_declined_or_cancelled(
    world, engine, client, smtp_server
):
    controller, collector = smtp_server
    build, org, _other, need, users, coordinator = world
    staff = api_headers(client, coordinator)
    accepted = build.pledge(need, org.id, quantity="1500.50")
    declined = build.pledge(need, org.id, quantity=300)
    cancelled = build.pledge(need, org.id, "accepted", quantity=2400, accepted=2000)
    withdrawn = build.pledge(need, org.id, quantity=10)
    with Session(engine, expire_on_commit=False) as session:  # the mail about accepting the third, first
        outbox.send_due(session=session, settings=smtp_settings(controller.port))
    collector.messages.clear()

    for path, body in [
        (f"{accepted}/accept", {"accepted_quantity": 1250.5}),
        (f"{declined}/decline", {"reason": "Вече е покрито"}),
        (f"{cancelled}/cancel", {"reason": "Пътят е затворен"}),
    ]:
        assert client.post(f"/api/v1/pledges/{path}", json=body, headers=staff).status_code == 200
    # Withdrawing is the partner's own act: no one is told of it by mail.
    assert (
        client.post(f"/api/v1/pledges/{withdrawn}/withdraw", headers=api_headers(client, users["en"])).status_code
        == 200
    )

    with Session(engine, expire_on_commit=False) as session:
        assert outbox.send_due(session=session, settings=smtp_settings(controller.port)) == 6
        assert outbox.send_due(session=session, settings=smtp_settings(controller.port)) == 0

    received: dict[str, list] = {}
    for envelope, message in collector.messages:
        received.setdefault(envelope.rcpt_tos[0], []).append(message)
    assert sorted(received) == ["ivana@alfa.example", "john@alfa.example"]  # not the former user, not org B
    for language, user in users.items():
        _ = gettext_in(language)
        got = {m["Subject"]: m.get_content() for m in received[user.email]}
        expected = {
            _("Your pledge was accepted: {item}").format(item=ITEM): (accepted, Decimal("1250.5"), None),
            _("Your pledge was declined: {item}").format(item=ITEM): (declined, Decimal(300), "Вече е покрито"),
            _("Your pledge was cancelled: {item}").format(item=ITEM): (cancelled, Decimal(2000), "Пътят е затворен"),
        }
        assert sorted(got) == sorted(expected), language
        for subject, (pid, quantity, reason) in expected.items():
            body = got[subject]
            assert ITEM in body, (language, subject)
            amount = _("Quantity: {quantity} {unit}").format(quantity=format_number(quantity, language), unit=_("l"))
            assert amount in body, (language, subject, body)
            assert f"/portal/pledges#pledge-{pid}" in body
            if reason:
                assert reason in body
    # The same amount reads differently in each language; Bulgarian is the default.
    about_acceptance = {
        email: next(m.get_content() for m in messages if f"#pledge-{accepted}" in m.get_content())
        for email, messages in received.items()
    }
    assert "1\u00a0250,5" in about_acceptance["ivana@alfa.example"]
    assert "1,250.5" in about_acceptance["john@alfa.example"]
