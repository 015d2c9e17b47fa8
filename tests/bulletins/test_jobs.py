"""Publishing scheduled updates on time.

The job publishes exactly the scheduled updates whose time has come, each once: a second run (a restart,
a second scheduler) changes nothing, and two runs at the same moment publish nothing twice. And the
promise, measured on a real server with its real scheduler: a scheduled publication is public within
5 seconds of its time, and not before.
"""

import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service import scheduler
from service.bulletins import jobs, service
from service.bulletins.models import Bulletin, BulletinRevision
from service.db import utcnow, write_engine
from tests.bulletins.state import Newsroom, audit_actions, bulletin_body, changes, public_state
from tests.conftest import start_server, stop
from tests.factories import PASSWORD, make_user

PROMISE_SECONDS = 5
LEAD_SECONDS = 3  # how far ahead the live test schedules its update


@pytest.fixture
def news(session, engine) -> Newsroom:
    return Newsroom(engine, make_user(session, "communications"), make_user(session, "communications"))


def run_publish_due(engine, now: datetime | None = None) -> list[int]:
    with Session(write_engine(engine), expire_on_commit=False) as session:
        return service.publish_due(session=session, now=now)


def make_due(news: Newsroom, bulletin_id: int, seconds_ago: float = 1) -> None:
    """Moves a scheduled update's time into the past, as if the clock had run on."""
    with news.session() as s:
        bulletin = s.get(Bulletin, bulletin_id)
        bulletin.publish_at = utcnow() - timedelta(seconds=seconds_ago)
        s.add(bulletin)
        s.commit()


def listed(client) -> list[int]:
    return [u["id"] for u in client.get("/api/v1/public/updates").json()["items"]]


def test_publish_due_publishes_exactly_the_due_updates_once(news, engine, client):
    soon, later, latest = (news.bulletin("scheduled", publish_at=utcnow() + timedelta(hours=h)) for h in (1, 2, 3))
    waiting = news.bulletin("in_review", title="Чака преглед")
    with news.session() as s:  # a draft whose own time has passed is still a draft until approved
        draft = service.create(
            session=s, actor=news.author, data=service.BulletinCreate(**bulletin_body(publish_at=utcnow()))
        ).id
    assert listed(client) == []
    moment = utcnow() + timedelta(hours=2, minutes=30)

    assert run_publish_due(engine, now=moment) == [soon, later]

    stored = {bid: news.get(Bulletin, bid) for bid in (soon, later, latest, waiting, draft)}
    assert {bid: b.status for bid, b in stored.items()} == {
        soon: "published", later: "published", latest: "scheduled", waiting: "in_review", draft: "draft",
    }  # fmt: skip
    for bid in (soon, later):
        assert stored[bid].revision == 1 and stored[bid].published_at is not None
        assert audit_actions(engine, bid)[-1] == "bulletin.publish"
    assert sorted(listed(client)) == sorted([soon, later])
    with Session(engine) as s:
        revisions = s.exec(select(BulletinRevision.bulletin_id, BulletinRevision.number)).all()
    assert sorted(revisions) == sorted([(soon, 1), (later, 1)])

    after_first = public_state(engine)
    assert run_publish_due(engine, now=moment) == []
    assert changes(after_first, public_state(engine)) == []

    assert run_publish_due(engine, now=moment + timedelta(hours=1)) == [latest]
    assert run_publish_due(engine, now=moment + timedelta(hours=1)) == []


def test_a_scheduled_update_sent_back_is_not_published_at_its_old_time(news, engine):
    bid = news.bulletin("scheduled", publish_at=utcnow() + timedelta(hours=1))
    with news.session() as s:
        service.send_back(session=s, actor=news.reviewer, bulletin=s.get(Bulletin, bid), reason="Сгрешен адрес")

    assert run_publish_due(engine, now=utcnow() + timedelta(days=1)) == []
    assert news.get(Bulletin, bid).status == "draft"


def test_the_job_publishes_what_is_due_and_a_second_run_changes_nothing(news, engine, client, monkeypatch):
    monkeypatch.setattr(scheduler, "_engine", engine)  # the job runs on the scheduler's engine
    due, not_yet = (news.bulletin("scheduled") for _ in range(2))
    before = public_state(engine)
    jobs.publish_scheduled()  # nothing due: a read, no write
    assert changes(before, public_state(engine)) == []

    make_due(news, due)
    jobs.publish_scheduled()

    assert (news.get(Bulletin, due).status, news.get(Bulletin, not_yet).status) == ("published", "scheduled")
    assert listed(client) == [due]
    after_first = public_state(engine)
    jobs.publish_scheduled()
    assert changes(after_first, public_state(engine)) == []


def test_two_runs_at_once_publish_each_update_once(news, engine):
    """Two schedulers' runs racing (a double start): each update gets one revision and one audit entry."""
    ids = [news.bulletin("scheduled") for _ in range(5)]
    for bid in ids:
        make_due(news, bid)
    start = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(5)
            results.append(run_publish_due(engine))
        except BaseException as exc:  # reported below, with the test's own assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sorted(results, key=len) == [[], ids]
    with Session(engine) as s:
        counts = dict(
            s.exec(select(BulletinRevision.bulletin_id, sa.func.count()).group_by(BulletinRevision.bulletin_id)).all()
        )
    assert counts == dict.fromkeys(ids, 1)
    assert all(audit_actions(engine, bid).count("bulletin.publish") == 1 for bid in ids)


# --- the promise, on a real server -----------------------------------------------------------------------


def wait_for_leader(engine, server, seconds: float = 30) -> None:
    """Until the server's scheduler leads and has stored its jobs (the publishing one among them)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"the server exited with {server.proc.returncode}"
        with Session(engine) as s:  # a short read: the server's writers must not wait for it
            found = s.execute(
                sa.text("SELECT id FROM apscheduler_jobs WHERE id = :id"), {"id": "bulletins.publish_scheduled"}
            ).first()
        if found:
            return
        time.sleep(0.1)
    raise AssertionError(f"the scheduler did not start within {seconds} s")


@pytest.mark.slow
def test_a_scheduled_update_is_public_within_five_seconds_of_its_time(database_url, engine, session):
    author = make_user(session, "communications", email="author@example.test")
    reviewer = make_user(session, "communications", email="reviewer@example.test")
    server = start_server(database_url, ACCORD_RUN_SCHEDULER="true")
    try:
        wait_for_leader(engine, server)
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def login(user) -> dict[str, str]:
                got = http.post("/api/v1/auth/token", data={"username": user.email, "password": PASSWORD})
                assert got.status_code == 200, got.text
                return {"Authorization": f"Bearer {got.json()['access_token']}"}

            writer, checker = login(author), login(reviewer)
            created = http.post("/api/v1/bulletins", json=bulletin_body(), headers=writer)
            assert created.status_code == 201, created.text
            bid = created.json()["id"]
            assert http.post(f"/api/v1/bulletins/{bid}/submit", headers=writer).status_code == 200
            publish_at = utcnow() + timedelta(seconds=LEAD_SECONDS)
            approved = http.post(
                f"/api/v1/bulletins/{bid}/approve", json={"publish_at": publish_at.isoformat()}, headers=checker
            )
            assert approved.status_code == 200, approved.text
            assert approved.json()["status"] == "scheduled"

            polls: list[tuple[datetime, bool]] = []  # (when the answer came, whether it listed the update)
            deadline = publish_at + timedelta(seconds=PROMISE_SECONDS + 5)
            while utcnow() < deadline:
                answer = http.get("/api/v1/public/updates")
                assert answer.status_code == 200, answer.text
                items = {u["id"]: u for u in answer.json()["items"]}
                polls.append((utcnow(), bid in items))
                if bid in items:
                    published_at = datetime.fromisoformat(items[bid]["published_at"])
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"not public {PROMISE_SECONDS + 5} s after its time")
            page = http.get(f"/updates/{bid}")
            status = http.get(f"/api/v1/bulletins/{bid}", headers=writer).json()["status"]
    finally:
        stop(server.proc)

    seen_at = polls[-1][0]
    early = [at for at, shown in polls if shown and at < publish_at]
    assert early == [], f"public before its time: {early}"
    assert any(at < publish_at for at, _ in polls), "no poll before its time: the test proves nothing of 'not before'"
    assert published_at >= publish_at, (published_at, publish_at)
    delay = (seen_at - publish_at).total_seconds()
    assert delay <= PROMISE_SECONDS, f"public {delay:.2f} s after its time (promised within {PROMISE_SECONDS} s)"
    assert page.status_code == 200 and status == "published"
