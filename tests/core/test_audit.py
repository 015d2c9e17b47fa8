"""The audit log: every change made through the API is there, with who and what; the hash chain shows tampering."""

import threading

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from service import audit
from service.audit import AuditEntry, entry_hash, verify_chain
from service.db import write_engine
from service.partners import service as partners
from service.partners.models import ContactCreate, ContactUpdate
from tests.factories import api_headers, make_partner, make_user, page_login


def chain(engine) -> tuple[int, AuditEntry | None]:
    with Session(engine) as s:
        return verify_chain(s)


def entry_ids(engine) -> list[int]:
    with Session(engine) as s:
        return list(s.exec(select(AuditEntry.id).order_by(AuditEntry.id)))


def execute(engine, sql: str, **params) -> None:
    """Runs SQL straight on the database, as someone with access to it (not the app) would."""
    with Session(write_engine(engine)) as s:
        s.execute(sa.text(sql), params)
        s.commit()


def add_contacts(engine, organisation_id: int, count: int, prefix: str) -> None:
    """Adds and then edits contacts through the service layer: 2 × count audited changes."""
    with Session(write_engine(engine), expire_on_commit=False) as s:
        org = partners.get(session=s, organisation_id=organisation_id)
        for n in range(count):
            contact = partners.add_contact(
                session=s, actor=f"test:{prefix}", org=org, data=ContactCreate(full_name=f"{prefix} {n}")
            )
            partners.update_contact(session=s, actor=f"test:{prefix}", contact=contact, data=ContactUpdate(role="x"))


def test_every_change_through_the_api_is_logged_with_actor_entity_and_before_after(client, session, engine):
    admin = make_user(session, "admin", email="admin@staff.example")
    coordinator = make_user(session, "coordinator", email="coordinator@staff.example")
    admin_headers = api_headers(client, admin)
    headers = api_headers(client, coordinator)
    first_id = client.get("/api/v1/audit?limit=1", headers=admin_headers).json()
    first_id = first_id[0]["id"] if first_id else 0

    org = client.post("/api/v1/partners", json={"name": "Сдружение „Одит“", "kind": "ngo"}, headers=headers).json()
    base = f"/api/v1/partners/{org['id']}"
    client.patch(base, json={"phone": "+359 2 111"}, headers=headers).raise_for_status()
    client.post(f"{base}/verify", headers=headers).raise_for_status()
    client.post(f"{base}/suspend", json={"reason": "Проверка"}, headers=headers).raise_for_status()
    contact = client.post(f"{base}/contacts", json={"full_name": "Иван"}, headers=headers).json()
    client.patch(f"{base}/contacts/{contact['id']}", json={"role": "Дежурен"}, headers=headers).raise_for_status()
    client.delete(f"{base}/contacts/{contact['id']}", headers=headers).raise_for_status()
    rep = client.post(
        f"{base}/users",
        json={"email": "rep@partner.example", "full_name": "Представител", "password": "a-long-password"},
        headers=headers,
    ).json()
    staff = client.post(
        "/api/v1/users",
        json={
            "email": "pr@staff.example",
            "full_name": "ПР",
            "password": "a-long-password",
            "roles": ["communications"],
        },
        headers=admin_headers,
    ).json()
    client.patch(
        f"/api/v1/users/{staff['id']}", json={"full_name": "ПР отдел"}, headers=admin_headers
    ).raise_for_status()

    response = client.get("/api/v1/audit?limit=500", headers=admin_headers)
    assert response.status_code == 200
    entries = [e for e in reversed(response.json()) if e["id"] > first_id]
    coordinator_by = ("coordinator@staff.example", coordinator.id)
    admin_by = ("admin@staff.example", admin.id)
    assert [(e["actor"], e["actor_id"], e["action"], e["entity"], e["entity_id"]) for e in entries] == [
        (*coordinator_by, "organisation.create", "organisation", org["id"]),
        (*coordinator_by, "organisation.update", "organisation", org["id"]),
        (*coordinator_by, "organisation.verify", "organisation", org["id"]),
        (*coordinator_by, "organisation.suspend", "organisation", org["id"]),
        (*coordinator_by, "contact.create", "contact", contact["id"]),
        (*coordinator_by, "contact.update", "contact", contact["id"]),
        (*coordinator_by, "contact.delete", "contact", contact["id"]),
        (*coordinator_by, "user.create", "user_account", rep["id"]),
        (*admin_by, "user.create", "user_account", staff["id"]),
        (*admin_by, "user.update", "user_account", staff["id"]),
    ]
    create, update, verify, suspend, contact_create, contact_update, contact_delete, rep_create, _, user_update = (
        entries
    )
    assert create["before"] is None and create["after"]["name"] == "Сдружение „Одит“"
    assert (update["before"]["phone"], update["after"]["phone"]) == (None, "+359 2 111")
    assert (verify["before"]["verification_status"], verify["after"]["verification_status"]) == ("pending", "verified")
    assert suspend["after"]["suspended_reason"] == "Проверка"
    assert contact_create["before"] is None and contact_create["after"]["full_name"] == "Иван"
    assert (contact_update["before"]["role"], contact_update["after"]["role"]) == ("", "Дежурен")
    assert contact_delete["before"]["full_name"] == "Иван" and contact_delete["after"] is None
    assert rep_create["after"]["organisation_id"] == org["id"] and rep_create["after"]["roles"] == ["partner"]
    assert (user_update["before"]["full_name"], user_update["after"]["full_name"]) == ("ПР", "ПР отдел")
    for entry in entries:
        assert len(entry["hash"]) == 64 and entry["at"]
        assert "password" not in str(entry["before"]) + str(entry["after"])

    # Filters: one entity's history, one person's actions.
    history = client.get(f"/api/v1/audit?entity=contact&entity_id={contact['id']}", headers=admin_headers).json()
    assert [e["action"] for e in history] == ["contact.delete", "contact.update", "contact.create"]
    by_admin = client.get(f"/api/v1/audit?actor_id={admin.id}", headers=admin_headers).json()
    assert [e["action"] for e in by_admin] == ["user.update", "user.create"]
    for query in ["entity_id=99999999999999999999", "actor_id=-1", "limit=0", "limit=501", "entity=" + "x" * 101]:
        assert client.get(f"/api/v1/audit?{query}", headers=admin_headers).status_code == 422, query
    assert chain(engine)[1] is None


def test_the_audit_log_is_for_administrators_only(client, session):
    org = make_partner(session)
    assert client.get("/api/v1/audit").status_code == 401
    for user in [
        make_user(session, "coordinator"),
        make_user(session, "communications"),
        make_user(session, "coordinator", "communications"),
        make_user(session, "partner", organisation=org),
    ]:
        assert client.get("/api/v1/audit", headers=api_headers(client, user)).status_code == 403, user.roles
    assert client.get("/api/v1/audit", headers=api_headers(client, make_user(session, "admin"))).status_code == 200


def test_the_chain_stays_intact_over_many_changes(engine, session):
    org = make_partner(session)
    add_contacts(engine, org.id, 40, "Контакт")
    checked, bad = chain(engine)
    assert bad is None
    assert checked == len(entry_ids(engine)) == 81


def test_an_edited_row_is_reported_at_exactly_that_row(engine, session):
    org = make_partner(session)
    add_contacts(engine, org.id, 10, "Контакт")
    ids = entry_ids(engine)
    target = ids[7]
    with Session(engine) as s:
        original = s.get(AuditEntry, target)
    assert chain(engine) == (len(ids), None)

    for column, value in [
        ("after", '{"full_name": "Someone else"}'),
        ("before", '{"role": "x"}'),
        ("actor", "admin@elsewhere.example"),
        ("action", "contact.view"),
        ("entity_id", 12345),
        ("at", original.at.replace(year=2020).replace(tzinfo=None)),
        ("prev_hash", "0" * 64),
        ("hash", "f" * 64),
    ]:
        execute(engine, f"UPDATE audit_entry SET {column} = :value WHERE id = :id", value=value, id=target)  # noqa: S608
        checked, bad = chain(engine)
        assert bad is not None and bad.id == target, column
        assert checked == ids.index(target), column
        execute(engine, "DELETE FROM audit_entry WHERE id = :id", id=target)
        with Session(write_engine(engine)) as s:
            s.add(AuditEntry(**original.model_dump()))
            s.commit()
        assert chain(engine) == (len(ids), None), f"restoring {column}"

    # Rewriting the row's own hash to fit its new content moves the break to the next row, which still
    # points at the old hash.
    with Session(engine) as s:
        forged = s.get(AuditEntry, target)
    forged.after = '{"full_name": "Someone else"}'
    execute(
        engine,
        "UPDATE audit_entry SET after = :after, hash = :hash WHERE id = :id",
        after=forged.after,
        hash=entry_hash(forged),
        id=target,
    )
    checked, bad = chain(engine)
    assert bad.id == ids[8] and checked == 8


def test_a_deleted_row_is_detected(engine, session):
    org = make_partner(session)
    add_contacts(engine, org.id, 5, "Контакт")
    ids = entry_ids(engine)
    execute(engine, "DELETE FROM audit_entry WHERE id = :id", id=ids[4])
    checked, bad = chain(engine)
    assert bad is not None and bad.id == ids[5]
    assert checked == 4


AWKWARD = [
    "Кирилица „в кавички“ — тире",
    "emoji 🚒🌊 and ß, ünïcödé",
    'quote " backslash \\ tab \t newline \n',
    "\\u0000 spelled out, </script><script>",
    "",
]


def test_the_database_and_the_app_hash_every_entry_alike(engine, session):
    """On PostgreSQL the database seals the entries as the transaction commits (from `audit_pending`), on
    SQLite the app does: either way each hash is the one `verify_chain` recomputes, whatever the text, one
    transaction's entries keep their order, and nothing is left waiting."""
    with Session(write_engine(engine)) as s:
        for n, text in enumerate(AWKWARD):
            audit.record(
                s, actor=f"тест {text}", action="test.awkward", entity_name="тест", entity_id=n + 1,
                before={"text": text, "n": None}, after={"text": text[::-1], "n": n},
            )  # fmt: skip
        audit.record(s, actor=None, action="test.system")
        s.commit()
    with Session(engine) as s:
        rows = s.exec(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert s.exec(select(func.count()).select_from(audit.PendingAuditEntry)).one() == 0
    assert chain(engine) == (len(rows), None)
    assert [(r.action, r.entity_id) for r in rows] == [("test.awkward", n + 1) for n in range(len(AWKWARD))] + [
        ("test.system", None)
    ]
    assert [r.actor for r in rows] == [f"тест {text}" for text in AWKWARD] + ["system"]
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]


def test_a_change_rolled_back_leaves_no_entry(engine, session):
    org = make_partner(session)
    before = entry_ids(engine)
    with Session(write_engine(engine)) as s:
        audit.record(s, actor="test", action="test.undone", entity_name="тест")
        s.execute(sa.text("UPDATE organisation SET name = 'x' WHERE id = :id"), {"id": org.id})
        s.rollback()
        s.commit()  # nothing pending is left to seal
    with Session(write_engine(engine)) as s:
        audit.record(s, actor="test", action="test.refused", entity_name="тест")
        with pytest.raises(sa.exc.IntegrityError):
            s.execute(sa.text("UPDATE organisation SET name = NULL WHERE id = :id"), {"id": org.id})
        s.rollback()
    assert entry_ids(engine) == before
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(audit.PendingAuditEntry)).one() == 0


def test_concurrent_writers_still_make_one_unbroken_chain(engine, session):
    orgs = [make_partner(session).id for _ in range(8)]
    start = threading.Barrier(len(orgs))
    errors: list[BaseException] = []

    def writer(n: int, organisation_id: int) -> None:
        try:
            start.wait()
            add_contacts(engine, organisation_id, 5, f"Нишка {n}")
        except BaseException as error:  # collected and re-raised by the test
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n, org_id)) for n, org_id in enumerate(orgs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    checked, bad = chain(engine)
    assert bad is None
    with Session(engine) as s:
        rows = s.exec(select(AuditEntry).order_by(AuditEntry.id)).all()
        per_thread = dict(s.exec(select(AuditEntry.actor, func.count()).group_by(AuditEntry.actor)).all())
    assert checked == len(rows) == 8 + 8 * 10
    assert len({row.prev_hash for row in rows}) == len(rows)
    assert all(per_thread[f"test:Нишка {n}"] == 10 for n in range(8))
    # Each row points at the one before it: one line, no fork.
    assert [row.prev_hash for row in rows[1:]] == [row.hash for row in rows[:-1]]
    assert rows[0].prev_hash == audit.GENESIS


def test_the_audit_pages_refuse_an_id_out_of_range(app, session):
    page = TestClient(app, follow_redirects=False)
    page_login(page, make_user(session, "admin"))
    assert page.get("/staff/audit?entity=organisation&entity_id=1").status_code == 200
    for path in ["/staff/audit?entity_id=99999999999999999999", "/staff/audit/export.csv?entity_id=-1"]:
        assert page.get(path).status_code == 422, path
