"""The `accord` command, run as an operator would: a real process, on each backend's database."""

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from service.audit import AuditEntry
from service.db import DatabaseNotMigrated, check_migrated, create_db_engine
from service.main import create_app
from service.observability import readiness
from service.partners.models import Contact, Organisation
from service.users.models import User
from tests.conftest import PROJECT, _pg_admin, accord_env, free_port, pg_url
from tests.factories import make_partner


def accord(
    database_url: str, *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`accord ARGS` in a process of its own, with the settings pointing at `database_url`."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=PROJECT,
        env=accord_env(database_url),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(text: str) -> str:
    """Output with its line wrapping undone (a traceback's message may be wrapped to the terminal)."""
    return " ".join(text.split())


def counts(database_url: str) -> dict[str, int]:
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as s:
            return {
                model.__name__: s.exec(select(func.count()).select_from(model)).one()
                for model in (User, Organisation, Contact, AuditEntry)
            }
    finally:
        engine.dispose()


@pytest.fixture
def empty_database_url(database_factory, tmp_path) -> Iterator[str]:
    """A database of the test's backend with nothing in it, not even the schema."""
    if database_factory.backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"empty_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    yield pg_url(name)
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_app_refuses_an_unmigrated_database_and_migrate_fixes_it_idempotently(empty_database_url):
    engine = create_db_engine(empty_database_url)
    try:
        with pytest.raises(DatabaseNotMigrated, match="accord migrate"):
            create_app(engine, run_scheduler=False)
    finally:
        engine.dispose()

    # A timeout, not a hang, if the server did start.
    serve = accord(empty_database_url, "serve", "--port", str(free_port()), timeout=60)
    assert serve.returncode != 0
    assert "accord migrate" in serve.stderr
    assert "Traceback" not in serve.stderr
    assert "Run `accord migrate`" in one_line(serve.stderr)

    first = accord(empty_database_url, "migrate")
    assert first.returncode == 0, first.stderr
    assert "Database migrated" in first.stdout
    assert "app:app@" not in first.stdout  # the password is not printed

    engine = create_db_engine(empty_database_url)
    try:
        check_migrated(engine)
        tables = set(sa.inspect(engine).get_table_names())
        assert {"organisation", "contact", "user_account", "audit_entry", "alembic_version"} <= tables
        with Session(engine) as s:
            make_partner(s, name="Сдружение „Остава“")

        again = accord(empty_database_url, "migrate")
        assert again.returncode == 0, again.stderr
        engine.dispose()
        check_migrated(engine)
        assert set(sa.inspect(engine).get_table_names()) == tables
        with Session(engine) as s:
            assert [o.name for o in s.exec(select(Organisation))] == ["Сдружение „Остава“"]
        with TestClient(create_app(engine, run_scheduler=False)) as client:
            assert client.get("/healthz").text == "ok"
    finally:
        engine.dispose()


def test_create_admin_makes_an_administrator_who_can_log_in(database_url):
    created = accord(database_url, "create-admin", "--email", "Chief@City.example", "--password", "a-long-password-1")
    assert created.returncode == 0, created.stderr
    assert "chief@city.example" in created.stdout
    # Without --password it asks, twice, without echoing.
    prompted = accord(database_url, "create-admin", "--email", "deputy@city.example", input="second-password-2\n" * 2)
    assert prompted.returncode == 0, prompted.stderr

    engine = create_db_engine(database_url)
    try:
        with TestClient(create_app(engine, run_scheduler=False)) as client:
            for email, password in [
                ("chief@city.example", "a-long-password-1"),
                ("deputy@city.example", "second-password-2"),
            ]:
                token = client.post("/api/v1/auth/token", data={"username": email, "password": password})
                assert token.status_code == 200, token.text
                me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
                assert me.json()["roles"] == ["admin"]
        with Session(engine) as s:
            created_by = s.exec(select(AuditEntry.actor).where(AuditEntry.action == "user.create")).all()
            assert created_by == ["cli:create-admin"] * 2
            assert s.exec(select(User.password_hash)).first().startswith("$argon2id$")
    finally:
        engine.dispose()


def test_create_admin_refuses_bad_input_with_a_message(database_url):
    accord(database_url, "create-admin", "--email", "chief@city.example", "--password", "a-long-password-1")
    before = counts(database_url)
    for args, words in [
        (["--email", "new@city.example", "--password", "short"], ["password", "10"]),
        (["--email", "not-an-address", "--password", "a-long-password-1"], ["email"]),
        (["--email", "CHIEF@city.example", "--password", "a-long-password-1"], ["already exists"]),
    ]:
        refused = accord(database_url, "create-admin", *args)
        assert refused.returncode != 0, args
        assert all(word in refused.stderr for word in words), (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert counts(database_url) == before


def test_audit_verify_reports_intact_or_the_tampered_row(database_url):
    empty = accord(database_url, "audit-verify")
    assert empty.returncode == 0 and "intact: 0 rows" in empty.stdout

    engine = create_db_engine(database_url)
    try:
        with Session(engine) as s:
            for n in range(4):
                make_partner(s, name=f"Организация {n} {'абвг'[n]}")
            ids = s.exec(select(AuditEntry.id).order_by(AuditEntry.id)).all()
        intact = accord(database_url, "audit-verify")
        assert intact.returncode == 0, intact.stderr
        assert "intact" in intact.stdout and f"{len(ids)} rows" in intact.stdout

        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_entry SET after = :after WHERE id = :id"), {"after": "{}", "id": ids[2]})
        tampered = accord(database_url, "audit-verify")
        assert tampered.returncode == 1
        assert f"audit row {ids[2]} " in tampered.stderr
        assert "2 rows before it are intact" in tampered.stderr
    finally:
        engine.dispose()


def test_without_the_audit_trigger_nothing_starts_and_audit_verify_finds_the_unsealed(database_url, engine):
    """PostgreSQL seals the audit log by a trigger: if it is disabled or dropped, changes would go unaudited,
    so neither the app nor /readyz accept the database, and audit-verify names entries left unsealed."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the app seals the entries itself")
    make_partner(Session(engine))
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_seal"))
    with Session(engine) as s:
        make_partner(s)  # its entry stays in audit_pending: nothing seals it
    with pytest.raises(DatabaseNotMigrated, match=r"audit_pending_seal, which seals the audit log .* is disabled"):
        check_migrated(engine)
    with pytest.raises(DatabaseNotMigrated):
        create_app(engine)
    ready, body = readiness(engine)
    assert not ready and "is disabled" in body["checks"]["audit"]
    unsealed = accord(database_url, "audit-verify")
    assert unsealed.returncode == 1
    assert "UNSEALED: 1 audit entries wait in audit_pending" in unsealed.stderr

    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER audit_pending_seal ON audit_pending"))
    with pytest.raises(DatabaseNotMigrated, match="is missing"):
        check_migrated(engine)


def test_demo_data_if_empty_loads_once(database_url):
    first = accord(database_url, "demo-data", "--if-empty")
    assert first.returncode == 0, first.stderr
    assert "Demo data loaded." in first.stdout
    loaded = counts(database_url)
    assert loaded["User"] >= 4 and loaded["Organisation"] >= 3 and loaded["Contact"] >= 3

    second = accord(database_url, "demo-data", "--if-empty")
    assert second.returncode == 0, second.stderr
    assert "not loaded" in second.stdout
    assert counts(database_url) == loaded
    verified = accord(database_url, "audit-verify")
    assert verified.returncode == 0 and f"{loaded['AuditEntry']} rows" in verified.stdout
