"""A partner's own pledge through the API takes the quick way (service.emergencies.intake: on PostgreSQL two
round trips instead of the ORM's six, on SQLite Core statements instead of the ORM): it must store, audit,
refuse and answer exactly as `service.create_pledge` does, and leave everything else (staff, a named
organisation, a token that is not a live partner's) to it.

A partner naming their own organisation (`organisation_id`) is answered by `service.create_pledge`: the
same request with and without it compares the two ways."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlmodel import Session, col, func, select

from service import audit
from service.audit import AuditEntry, unsealed_entries, verify_chain
from service.db import event_loop_pool, event_loop_pool_open, utcnow, write_engine
from service.emergencies import intake, service
from service.emergencies.models import Emergency, Pledge, PledgeCreate
from service.emergencies.service import PledgeExceedsNeed
from service.errors import NotFound
from service.partners.models import VerificationStatus
from service.users.models import AuthToken
from tests.conftest import only
from tests.emergencies.build import Logistics, iso, later
from tests.factories import api_headers, make_partner, make_user


@pytest.fixture
def through(monkeypatch) -> list[str]:
    """Which way each pledge went: 'service' for each call of service.create_pledge."""
    calls: list[str] = []
    real = service.create_pledge

    def counted(**kwargs):
        calls.append("service")
        return real(**kwargs)

    monkeypatch.setattr(service, "create_pledge", counted)
    return calls


@pytest.fixture
def scene(session, engine, client):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="„Водоснабдяване“ ЕАД")
    partner = make_user(session, "partner", organisation=org)
    build = Logistics(engine, coordinator)
    emergency = build.emergency()
    return {
        "build": build,
        "emergency": emergency,
        "org": org,
        "partner": partner,
        "coordinator": coordinator,
        "rep": api_headers(client, partner),
        "staff": api_headers(client, coordinator),
    }


def pledges_and_entries(engine) -> tuple[int, int]:
    with Session(engine) as s:
        pledges = s.exec(select(func.count()).select_from(Pledge)).one()
        entries = s.exec(select(func.count()).select_from(AuditEntry)).one()
        assert unsealed_entries(s) == 0
    return pledges, entries


def last_entry(engine) -> AuditEntry:
    with Session(engine) as s:
        return s.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())).first()


def test_a_partners_pledge_is_stored_audited_and_answered_as_the_service_does_it(client, engine, scene, through):
    build = scene["build"]
    need = build.need(scene["emergency"], quantity=100, unit="l")
    body = {"quantity": "12.5", "deliver_by": iso(30), "available_from": iso(2), "note": "Кашони по 6 × 1,5 л"}

    quick = client.post(f"/api/v1/needs/{need}/pledges", json=body, headers=scene["rep"])
    assert quick.status_code == 201, quick.text
    assert through == []  # the quick way
    quick_entry = last_entry(engine)
    by_service = client.post(
        f"/api/v1/needs/{need}/pledges", json={**body, "organisation_id": scene["org"].id}, headers=scene["rep"]
    )
    assert by_service.status_code == 201, by_service.text
    assert through == ["service"]
    service_entry = last_entry(engine)

    # The stored row is what the answer and the audit entry say it is.
    stored = build.get(Pledge, quick.json()["id"])
    # (The entry keeps the quantity as it was given, with its two decimals, as the service's entries do.)
    assert json.loads(quick_entry.after) == {**audit.snapshot(stored), "quantity": "12.50"}
    assert (quick_entry.action, quick_entry.entity, quick_entry.entity_id) == ("pledge.create", "pledge", stored.id)
    assert (quick_entry.actor_id, quick_entry.actor, quick_entry.before) == (
        scene["partner"].id,
        scene["partner"].email,
        None,
    )
    assert stored.created_at == quick_entry.at
    # Both ways make the same pledge, the same entry and the same answer, but for the id and the time.
    differ = {"id", "created_at"}
    assert {k: v for k, v in quick.json().items() if k not in differ} == {
        k: v for k, v in by_service.json().items() if k not in differ
    }
    assert {k: v for k, v in json.loads(quick_entry.after).items() if k not in differ} == {
        k: v for k, v in json.loads(service_entry.after).items() if k not in differ
    }
    assert quick_entry.entity_id < service_entry.entity_id and quick_entry.id < service_entry.id
    with Session(engine) as s:
        assert verify_chain(s) == (s.exec(select(func.count()).select_from(AuditEntry)).one(), None)
        assert unsealed_entries(s) == 0


def test_a_partners_refused_pledge_is_refused_as_the_service_refuses_it(
    client, engine, session, scene, through, database_url
):
    build, emergency = scene["build"], scene["emergency"]
    water = build.need(emergency, quantity=100, unit="l")
    build.pledge(water, scene["org"].id, quantity=90)
    tents = build.need(emergency, quantity=10, unit="pcs")
    closed = build.need(emergency, status="closed")
    draft = build.need(emergency, status="draft")
    ended = build.emergency()
    over = build.need(ended)
    with build.session() as s:
        service.stand_down(session=s, actor=scene["coordinator"], emergency=s.get(Emergency, ended))
    good = {"quantity": 5, "deliver_by": iso()}
    cases = [
        (water, {**good, "quantity": 11}, 409),  # 10 l left
        (tents, {**good, "quantity": "1.5"}, 422),  # pieces are whole
        (water, {**good, "deliver_by": (utcnow() - timedelta(hours=2)).isoformat()}, 422),
        (water, {**good, "available_from": iso(48)}, 422),  # after deliver_by
        (closed, good, 404),
        (draft, good, 404),
        (over, good, 404),
        (999_999, good, 404),
    ]
    if database_url.startswith("postgresql"):
        cases.append((water, {**good, "note": "Вода\x00"}, 422))  # a NUL it cannot store (SQLite can)
    before, made = pledges_and_entries(engine), len(through)  # (the build's pledge was the service's)
    for need, body, expected in cases:
        quick = client.post(f"/api/v1/needs/{need}/pledges", json=body, headers=scene["rep"])
        named = {**body, "organisation_id": scene["org"].id}
        by_service = client.post(f"/api/v1/needs/{need}/pledges", json=named, headers=scene["rep"])
        assert (quick.status_code, quick.json()) == (expected, by_service.json()), (need, body, quick.text)
        assert by_service.status_code == expected
    assert pledges_and_entries(engine) == before
    assert through[made:] == ["service"] * len(cases)

    org = scene["org"]
    org.verification_status = VerificationStatus.suspended
    session.add(org)
    session.commit()
    quick = client.post(f"/api/v1/needs/{water}/pledges", json=good, headers=scene["rep"])
    named = {**good, "organisation_id": org.id}
    by_service = client.post(f"/api/v1/needs/{water}/pledges", json=named, headers=scene["rep"])
    assert (quick.status_code, quick.json()) == (409, by_service.json()), quick.text
    assert pledges_and_entries(engine) == before
    # After all those refusals the quick way's connections are fine: a good pledge goes through.
    org.verification_status = VerificationStatus.verified
    session.add(org)
    session.commit()
    assert client.post(f"/api/v1/needs/{water}/pledges", json=good, headers=scene["rep"]).status_code == 201
    assert pledges_and_entries(engine) == (before[0] + 1, before[1] + 1)
    assert through[made:] == ["service"] * (len(cases) + 1)


def test_anyone_but_a_live_partner_pledging_for_their_own_organisation_is_left_to_the_service(
    client, engine, session, scene, through
):
    build = scene["build"]
    need = build.need(scene["emergency"], quantity=1000, unit="l")
    path = f"/api/v1/needs/{need}/pledges"
    good = {"quantity": 5, "deliver_by": iso()}
    late = {**good, "deliver_by": (utcnow() - timedelta(hours=2)).isoformat()}
    other = make_partner(session, name="Друга организация")
    both = make_user(session, "partner", "coordinator", organisation=scene["org"])
    lone = make_user(session, "partner")  # a partner user no organisation has yet
    leaving = make_user(session, "partner", organisation=scene["org"])
    leaving_headers = api_headers(client, leaving)
    leaving.is_active = False
    session.add(leaving)
    session.commit()
    ended = make_user(session, "partner", organisation=scene["org"])
    ended_headers = api_headers(client, ended)
    for token in session.exec(select(AuthToken).where(AuthToken.user_id == ended.id)):
        token.expires_at = utcnow() - timedelta(seconds=1)
        session.add(token)
    session.commit()

    answers = [
        client.post(path, json={**good, "organisation_id": other.id}, headers=scene["staff"]).status_code,
        client.post(path, json=good, headers=api_headers(client, both)).status_code,  # staff name the organisation
        client.post(path, json={**good, "organisation_id": other.id}, headers=scene["rep"]).status_code,
        client.post(path, json=good, headers=api_headers(client, lone)).status_code,
        client.post(path, json=good, headers=leaving_headers).status_code,
        client.post(path, json=good, headers=ended_headers).status_code,
        client.post(path, json=good, headers={"Authorization": "Bearer not-a-token"}).status_code,
        client.post(path, json=late, headers={"Authorization": "Bearer not-a-token"}).status_code,  # login first
        client.post(path, json=good).status_code,
    ]
    assert answers == [201, 422, 403, 403, 401, 401, 401, 401, 401]
    # Only the first reaches service.create_pledge; the others are refused before it, as before.
    assert through == ["service"]
    with Session(engine) as s:
        pledges = s.exec(select(Pledge).where(Pledge.need_id == need)).all()
    assert [p.organisation_id for p in pledges] == [other.id]


def test_a_partners_pledge_waiting_for_the_needs_lock_counts_what_the_holder_committed(client, engine, scene, through):
    """As the service's (test_coverage): the total is read once the lock is granted, so the pledge of the
    transaction it waited for counts, though it was not committed when the quick way's statement began."""
    build = scene["build"]
    need_id = build.need(scene["emergency"], quantity=10, unit="pcs")
    build.pledge(need_id, scene["org"].id, "accepted", quantity=3)
    made = len(through)
    answers: list = []
    with Session(write_engine(engine)) as holder:
        assert service._lock_need_to_pledge(holder, need_id)[2] == 3
        body = {"quantity": 2, "deliver_by": iso()}
        path = f"/api/v1/needs/{need_id}/pledges"
        waiter = threading.Thread(target=lambda: answers.append(client.post(path, json=body, headers=scene["rep"])))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not answers  # waiting for the need's lock
        holder.add(Pledge(need_id=need_id, organisation_id=scene["org"].id, quantity=6, deliver_by=later()))
        holder.commit()
    waiter.join(10)
    assert answers[0].status_code == 409, answers[0].text  # 1 left, 2 offered
    assert through[made:] == []  # it went the quick way
    with Session(engine) as s:
        assert service.pledged_total(session=s, need_id=need_id) == 9


@only("postgresql")
def test_a_refused_pledge_leaves_the_connections_prepared_statements_in_place(engine, scene):
    """A refusal ends its transaction without a rollback, which psycopg would answer with DEALLOCATE ALL:
    PostgreSQL would then parse and plan the next pledges' statements anew (most pledges' plans, with one
    refusal in ten). A pool of one connection, in an event loop of the test's own."""
    need = scene["build"].need(scene["emergency"], quantity=100, unit="l")
    token = scene["rep"]["Authorization"].removeprefix("Bearer ")
    app = SimpleNamespace(state=SimpleNamespace())

    async def pledge(quantity: int, need_id: int = need) -> Pledge | None:
        data = PledgeCreate(quantity=quantity, deliver_by=later())
        return await intake.partner_pledge_in_loop(event_loop_pool(app), token, need_id, data)

    async def prepared() -> list[str]:
        async with event_loop_pool(app).connection() as connection:
            cursor = await connection.execute("SELECT statement FROM pg_prepared_statements ORDER BY name")
            statements = [statement for (statement,) in await cursor.fetchall()]
            await connection.commit()  # (a rollback would forget them)
        return statements

    async def run() -> tuple[list[str], list[str]]:
        async with event_loop_pool_open(app, engine, 1):
            for _ in range(7):  # psycopg prepares a statement on its sixth run
                assert await pledge(1) is not None
            before = await prepared()
            with pytest.raises(PledgeExceedsNeed):
                await pledge(94)  # 93 left
            with pytest.raises(NotFound):
                await pledge(1, 999_999)
            assert await pledge(1) is not None
            return before, await prepared()

    with ThreadPoolExecutor(1) as thread:  # an event loop of its own (a browser test's may run in this thread)
        before, after = thread.submit(asyncio.run, run()).result()
    assert len(before) == 2  # who asks with the need; the pledge with its audit entry
    assert after == before
    with Session(engine) as s:
        assert service.pledged_total(session=s, need_id=need) == 8
        assert verify_chain(s)[1] is None
