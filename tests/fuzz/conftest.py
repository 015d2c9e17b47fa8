"""A seeded database to fuzz against: the demo municipality, consultations, a second partner login and an API
token per role. It is seeded once per backend and worker, then copied for every fuzzed operation, so what
one operation's fuzzing changed never decides what another's reaches.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from schemathesis.python.asgi import ASGIClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service import demo
from service.auth import issue_token
from service.config import settings
from service.consultations import service as consultations
from service.consultations.models import ConsultationCreate, Position, SubmissionCreate, Vote
from service.db import create_db_engine, utcnow, write_engine
from service.main import create_app
from service.partners.models import Organisation
from service.users import service as users
from service.users.models import Role, UserCreate
from tests.conftest import DatabaseFactory, _pg_admin, pg_url
from tests.consultations.build import Stakeholder, decided

ANONYMOUS = "anonymous"
LOGGED_IN = ("admin", "coordinator", "communications", "partner", "other_partner")
OTHER_PARTNER_LOGIN = "voda@demo.accord.bg"


def seed(engine: Engine) -> dict[str, str]:
    """Fills an empty, migrated database; returns an API token per role (anonymous has none)."""
    with Session(write_engine(engine), expire_on_commit=False) as session:
        demo.load(session=session)
        login = {email: users.get_by_email(session=session, email=email) for email, _name, _roles in demo.DEMO_USERS}
        coordinator = login[demo.DEMO_USERS[1][0]]
        orgs = {o.registration_number: o for o in session.exec(select(Organisation))}
        volunteers, water = orgs["201004516"], orgs["113003225"]
        other_partner = users.create(
            session=session,
            actor=coordinator,
            data=UserCreate(
                email=OTHER_PARTNER_LOGIN,
                full_name="Николай Георгиев",
                password=demo.DEMO_PASSWORD,
                roles=[Role.partner],
                organisation_id=water.id,
            ),
        )
        partner = users.get_by_email(session=session, email=demo.PARTNER_LOGIN)

        # One consultation open to the two partner logins' organisations, with a submission by one of them...
        now = utcnow()
        consultation = consultations.create(
            session=session,
            actor=coordinator,
            data=ConsultationCreate(
                title="План за възстановяване след наводнението",
                question="Подкрепяте ли предложените мерки за възстановяване на кв. „Изток“?",
                measures="1. Ремонт на дигата.\n2. Обезщетения за засегнатите домакинства.",
                opens_at=now - timedelta(minutes=5),
                closes_at=now + timedelta(days=14),
                invited_ids=[volunteers.id, water.id],
            ),
        )
        consultations.open_consultation(session=session, actor=coordinator, consultation=consultation)
        consultations.submit(
            session=session,
            actor=partner,
            consultation=consultation,
            organisation_id=volunteers.id,
            data=SubmissionCreate(position=Position.amend, comments="Предлагаме и временни жилища.", public=True),
        )
        # ...and one decided, with a public submission carrying a PDF and a private one.
        decided(
            session,
            coordinator=coordinator,
            stakeholders=(
                Stakeholder(Position.support, public=True, vote=Vote.for_, attachment=True),
                Stakeholder(Position.oppose, public=False, vote=Vote.against),
            ),
        )
        logins = {
            "admin": login[demo.DEMO_USERS[0][0]],
            "coordinator": coordinator,
            "communications": login[demo.DEMO_USERS[2][0]],
            "partner": partner,
            "other_partner": other_partner,
        }
        return {role: issue_token(session=session, user=user, kind="api") for role, user in logins.items()}


class SeededDatabases(DatabaseFactory):
    """Fresh copies of one seeded database of a backend (the migrated template, seeded before any copy)."""

    def __init__(self, backend: str, workdir: Path) -> None:
        super().__init__(backend, workdir)
        url = f"sqlite:///{self.template}" if backend == "sqlite" else pg_url(self.template)
        engine = create_db_engine(url)
        try:
            self.tokens = seed(engine)
            if backend == "sqlite":  # the copies are plain file copies: nothing may stay in the WAL
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()  # PostgreSQL copies a template only while nobody is connected to it

    def new_url(self) -> str:
        if self.backend == "sqlite":
            return super().new_url()
        # WAL_LOG copies a small database without the two checkpoints FILE_COPY takes: ~30 ms, not ~300 ms.
        name = f"t_{uuid.uuid4().hex[:12]}"
        _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}" STRATEGY WAL_LOG')
        self.created.append(name)
        return pg_url(name)


class Seeds:
    """The seeded databases of this worker, made on first use: a worker that fuzzes no PostgreSQL makes none."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.made: dict[str, SeededDatabases] = {}

    def __getitem__(self, backend: str) -> SeededDatabases:
        if backend not in self.made:
            self.made[backend] = SeededDatabases(backend, self.workdir / backend)
        return self.made[backend]

    def close(self) -> None:
        for databases in self.made.values():
            databases.close()


@pytest.fixture(scope="session")
def fuzz_attachments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-attachments")


@pytest.fixture(autouse=True)
def attachments_dir(fuzz_attachments: Path) -> Iterator[Path]:
    """One attachments folder for the seed and every copy of it (the folder is content-addressed), so the
    seeded submissions' PDFs stay readable."""
    kept = settings.attachments_dir
    settings.attachments_dir = fuzz_attachments
    yield fuzz_attachments
    settings.attachments_dir = kept


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory, memoranda_archive: Path) -> Iterator[Seeds]:
    """Seeded by the first test that needs a backend, under that test's `attachments_dir` (the one above)."""
    seeds = Seeds(tmp_path_factory.mktemp("fuzz"))
    yield seeds
    seeds.close()


@dataclass
class Target:
    """The app on a fresh copy of the seeded database, a client that reaches it in-process, and the role's
    headers."""

    app: FastAPI
    client: ASGIClient
    headers: dict[str, str]


@pytest.fixture
def target(seeds: Seeds, backend: str, role: str) -> Iterator[Target]:
    databases = seeds[backend]
    url = databases.new_url()
    engine = create_db_engine(url)
    app = create_app(engine, run_scheduler=False)
    token = databases.tokens.get(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Not entered as a context manager: no lifespan (scheduler, PDF warm-up, mirror rebuild) for a fuzz run.
    client = ASGIClient(app)
    try:
        yield Target(app=app, client=client, headers=headers)
    finally:
        client.close()
        engine.dispose()
        databases.drop(url)
