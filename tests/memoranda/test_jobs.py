"""Scheduled work on memoranda, and the e-mail it sends, read back from a real SMTP server.

Each job acts once: run again (a restart, a second scheduler, a missed tick made up), it changes nothing and
queues no mail. The service functions take the day to act as (`on=`), so no test waits for a date.
"""

import logging
from datetime import timedelta

import pytest
from sqlmodel import Session

from service import scheduler
from service.config import settings
from service.i18n import format_date, gettext_in
from service.memoranda import archive, jobs, service
from service.memoranda.models import KIND_LABELS
from service.notifications import service as notifications
from tests.factories import make_user
from tests.memoranda.world import World, audit_actions, changes, make_world, memoranda_state, outbox, today

COORDINATOR, IVANA, MIHAIL, JOHN = (
    "coordinator@obshtina.example", "ivana@alfa.example", "mihail@alfa.example", "john@beta.example",
)  # fmt: skip


@pytest.fixture
def world(client, session, engine) -> World:
    w = make_world(client, session, engine)
    make_user(session, "partner", organisation=w.org_a, email=MIHAIL)  # a second user of org A
    make_user(session, "partner", organisation=w.org_a, email="former@alfa.example", is_active=False)
    make_user(session, "coordinator", email="retired@obshtina.example", is_active=False)
    session.close()
    return w


def run(w: World, job, **kwargs) -> int:
    """A service job function in a session of its own, as the scheduled job runs it."""
    with w.build.writer() as session:
        return job(session=session, **kwargs)


def deliver(engine, smtp_server) -> dict[str, list[tuple[str, str]]]:
    """Sends the outbox to the SMTP server; what each address received (subject, body), in order."""
    controller, collector = smtp_server
    collector.messages.clear()
    smtp = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": controller.port, "smtp_timeout_seconds": 5.0}
    )
    with Session(engine, expire_on_commit=False) as session:
        notifications.send_due(session=session, settings=smtp)
    received: dict[str, list[tuple[str, str]]] = {}
    for envelope, message in collector.messages:
        for address in envelope.rcpt_tos:
            # Python's header folding doubles the space before a folded encoded word: compare words, not spaces.
            received.setdefault(address, []).append((" ".join(message["Subject"].split()), message.get_content()))
    return received


def subject(what: str, language: str, memorandum) -> str:
    _ = gettext_in(language)
    text = _(service._SUBJECTS[what]).format(
        title=_(KIND_LABELS[memorandum.template]),
        deadline=format_date(memorandum.signing_deadline, language),
        until=format_date(memorandum.valid_until, language),
    )
    return " ".join(text.split())


# --- expiry ----------------------------------------------------------------------------------------------


def test_a_memorandum_expires_once_the_day_after_its_valid_until(world):
    w = world
    memorandum_id = w.build.active([w.org_a])
    until = w.build.get(memorandum_id).valid_until

    assert run(w, service.expire_due, on=until) == 0
    assert w.build.get(memorandum_id).status == "active"

    assert run(w, service.expire_due, on=until + timedelta(days=1)) == 1
    after = memoranda_state(w.engine)
    assert run(w, service.expire_due, on=until + timedelta(days=1)) == 0
    assert run(w, service.expire_due, on=until + timedelta(days=30)) == 0

    assert changes(after, memoranda_state(w.engine)) == []
    stored = w.build.get(memorandum_id)
    assert stored.status == "expired" and stored.ended_at is not None
    assert audit_actions(w.engine).count("memorandum.expire") == 1


# --- reminders before a memorandum ends ------------------------------------------------------------------


def test_the_parties_are_reminded_30_and_7_days_before_the_end_each_once(world, smtp_server):
    w = world
    memorandum_id = w.build.active([w.org_a, w.org_b])
    deliver(w.engine, smtp_server)  # the mail about signing and coming into force, out of the way
    memorandum = w.build.get(memorandum_id)
    until = memorandum.valid_until

    sent = {before: run(w, service.remind_expiring, on=until - timedelta(days=before)) for before in (31, 30)}
    assert sent == {31: 0, 30: 1}
    after_30 = memoranda_state(w.engine)
    for before in (30, 29, 8):
        assert run(w, service.remind_expiring, on=until - timedelta(days=before)) == 0
    assert changes(after_30, memoranda_state(w.engine)) == []
    received_30 = deliver(w.engine, smtp_server)

    assert run(w, service.remind_expiring, on=until - timedelta(days=7)) == 1
    after_7 = memoranda_state(w.engine)
    for before in (7, 6, 1, 0):
        assert run(w, service.remind_expiring, on=until - timedelta(days=before)) == 0
    assert changes(after_7, memoranda_state(w.engine)) == []
    received_7 = deliver(w.engine, smtp_server)

    languages = {COORDINATOR: "bg", IVANA: "bg", MIHAIL: "bg", JOHN: "en"}
    for what, received in [("expiring_30", received_30), ("expiring_7", received_7)]:
        assert sorted(received) == sorted(languages), what  # every party's active users; no one else
        for address, language in languages.items():
            [(got_subject, body)] = received[address]
            assert got_subject == subject(what, language, memorandum)
            assert memorandum.verification_code in body
            portal = "staff" if address == COORDINATOR else "portal"
            assert f"/{portal}/memoranda/{memorandum_id}" in body
    assert audit_actions(w.engine).count("memorandum.remind_expiry_30") == 1
    assert audit_actions(w.engine).count("memorandum.remind_expiry_7") == 1


def test_a_memorandum_already_within_7_days_of_its_end_gets_only_the_7_day_reminder(world, smtp_server):
    w = world
    memorandum_id = w.build.active([w.org_b])
    deliver(w.engine, smtp_server)
    w.build.update(memorandum_id, valid_until=today() + timedelta(days=5))

    assert run(w, service.remind_expiring, on=today()) == 1
    assert run(w, service.remind_expiring, on=today()) == 0

    received = deliver(w.engine, smtp_server)
    memorandum = w.build.get(memorandum_id)
    assert received == {
        COORDINATOR: [(subject("expiring_7", "bg", memorandum), received[COORDINATOR][0][1])],
        JOHN: [(subject("expiring_7", "en", memorandum), received[JOHN][0][1])],
    }


# --- reminders to sign, and the deadline passing ---------------------------------------------------------


def test_unsigned_parties_are_reminded_once_a_day_as_the_deadline_nears(world, smtp_server):
    w = world
    memorandum_id = w.build.issued([w.org_a, w.org_b])
    deliver(w.engine, smtp_server)  # the requests to sign, out of the way
    memorandum = w.build.get(memorandum_id)
    deadline = memorandum.signing_deadline

    assert run(w, service.remind_unsigned, on=deadline - timedelta(days=4)) == 0
    assert run(w, service.remind_unsigned, on=deadline - timedelta(days=3)) == 2  # A and B; we are not reminded
    after = memoranda_state(w.engine)
    assert run(w, service.remind_unsigned, on=deadline - timedelta(days=3)) == 0
    assert changes(after, memoranda_state(w.engine)) == []
    first_day = deliver(w.engine, smtp_server)

    w.build.sign(memorandum_id, w.org_a.id)  # A signs; the next day only B is reminded, once
    deliver(w.engine, smtp_server)
    assert run(w, service.remind_unsigned, on=deadline - timedelta(days=2)) == 1
    assert run(w, service.remind_unsigned, on=deadline - timedelta(days=2)) == 0
    next_day = deliver(w.engine, smtp_server)

    assert sorted(first_day) == [IVANA, JOHN, MIHAIL]
    assert sorted(next_day) == [JOHN]
    for received in (first_day, next_day):
        for address, messages in received.items():
            language = "en" if address == JOHN else "bg"
            assert [s for s, _ in messages] == [subject("reminder", language, memorandum)]
            assert f"/portal/memoranda/{memorandum_id}" in messages[0][1]


def test_staff_are_told_once_when_a_signing_deadline_passes_and_again_after_an_extension_passes(world, smtp_server):
    w = world
    memorandum_id = w.build.issued([w.org_a])
    deliver(w.engine, smtp_server)
    deadline = w.build.get(memorandum_id).signing_deadline

    assert run(w, service.remind_unsigned, on=deadline + timedelta(days=1)) == 1
    after = memoranda_state(w.engine)
    assert run(w, service.remind_unsigned, on=deadline + timedelta(days=1)) == 0
    assert run(w, service.remind_unsigned, on=deadline + timedelta(days=5)) == 0
    assert changes(after, memoranda_state(w.engine)) == []
    told = deliver(w.engine, smtp_server)
    assert list(told) == [COORDINATOR]  # not the parties, not a former coordinator
    [(got_subject, body)] = told[COORDINATOR]
    assert w.build.get(memorandum_id).verification_code in got_subject
    assert f"/staff/memoranda/{memorandum_id}" in body
    assert w.build.get(memorandum_id).status == "issued"  # the memorandum waits: staff may extend it

    # Extended, and that deadline passes too: told again, once.
    extended = w.call(
        "PATCH", f"/memoranda/{memorandum_id}", "coordinator", {"signing_deadline": str(deadline + timedelta(days=10))}
    )
    assert extended.status_code == 200, extended.text
    assert run(w, service.remind_unsigned, on=deadline + timedelta(days=11)) == 1
    assert run(w, service.remind_unsigned, on=deadline + timedelta(days=11)) == 0
    assert list(deliver(w.engine, smtp_server)) == [COORDINATOR]


# --- the final PDF a crash left unmade -------------------------------------------------------------------


def test_finalise_makes_the_missing_signed_pdf_once_and_one_failure_does_not_stop_the_others(
    world, monkeypatch, caplog
):
    w = world
    monkeypatch.setattr(scheduler, "_engine", w.engine)  # the engine the scheduler's process gives its jobs
    monkeypatch.setattr(settings, "signing_cert_path", None)
    broken = w.build.active([w.org_b])  # first in line: its failure must not stop the next
    waiting = w.build.active([w.org_a])
    already = w.build.active([w.org_a], final=True)
    done_before = w.build.get(already).signed_sha256
    # The broken one's issued file was damaged in the archive: its final PDF cannot be made.
    damaged = archive.path_of(w.build.get(broken).sha256)
    damaged.unlink()
    damaged.write_bytes(b"%PDF-1.7\n% not the issued document\n")

    with caplog.at_level(logging.ERROR, logger="accord.memoranda"):
        jobs.finalise()

    made = w.build.get(waiting)
    assert made.signed_sha256 is not None
    signed = archive.load(made.signed_sha256)
    assert len(signed) > len(archive.load(made.sha256))
    assert w.build.get(broken).signed_sha256 is None
    assert w.build.get(already).signed_sha256 == done_before
    assert f"memorandum {broken}" in caplog.text
    assert audit_actions(w.engine).count("memorandum.final_pdf") == 2  # `already`'s own, and `waiting`'s

    after = memoranda_state(w.engine)
    jobs.finalise()
    assert changes(after, memoranda_state(w.engine)) == []


# --- the jobs as the scheduler runs them -----------------------------------------------------------------


def test_the_scheduled_jobs_are_registered_and_act_once(world, monkeypatch):
    w = world
    monkeypatch.setattr(scheduler, "_engine", w.engine)
    monkeypatch.setattr(settings, "signing_cert_path", None)
    assert {job.id for job in jobs.JOBS} == {
        "memoranda.expire", "memoranda.expiry_reminders", "memoranda.signing_reminders", "memoranda.finalise",
    }  # fmt: skip
    assert {job.id for job in jobs.JOBS} <= {job.id for job in scheduler.collect_jobs()}
    assert all(job.every_seconds() <= 3600 for job in jobs.JOBS)

    ended = w.build.active([w.org_a], final=True)
    w.build.update(ended, valid_from=today() - timedelta(days=366), valid_until=today() - timedelta(days=1))
    ending = w.build.active([w.org_a], final=True)
    w.build.update(ending, valid_until=today() + timedelta(days=20))
    unsigned = w.build.issued([w.org_b])
    w.build.update(unsigned, signing_deadline=today() + timedelta(days=2))
    unfinished = w.build.active([w.org_b])
    before = memoranda_state(w.engine)

    for job in jobs.JOBS:
        job.func()

    assert w.build.get(ended).status == "expired"
    assert w.build.get(ending).expiry_reminded_days == 30
    assert all(p.reminded_at for p in w.build.parties(unsigned) if p.organisation_id)
    assert w.build.get(unfinished).signed_sha256 is not None
    assert changes(before, memoranda_state(w.engine))
    after = memoranda_state(w.engine)
    for job in jobs.JOBS:
        job.func()
    assert changes(after, memoranda_state(w.engine)) == []
    assert len(outbox(w.engine)) == len(after["OutboxMessage"])
