"""Scheduled work on consultations, and the e-mail opening one sends, read back from a real SMTP server.

The closing job closes exactly the consultations whose closing time has passed, once: run again (a restart, a
second scheduler, two at the same moment), it changes nothing. Opening a consultation tells every active partner
user of every organisation that may take part, once each, in their own language, through the outbox.
"""

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from service import scheduler
from service.config import settings
from service.consultations import jobs, service
from service.db import utcnow, write_engine
from service.i18n import format_datetime, gettext_in
from service.notifications import jobs as notification_jobs
from service.notifications.models import OutboxMessage, OutboxStatus
from service.partners import service as partners
from tests.consultations.state import (
    API,
    Consultations,
    audit_entries,
    chain_holds,
    changes,
    consultations_state,
    iso,
)
from tests.factories import api_headers, make_partner, make_user

TITLE = "Мерки за възстановяване на кв. „Изток“"


def close_due(engine) -> list[int]:
    """The job's service function in a session of its own, as the scheduled job runs it."""
    with Session(write_engine(engine), expire_on_commit=False) as session:
        return service.close_due(session=session)


@pytest.fixture
def build(session, engine) -> Consultations:
    return Consultations(engine, make_user(session, "coordinator"))


@pytest.fixture
def org(session):
    return make_partner(session, name="Сдружение „Алфа“")


def statuses(build: Consultations, *ids: int) -> dict[int, str]:
    return {cid: build.get(cid).status.value for cid in ids}


def test_the_job_closes_exactly_the_consultations_whose_closing_time_passed_once(build, org, engine):
    due = [build.make("overdue", [org.id]) for _ in range(2)]
    not_yet = build.make("open", [org.id])
    scheduled = build.make("scheduled", [org.id])
    draft_passed = build.make("draft", [org.id], opens_at=iso(-120), closes_at=iso(-60))  # never opened
    already = build.make("closed", [org.id])
    build.update(already, closes_at=utcnow() - timedelta(minutes=5))
    decided = build.make("decided", [org.id])
    build.update(decided, closes_at=utcnow() - timedelta(minutes=5))
    before = consultations_state(engine)
    closed_before = build.get(already).closed_at

    assert sorted(close_due(engine)) == sorted(due)

    assert statuses(build, *due, not_yet, scheduled, draft_passed, already, decided) == {
        **dict.fromkeys(due, "closed"), not_yet: "open", scheduled: "open", draft_passed: "draft",
        already: "closed", decided: "decided",
    }  # fmt: skip
    assert all(build.get(cid).closed_at is not None for cid in due)
    assert build.get(already).closed_at == closed_before
    touched = {line.split(":")[0] for line in changes(before, consultations_state(engine))}
    assert touched == {f"Consultation {cid}" for cid in due} | {"audit_rows", "audit_head"}
    closes = audit_entries(engine, "consultation.close")
    assert sorted(e.entity_id for e in closes if e.actor == "system") == sorted(due)

    after = consultations_state(engine)
    assert close_due(engine) == []
    assert close_due(engine) == []
    assert changes(after, consultations_state(engine)) == []
    assert chain_holds(engine)


def test_no_submission_is_taken_once_the_job_has_closed_it(build, org, client, session, engine):
    rep = make_user(session, "partner", organisation=org)
    cid = build.make("open", [org.id], submissions={org.id: rep})
    build.update(cid, closes_at=utcnow() - timedelta(seconds=1))
    assert close_due(engine) == [cid]
    before = consultations_state(engine)
    response = client.post(
        f"{API}/{cid}/submissions",
        json={"position": "oppose"},
        headers={**api_headers(client, rep), "Accept-Language": "en"},
    )
    assert response.status_code == 409
    assert response.json()["detail"] == "The consultation is closed: submissions are no longer accepted."
    assert changes(before, consultations_state(engine)) == []


def test_two_jobs_at_the_same_moment_close_each_consultation_once(build, org, engine):
    due = [build.make("overdue", [org.id]) for _ in range(5)]
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait(5)
            results.append(close_due(engine))
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results[0] + results[1]) == sorted(due)  # each closed by one of them, none twice
    assert sorted(e.entity_id for e in audit_entries(engine, "consultation.close")) == sorted(due)
    assert chain_holds(engine)


def test_the_scheduled_job_is_registered_and_acts_once(build, org, engine, monkeypatch):
    monkeypatch.setattr(scheduler, "_engine", engine)  # the engine the scheduler's process gives its jobs
    assert [job.id for job in jobs.JOBS] == ["consultations.close_due"]
    assert {job.id for job in jobs.JOBS} <= {job.id for job in scheduler.collect_jobs()}
    assert all(job.every_seconds() <= 300 for job in jobs.JOBS)  # a closing time is kept within minutes
    due = build.make("overdue", [org.id])

    for job in jobs.JOBS:
        job.func()
    assert build.get(due).status == "closed"
    after = consultations_state(engine)
    for job in jobs.JOBS:
        job.func()
    assert changes(after, consultations_state(engine)) == []


# --- the e-mail that opening sends -----------------------------------------------------------------------


def deliver(engine, smtp_server, monkeypatch) -> dict[str, list[tuple[str, str]]]:
    """Runs the outbox job against the SMTP server; what each address received (subject, body), in order."""
    controller, collector = smtp_server
    collector.messages.clear()
    monkeypatch.setattr(scheduler, "_engine", engine)
    monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(settings, "smtp_port", controller.port)
    monkeypatch.setattr(settings, "smtp_timeout_seconds", 5.0)
    notification_jobs.send_outbox()
    received: dict[str, list[tuple[str, str]]] = {}
    for envelope, message in collector.messages:
        for address in envelope.rcpt_tos:
            # Python's header folding doubles the space before a folded encoded word: compare words, not spaces.
            received.setdefault(address, []).append((" ".join(message["Subject"].split()), message.get_content()))
    return received


def test_opening_tells_each_active_partner_user_of_each_invited_organisation_once_in_their_language(
    client, session, engine, smtp_server, monkeypatch
):
    coordinator = make_user(session, "coordinator", email="coordinator@obshtina.example")
    alfa, beta, gama = (make_partner(session, name=n) for n in ("Сдружение „Алфа“", "„Бета“ ООД", "Фондация „Гама“"))
    make_user(session, "partner", organisation=alfa, email="ivana@alfa.example")
    make_user(session, "partner", organisation=alfa, email="john@alfa.example", language="en")
    make_user(session, "partner", organisation=alfa, email="former@alfa.example", is_active=False)
    make_user(session, "communications", organisation=alfa, email="press@alfa.example")  # not a partner user
    make_user(session, "partner", organisation=beta, email="petar@beta.example")
    make_user(session, "partner", organisation=gama, email="gergana@gama.example")  # not invited
    make_user(session, "coordinator", email="colleague@obshtina.example")
    staff = api_headers(client, coordinator)
    created = client.post(
        API,
        json={"title": TITLE, "question": "Подкрепяте ли мерките?", "measures": "1. Помощ.", "opens_at": iso(-1),
              "closes_at": iso(60 * 24 * 7), "invited_ids": [alfa.id, beta.id]},
        headers=staff,
    )  # fmt: skip
    cid = created.json()["id"]
    assert deliver(engine, smtp_server, monkeypatch) == {}  # a draft tells no one

    assert client.post(f"{API}/{cid}/open", headers=staff).status_code == 200
    with Session(engine) as s:
        queued = s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert sorted(m.to_address for m in queued) == ["ivana@alfa.example", "john@alfa.example", "petar@beta.example"]
    assert all(m.status == OutboxStatus.pending for m in queued)

    received = deliver(engine, smtp_server, monkeypatch)
    with Session(engine) as s:
        closes_at = service.get(session=s, consultation_id=cid).closes_at
    languages = {"ivana@alfa.example": "bg", "john@alfa.example": "en", "petar@beta.example": "bg"}
    assert sorted(received) == sorted(languages)
    for address, language in languages.items():
        [(subject, body)] = received[address]
        _ = gettext_in(language)
        assert subject == _("Consultation opened: {title}").format(title=TITLE)
        assert TITLE in body and "Подкрепяте ли мерките?" in body
        assert format_datetime(closes_at, language) in body
        other = "en" if language == "bg" else "bg"
        assert format_datetime(closes_at, other) not in body  # the dates in the reader's form
        assert f"/portal/consultations/{cid}" in body
    # Sent once: the next run of the outbox finds nothing to send.
    assert deliver(engine, smtp_server, monkeypatch) == {}
    with Session(engine) as s:
        assert {m.status for m in s.exec(select(OutboxMessage))} == {OutboxStatus.sent}


def test_open_to_all_tells_every_verified_partner_once_even_when_also_invited(
    client, session, engine, smtp_server, monkeypatch
):
    coordinator = make_user(session, "coordinator")
    verified_invited, verified, pending = (make_partner(session) for _ in range(3))
    for org in (verified_invited, verified):
        partners.verify(session=session, actor=coordinator, org=org)
    suspended = make_partner(session)
    partners.verify(session=session, actor=coordinator, org=suspended)
    partners.suspend(session=session, actor=coordinator, org=suspended, reason="Проверка на данните")
    for org, address in [
        (verified_invited, "both@a.example"), (verified, "verified@b.example"), (pending, "pending@c.example"),
        (suspended, "suspended@d.example"),
    ]:  # fmt: skip
        make_user(session, "partner", organisation=org, email=address, language="en")
    build = Consultations(engine, coordinator)
    cid = build.make("draft", [verified_invited.id], open_to_all=True, title=TITLE)

    staff = api_headers(client, coordinator)
    assert client.post(f"{API}/{cid}/open", headers=staff).status_code == 200
    assert client.post(f"{API}/{cid}/open", headers=staff).status_code == 409  # a second open sends nothing more

    received = deliver(engine, smtp_server, monkeypatch)
    assert {address: len(mails) for address, mails in received.items()} == {
        "both@a.example": 1, "verified@b.example": 1,
    }  # fmt: skip
    assert {mails[0][0] for mails in received.values()} == {f"Consultation opened: {TITLE}"}
