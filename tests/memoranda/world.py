"""Memoranda in any state a test needs, built through the service functions (the real rules, real PDF files), the
callers of the API tests, and a snapshot of everything memoranda touch, for tests that check a refused request
changed nothing.

Each builder call works in its own short sessions and renders from a reading one, as the request flow does, so no
transaction stays open while the app serves the test's requests (on SQLite a test's writer would hold the
database's write lock against the app).
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from io import BytesIO
from typing import Any

from fastapi.testclient import TestClient
from pypdf import PdfReader, PdfWriter
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from service.audit import AuditEntry
from service.db import write_engine
from service.memoranda import documents, service
from service.memoranda.models import (
    Memorandum,
    MemorandumCreate,
    MemorandumParty,
    MemorandumStatus,
    SignatureMethod,
)
from service.notifications.models import OutboxMessage
from service.partners.models import Organisation
from service.users.models import User
from tests.factories import api_headers, make_partner, make_user
from tests.memoranda.build import SCANNED_COPY, create_body

SIGNER = "Мария Иванова"
# The states `Memoranda.in_state` builds, each through the service as a real memorandum would get there.
STATES = (
    "draft", "issued", "partially_signed", "active", "declined", "cancelled", "terminated", "expired", "superseded",
)  # fmt: skip


class Memoranda:
    """Memoranda made by `actor` (a coordinator), returned as ids."""

    def __init__(self, engine: Engine, actor: User) -> None:
        self.engine = engine
        self.actor = actor

    def writer(self) -> Session:
        return Session(write_engine(self.engine), expire_on_commit=False)

    def reader(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def get(self, memorandum_id: int) -> Memorandum:
        """The memorandum as stored now."""
        with self.reader() as session:
            return service.get(session=session, memorandum_id=memorandum_id)

    def parties(self, memorandum_id: int) -> list[MemorandumParty]:
        with self.reader() as session:
            return service.parties_of(
                session=session, memorandum=service.get(session=session, memorandum_id=memorandum_id)
            )

    def update(self, memorandum_id: int, **fields: Any) -> None:
        """Sets columns directly: for moving a memorandum's dates, as time passing would."""
        with self.writer() as session:
            memorandum = session.get(Memorandum, memorandum_id)
            for name, value in fields.items():
                setattr(memorandum, name, value)
            session.add(memorandum)
            session.commit()

    def draft(self, partners: list[Organisation], kind: str = "logistics_support", **overrides: Any) -> int:
        data = MemorandumCreate.model_validate(create_body(partners, kind, **overrides))
        with self.writer() as session:
            return service.create(session=session, actor=self.actor, data=data).id

    def issue(self, memorandum_id: int, *, render: bool = False) -> int:
        """Issues the draft as `POST .../issue` does, from a PDF made in a reading session: with `render`, the
        memorandum's own document; without, a stand-in (see `stand_in_pdf`) for tests about anything but it."""
        with self.reader() as session:
            memorandum = service.get(session=session, memorandum_id=memorandum_id)
            if render:
                pdf = service.render(session=session, memorandum=memorandum, draft=False)
            else:
                pdf = stand_in_pdf(memorandum.verification_code)
        with self.writer() as session:
            service.issue(
                session=session,
                actor=self.actor,
                memorandum_id=memorandum_id,
                pdf=pdf,
                rendered_from=memorandum.updated_at,
            )
        return memorandum_id

    def issued(self, partners: list[Organisation], *, render: bool = False, **overrides: Any) -> int:
        return self.issue(self.draft(partners, **overrides), render=render)

    def sign(self, memorandum_id: int, organisation_id: int | None, signer_name: str = SIGNER) -> Memorandum:
        """One party signs (staff recording it: a partner's with its signed copy)."""
        scanned = {} if organisation_id is None else {"method": SignatureMethod.upload, "scan": SCANNED_COPY}
        with self.writer() as session:
            return service.sign(
                session=session,
                actor=self.actor,
                memorandum=service.get(session=session, memorandum_id=memorandum_id),
                organisation_id=organisation_id,
                signer_name=signer_name,
                signer_title="Представител",
                **scanned,
            )

    def sign_all(self, memorandum_id: int, *, final: bool = False) -> int:
        """Every party that has not signed signs; with `final`, the signed PDF is made as the request flow makes
        it (without, the memorandum is in force awaiting it, as after a crash)."""
        for party in self.parties(memorandum_id):
            if party.signed_at is None:
                self.sign(memorandum_id, party.organisation_id)
        assert self.get(memorandum_id).status == MemorandumStatus.active
        if final:
            self.finalise(memorandum_id)
        return memorandum_id

    def finalise(self, memorandum_id: int) -> None:
        with self.reader() as session:
            pdf = service.final_pdf(
                session=session, memorandum=service.get(session=session, memorandum_id=memorandum_id)
            )
        with self.writer() as session:
            service.record_final(session=session, memorandum_id=memorandum_id, pdf=pdf)

    def active(
        self, partners: list[Organisation], *, final: bool = False, render: bool = False, **overrides: Any
    ) -> int:
        return self.sign_all(self.issued(partners, render=render, **overrides), final=final)

    def end(self, memorandum_id: int, how: str, reason: str = "Промяна на обстоятелствата") -> int:
        """Declines (the first partner), cancels or terminates the memorandum."""
        with self.writer() as session:
            memorandum = service.get(session=session, memorandum_id=memorandum_id)
            if how == "decline":
                first = service.parties_of(session=session, memorandum=memorandum)[0]
                service.decline(
                    session=session,
                    actor=self.actor,
                    memorandum=memorandum,
                    organisation_id=first.organisation_id,
                    reason=reason,
                )
            else:
                getattr(service, how)(session=session, actor=self.actor, memorandum=memorandum, reason=reason)
        return memorandum_id

    def expire(self, memorandum_id: int) -> int:
        """Moves the memorandum's year of validity to end yesterday, then runs the expiry (of today)."""
        yesterday = service.today() - timedelta(days=1)
        self.update(memorandum_id, valid_from=yesterday - timedelta(days=365), valid_until=yesterday)
        with self.writer() as session:
            service.expire_due(session=session)
        return memorandum_id

    def renew(self, memorandum_id: int) -> int:
        with self.writer() as session:
            memorandum = service.get(session=session, memorandum_id=memorandum_id)
            return service.renew(session=session, actor=self.actor, memorandum=memorandum).id

    def in_state(self, state: str, partners: list[Organisation]) -> int:
        """A memorandum of `partners` in `state` (one of STATES); the first partner is the one that acted."""
        if state == "draft":
            return self.draft(partners)
        if state == "superseded":
            old = self.active(partners)
            self.sign_all(self.issue(self.renew(old)))
            return old
        memorandum_id = self.issued(partners)
        if state == "partially_signed":
            self.sign(memorandum_id, partners[0].id)
        elif state in ("active", "terminated", "expired"):
            self.sign_all(memorandum_id)
        if state in ("declined", "cancelled", "terminated"):
            self.end(memorandum_id, {"declined": "decline", "cancelled": "cancel", "terminated": "terminate"}[state])
        elif state == "expired":
            self.expire(memorandum_id)
        assert self.get(memorandum_id).status == state
        return memorandum_id


@cache
def _sample_document() -> bytes:
    kind, language = "logistics_support", "bg"
    context = documents.sample_context(kind, language)
    variables = documents.variables_json(documents.sample_variables(kind, language))
    return documents.render_pdf(kind, language, context=context, variables_json=variables)


def stand_in_pdf(code: str) -> bytes:
    """A real memorandum PDF (the sample logistics memorandum, rendered once per process) made this memorandum's
    own file by its code in the document information: rendering each memorandum of the state, access and job
    tests would take a second apiece; the documents themselves are tested where they are issued through the API."""
    writer = PdfWriter(clone_from=PdfReader(BytesIO(_sample_document())))
    writer.add_metadata({"/Subject": f"Stand-in for memorandum {code}"})
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


@dataclass
class World:
    """Org A and org B, each with a partner user; a coordinator, an admin and a communications officer; and a
    builder of memoranda."""

    client: TestClient
    engine: Engine
    build: Memoranda
    org_a: Organisation
    org_b: Organisation
    users: dict[str, User]
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        """The bearer token of a caller ("coordinator", "partner A", ...; "anonymous" has none), fetched once."""
        if who not in self.users:
            return {}
        if who not in self.tokens:
            self.tokens[who] = api_headers(self.client, self.users[who])
        return self.tokens[who]

    def call(self, method: str, path: str, who: str, body: Any = None) -> Any:
        return self.client.request(method, f"/api/v1{path}", json=body, headers=self.headers(who))

    def refused(self, method: str, path: str, who: str, body: Any = None, status: int = 409) -> str:
        """Calls a route that must refuse; returns what is wrong (empty if it refused, said why, changed nothing)."""
        before = memoranda_state(self.engine)
        response = self.call(method, path, who, body)
        changed = changes(before, memoranda_state(self.engine))
        where = f"{who}: {method} {path}"
        if response.status_code != status:
            return f"{where}: expected {status}, got {response.status_code} {response.text[:200]}"
        if not response.json().get("detail"):
            return f"{where}: a refusal that says nothing"
        return f"{where}: refused, yet changed {changed[:3]}" if changed else ""


def make_world(client: TestClient, session: Session, engine: Engine) -> World:
    org_a = make_partner(session, name="Сдружение „Алфа Помощ“")
    org_b = make_partner(session, name="„Бета Логистика“ ЕООД", kind="business")
    users = {
        "coordinator": make_user(session, "coordinator", email="coordinator@obshtina.example"),
        "admin": make_user(session, "admin", email="admin@obshtina.example"),
        "communications": make_user(session, "communications", email="press@obshtina.example"),
        "partner A": make_user(session, "partner", organisation=org_a, email="ivana@alfa.example"),
        "partner B": make_user(session, "partner", organisation=org_b, email="john@beta.example", language="en"),
    }
    session.close()
    return World(client, engine, Memoranda(engine, users["coordinator"]), org_a, org_b, users)


def memoranda_state(engine: Engine) -> dict[str, Any]:
    """Every memorandum, party and queued e-mail as stored, and the audit log's length and head; read in a
    session of its own."""
    with Session(engine) as session:
        return {
            table.__name__: {row.id: row.model_dump(mode="json") for row in session.exec(select(table))}
            for table in (Memorandum, MemorandumParty, OutboxMessage)
        } | {
            "audit_rows": session.exec(select(func.count()).select_from(AuditEntry)).one(),
            "audit_head": session.exec(select(AuditEntry.hash).order_by(col(AuditEntry.id).desc()).limit(1)).first(),
        }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two `memoranda_state`s, one line per row or count (empty when nothing did)."""
    found = []
    for key in before:
        if isinstance(before[key], dict):
            for row_id in sorted(before[key].keys() | after[key].keys()):
                if before[key].get(row_id) != after[key].get(row_id):
                    found.append(f"{key} {row_id}: {before[key].get(row_id)} -> {after[key].get(row_id)}")
        elif before[key] != after[key]:
            found.append(f"{key}: {before[key]} -> {after[key]}")
    return found


def audit_actions(engine: Engine, prefix: str = "memorandum.") -> list[str]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEntry.action).where(col(AuditEntry.action).startswith(prefix)).order_by(col(AuditEntry.id))
            )
        )


def outbox(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))


def days(n: int) -> str:
    """The date `n` days from today (the municipality's), as the API takes it."""
    return str(service.today() + timedelta(days=n))


def today() -> date:
    return service.today()
