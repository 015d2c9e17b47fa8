"""The staff's consultation pages: drafting with errors beside their fields, opening and closing, every
submission side by side with the tally, the decision with the votes, publishing it, roles and CSRF.

Pages are read in English (the coordinator's own language) so that the assertions can name the messages.
"""

import hashlib
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfWriter
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from service.config import settings
from service.consultations import service
from service.consultations.models import (
    Consultation,
    ConsultationCreate,
    ConsultationStatus,
    Decision,
    DecisionVote,
    Invitation,
    Submission,
    SubmissionCreate,
)
from service.db import utcnow
from service.emergencies import service as emergencies
from service.emergencies.models import EmergencyCreate
from service.i18n import local_input_value
from service.notifications.models import OutboxMessage
from service.partners import service as partners
from service.partners.models import Organisation
from service.users.models import User
from tests.factories import make_partner, make_user, page_login

QUESTION = "Подкрепяте ли предложените мерки за подпомагане на засегнатите домакинства?"
MEASURES = "1. Еднократна помощ от **300 €**.\n2. Освобождаване от местни такси за 6 месеца."


# --- builders shared with the portal's tests -------------------------------------------------------------


def pdf_bytes(title: str = "Становище") -> bytes:
    """A real one-page PDF (pypdf reads it back), its title making its bytes its own."""
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_consultation(
    session: Session,
    actor: User,
    invited: list[Organisation],
    *,
    state: str = "open",
    title: str = "План за възстановяване след наводнението",
    **fields,
) -> Consultation:
    """A consultation through the service, taking submissions from a minute ago for two hours when `open`;
    `closed` is closed early by staff."""
    data = ConsultationCreate(
        title=title,
        question=QUESTION,
        measures=fields.pop("measures", MEASURES),
        opens_at=fields.pop("opens_at", utcnow() - timedelta(minutes=1)),
        closes_at=fields.pop("closes_at", utcnow() + timedelta(hours=2)),
        invited_ids=[o.id for o in invited],
        **fields,
    )
    consultation = service.create(session=session, actor=actor, data=data)
    if state in ("open", "closed"):
        service.open_consultation(session=session, actor=actor, consultation=consultation)
    if state == "closed":
        service.close(session=session, actor=actor, consultation=consultation)
    return consultation


def submit(session: Session, user: User, consultation: Consultation, **fields) -> Submission:
    submission, _created = service.submit(
        session=session,
        actor=user,
        consultation=consultation,
        organisation_id=user.organisation_id,
        data=SubmissionCreate(**fields),
    )
    return submission


class Stored:
    """Reads what the app wrote, each time in a short session of its own: the `session` fixture is a writer,
    and a read through it would hold SQLite's write lock while the app waits for it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self, query) -> list:
        with Session(self.engine) as s:
            return list(s.exec(query))

    def one(self, query):
        (row,) = self.all(query)
        return row

    def count(self, model) -> int:
        with Session(self.engine) as s:
            return s.exec(select(func.count()).select_from(model)).one()

    def get(self, model, key):
        with Session(self.engine) as s:
            return s.get(model, key)


@pytest.fixture
def db(engine: Engine) -> Stored:
    return Stored(engine)


@pytest.fixture(autouse=True)
def attachments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Attached PDFs go to this test's own folder."""
    folder = tmp_path / "attachments"
    monkeypatch.setattr(settings, "attachments_dir", folder)
    return folder


def log_in(client, user: User) -> str:
    client.cookies.set("accord_lang", "en")
    return page_login(client, user)


def text_of(html: str, element_id: str) -> str:
    """The text inside the element with this id (tags removed, spaces squeezed)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(td|p|span|div|dd|dl)>', html, re.S)
    assert match, f"no element #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


@pytest.fixture
def world(session: Session) -> dict:
    coordinator = make_user(session, "coordinator", language="en")
    verified = make_partner(session, name="Сдружение „Читалище Светлина“")
    partners.verify(session=session, actor=coordinator, org=verified)
    pending = make_partner(session, name="Асоциация „Ангел“")  # sorts before the verified one by name
    suspended = make_partner(session, name="Фондация „Спряна“")
    partners.verify(session=session, actor=coordinator, org=suspended)
    partners.suspend(session=session, actor=coordinator, org=suspended, reason="Проверка")
    return {
        "coordinator": coordinator,
        "verified": verified,
        "verified_user": make_user(session, "partner", organisation=verified),
        "pending": pending,
        "pending_user": make_user(session, "partner", organisation=pending),
        "suspended": suspended,
    }


@pytest.fixture
def staff(client, world) -> str:
    return log_in(client, world["coordinator"])


# --- drafting --------------------------------------------------------------------------------------------


def test_a_draft_is_made_through_the_form_with_its_invitations_and_local_times(client, session, world, staff, db):
    emergency = emergencies.declare(
        session=session,
        actor=world["coordinator"],
        data=EmergencyCreate(title="Наводнение в кв. „Изток“", kind="flood", area="кв. „Изток“", severity="severe"),
    )
    listing = client.get("/staff/consultations")
    assert listing.status_code == 200
    assert 'href="/staff/consultations/new"' in listing.text
    form = client.get("/staff/consultations/new")
    assert form.status_code == 200
    html = form.text
    # Verified organisations first (though the pending one sorts first by name), the suspended not at all.
    assert html.index(world["verified"].name) < html.index(world["pending"].name)
    assert world["suspended"].name not in html
    assert f'<option value="{emergency.id}"' in html
    assert re.search(r'name="opens_at" type="datetime-local" value="\d{4}-\d\d-\d\dT\d\d:\d\d"', html)

    created = client.post(
        "/staff/consultations/new",
        data={
            "title": "План за възстановяване",
            "question": QUESTION,
            "measures": MEASURES,
            "emergency_id": str(emergency.id),
            "opens_at": "2030-01-15T14:30",
            "closes_at": "2030-02-01T17:00",
            "invited_ids": [str(world["verified"].id), str(world["pending"].id)],
            "csrf_token": staff,
        },
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    consultation = db.one(select(Consultation))
    assert created.headers["location"] == f"/staff/consultations/{consultation.id}?done=created"
    assert consultation.status == ConsultationStatus.draft
    assert consultation.emergency_id == emergency.id
    assert not consultation.open_to_all
    # Typed in Sofia's winter time (UTC+2).
    assert consultation.opens_at == datetime(2030, 1, 15, 12, 30, tzinfo=UTC)
    assert consultation.closes_at == datetime(2030, 2, 1, 15, 0, tzinfo=UTC)
    assert {i.organisation_id for i in db.all(select(Invitation))} == {world["verified"].id, world["pending"].id}

    page = client.get(created.headers["location"])
    assert page.status_code == 200
    assert 'id="done-notice"' in page.text
    assert 'data-status="draft"' in page.text
    assert "<strong>300 €</strong>" in page.text, "the measures are rendered from Markdown"
    assert world["verified"].name in text_of(page.text, "invited")


def test_bad_input_is_shown_beside_its_field_with_the_input_kept_and_nothing_is_stored(
    client, session, world, staff, db
):
    missing = client.post(
        "/staff/consultations/new",
        data={"title": "", "question": QUESTION, "measures": MEASURES, "opens_at": "2030-01-15T14:30",
              "closes_at": "2030-02-01T17:00", "csrf_token": staff},
    )  # fmt: skip
    assert missing.status_code == 422
    html = missing.text
    assert re.search(r'id="consultation-title-error"[^>]*>This field is required.<', html)
    assert re.search(
        r'id="invited_ids-error"[^>]*>Invite at least one organisation, or open it to all verified partners.<', html
    )
    assert f">{QUESTION}</textarea>" in html, "the question typed is kept"
    assert 'name="opens_at" type="datetime-local" value="2030-01-15T14:30"' in html
    assert 'aria-invalid="true"' in html

    backwards = client.post(
        "/staff/consultations/new",
        data={"title": "План", "question": QUESTION, "measures": MEASURES, "opens_at": "2030-02-01T17:00",
              "closes_at": "2030-01-15T14:30", "invited_ids": str(world["verified"].id), "csrf_token": staff},
    )  # fmt: skip
    assert backwards.status_code == 422
    assert re.search(r'id="consultation-closes_at-error"[^>]*>It must close after it opens.<', backwards.text)
    assert re.search(rf'id="invite-{world["verified"].id}"\s+checked', backwards.text), "the invitation is kept"
    assert 'value="План"' in backwards.text

    not_a_time = client.post(
        "/staff/consultations/new",
        data={"title": "План", "question": QUESTION, "measures": MEASURES, "opens_at": "утре",
              "closes_at": "2030-01-15T14:30", "open_to_all": "on", "csrf_token": staff},
    )  # fmt: skip
    assert not_a_time.status_code == 422
    assert re.search(r'id="consultation-opens_at-error"[^>]*>Enter a date and time.<', not_a_time.text)
    assert re.search(r'id="consultation-open_to_all"\s+checked', not_a_time.text)
    assert db.count(Consultation) == 0
    assert db.count(Invitation) == 0


def test_a_draft_is_edited_opened_with_e_mails_and_closed_early(client, session, world, staff, db):
    coordinator = world["coordinator"]
    consultation = make_consultation(session, coordinator, [world["pending"]], state="draft")
    cid = consultation.id

    edit = client.get(f"/staff/consultations/{cid}/edit")
    assert edit.status_code == 200
    assert re.search(rf'id="invite-{world["pending"].id}"\s+checked', edit.text)
    saved = client.post(
        f"/staff/consultations/{cid}/edit",
        data={"title": "Мерки за подпомагане", "question": QUESTION, "measures": MEASURES,
              "opens_at": local_input_value(consultation.opens_at),
              "closes_at": local_input_value(consultation.closes_at),
              "invited_ids": str(world["verified"].id), "csrf_token": staff},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/staff/consultations/{cid}?done=saved"
    assert db.get(Consultation, cid).title == "Мерки за подпомагане"
    assert [i.organisation_id for i in db.all(select(Invitation))] == [world["verified"].id]

    opened = client.post(f"/staff/consultations/{cid}/open", data={"csrf_token": staff}, follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/staff/consultations/{cid}?done=opened"
    assert db.get(Consultation, cid).status == ConsultationStatus.open
    mail = db.one(select(OutboxMessage))
    assert mail.to_address == world["verified_user"].email, "only the invited organisation's user is told"
    assert f"/portal/consultations/{cid}" in mail.body

    # Once open, the text is what partners answer: the edit page leads back, the form changes nothing.
    assert client.get(f"/staff/consultations/{cid}/edit", follow_redirects=False).headers["location"] == (
        f"/staff/consultations/{cid}"
    )
    refused = client.post(
        f"/staff/consultations/{cid}/edit",
        data={"title": "Друго заглавие", "question": QUESTION, "measures": MEASURES,
              "opens_at": local_input_value(consultation.opens_at),
              "closes_at": local_input_value(consultation.closes_at),
              "invited_ids": str(world["verified"].id), "csrf_token": staff},
    )  # fmt: skip
    assert refused.status_code == 409
    assert "Only a draft consultation can be changed." in text_of(refused.text, "refusal")
    assert db.get(Consultation, cid).title == "Мерки за подпомагане"

    page = client.get(f"/staff/consultations/{cid}")
    assert 'id="close-consultation"' in page.text
    assert 'data-accepting="yes"' in page.text
    assert 'id="open-consultation"' not in page.text
    closed = client.post(f"/staff/consultations/{cid}/close", data={"csrf_token": staff}, follow_redirects=False)
    assert closed.status_code == 303
    stored = db.get(Consultation, cid)
    assert stored.status == ConsultationStatus.closed and stored.closed_at is not None
    again = client.post(f"/staff/consultations/{cid}/close", data={"csrf_token": staff})
    assert again.status_code == 409
    assert "Only an open consultation can be closed." in text_of(again.text, "refusal")


def test_opening_is_refused_when_the_closing_time_has_passed(client, session, world, staff, db):
    consultation = make_consultation(
        session, world["coordinator"], [world["verified"]], state="draft",
        opens_at=utcnow() - timedelta(days=2), closes_at=utcnow() - timedelta(days=1),
    )  # fmt: skip
    refused = client.post(f"/staff/consultations/{consultation.id}/open", data={"csrf_token": staff})
    assert refused.status_code == 422
    assert "Its closing time has already passed." in text_of(refused.text, "refusal")
    assert db.get(Consultation, consultation.id).status == ConsultationStatus.draft
    assert db.count(OutboxMessage) == 0


def test_the_list_filters_by_status(client, session, world, staff):
    coordinator = world["coordinator"]
    draft = make_consultation(session, coordinator, [world["verified"]], state="draft", title="Чернова на плана")
    running = make_consultation(session, coordinator, [world["verified"]], title="Текуща консултация")
    everything = client.get("/staff/consultations").text
    assert f'id="consultation-{draft.id}"' in everything and f'id="consultation-{running.id}"' in everything
    only_open = client.get("/staff/consultations?status=open").text
    assert f'id="consultation-{running.id}"' in only_open
    assert f'id="consultation-{draft.id}"' not in only_open
    assert re.search(r'<option value="open"\s+selected>', only_open)
    assert f'id="consultation-{draft.id}"' in client.get("/staff/consultations?status=bogus").text


# --- submissions side by side ----------------------------------------------------------------------------


def test_every_submission_is_shown_side_by_side_with_the_tally_and_the_attachment(client, session, world, staff):
    coordinator = world["coordinator"]
    third = make_partner(session, name="Браншова камара „Строител“")
    third_user = make_user(session, "partner", organisation=third)
    silent = make_partner(session, name="Читалище „Мълчание“")
    consultation = make_consultation(session, coordinator, [world["verified"], world["pending"], third, silent])
    first = submit(session, world["verified_user"], consultation, position="support", comments="Напълно подкрепяме.")
    second = submit(
        session, world["pending_user"], consultation, position="oppose", comments="Само за нас.", public=False
    )
    last = submit(session, third_user, consultation, position="support", comments="С уговорки.", public=True)
    last = submit(session, third_user, consultation, position="amend", comments="Предлагаме 400 €.", public=True)
    pdf = pdf_bytes("Становище на камарата")
    service.attach(
        session=session, actor=third_user, consultation=consultation, submission=last, filename="становище.pdf",
        data=pdf,
    )  # fmt: skip

    page = client.get(f"/staff/consultations/{consultation.id}")
    assert page.status_code == 200
    html = page.text
    rows = {
        s.id: re.search(rf'<tr id="submission-{s.id}"(.*?)</tr>', html, re.S).group(1) for s in (first, second, last)
    }
    assert world["verified"].name in rows[first.id] and 'data-position="support"' in rows[first.id]
    assert "Само за нас." in rows[second.id] and 'data-public="no"' in rows[second.id], "staff see private ones"
    assert 'data-position="amend"' in rows[last.id] and 'data-public="yes"' in rows[last.id]
    assert re.search(r'class="num revision">2<', rows[last.id])
    assert (text_of(html, "tally-support"), text_of(html, "tally-oppose"), text_of(html, "tally-amend")) == (
        "1", "1", "1",
    )  # fmt: skip
    assert text_of(html, "tally-none") == "1"
    assert silent.name in text_of(html, "silent")

    link = f"/staff/consultations/{consultation.id}/submissions/{last.id}/attachment"
    assert f'href="{link}"' in rows[last.id]
    download = client.get(link)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(pdf).hexdigest()
    assert client.get(f"/staff/consultations/{consultation.id}/submissions/{first.id}/attachment").status_code == 404
    other = make_consultation(session, coordinator, [third], title="Друга консултация")
    assert client.get(f"/staff/consultations/{other.id}/submissions/{last.id}/attachment").status_code == 404


# --- the decision ----------------------------------------------------------------------------------------


def test_the_decision_is_recorded_with_the_votes_replaced_until_published_and_published(
    client, session, world, staff, db
):
    coordinator, verified, pending = world["coordinator"], world["verified"], world["pending"]
    consultation = make_consultation(session, coordinator, [verified, pending])
    submit(session, world["verified_user"], consultation, position="support", public=True)
    cid = consultation.id
    open_page = client.get(f"/staff/consultations/{cid}").text
    assert 'id="decision-form"' not in open_page, "no decision while it is open"
    early = client.post(
        f"/staff/consultations/{cid}/decision",
        data={"text": "Приемат се мерките.", "decided_on": "2030-02-02", "csrf_token": staff},
    )
    assert early.status_code == 409
    assert "The decision is recorded after the consultation has closed." in text_of(early.text, "refusal")
    service.close(session=session, actor=coordinator, consultation=consultation)

    page = client.get(f"/staff/consultations/{cid}").text
    assert 'id="decision-form"' in page
    for org in (verified, pending):
        assert f'<select id="vote-{org.id}" name="vote.{org.id}"' in page
    recorded = client.post(
        f"/staff/consultations/{cid}/decision",
        data={"text": "Общинският съвет приема **мерките**.", "decided_on": "2030-02-02",
              f"vote.{verified.id}": "for", f"vote.{pending.id}": "abstain", "csrf_token": staff},
        follow_redirects=False,
    )  # fmt: skip
    assert recorded.status_code == 303, recorded.text
    assert recorded.headers["location"] == f"/staff/consultations/{cid}?done=recorded#decision"
    decision = db.one(select(Decision))
    assert (decision.decided_on, decision.published_at) == (date(2030, 2, 2), None)
    votes = {v.organisation_id: v.vote.value for v in db.all(select(DecisionVote))}
    assert votes == {verified.id: "for", pending.id: "abstain"}
    assert db.get(Consultation, cid).status == ConsultationStatus.decided

    page = client.get(f"/staff/consultations/{cid}").text
    assert re.search(r'id="decision-text">\s*<p>Общинският съвет приема <strong>мерките</strong>.</p>', page)
    assert (text_of(page, "votes-for"), text_of(page, "votes-against"), text_of(page, "votes-abstain")) == (
        "1", "0", "1",
    )  # fmt: skip
    assert re.search(r'<option value="abstain"\s+selected>', page), "the form shows the recorded votes"
    assert 'data-published="no"' in page

    # Recorded again before publishing: it replaces the first (a vote left blank is no vote).
    again = client.post(
        f"/staff/consultations/{cid}/decision",
        data={"text": "Общинският съвет приема мерките с поправки.", "decided_on": "2030-02-03",
              f"vote.{verified.id}": "against", f"vote.{pending.id}": "", "csrf_token": staff},
        follow_redirects=False,
    )  # fmt: skip
    assert again.status_code == 303
    assert db.one(select(Decision)).decided_on == date(2030, 2, 3)
    assert {v.organisation_id: v.vote.value for v in db.all(select(DecisionVote))} == {verified.id: "against"}

    published = client.post(
        f"/staff/consultations/{cid}/decision/publish", data={"csrf_token": staff}, follow_redirects=False
    )
    assert published.status_code == 303
    assert published.headers["location"] == f"/staff/consultations/{cid}?done=published#decision"
    assert db.one(select(Decision)).published_at is not None
    page = client.get(f"/staff/consultations/{cid}").text
    assert 'data-published="yes"' in page
    assert 'id="decision-form"' not in page and 'id="publish-decision"' not in page
    twice = client.post(f"/staff/consultations/{cid}/decision/publish", data={"csrf_token": staff})
    assert twice.status_code == 409
    assert "The decision is already published." in text_of(twice.text, "refusal")
    late = client.post(
        f"/staff/consultations/{cid}/decision",
        data={"text": "Друго решение.", "decided_on": "2030-02-04", "csrf_token": staff},
    )
    assert late.status_code == 409
    assert "The decision is already published." in text_of(late.text, "refusal")
    assert db.one(select(Decision)).text == "Общинският съвет приема мерките с поправки."


def test_a_wrong_decision_form_is_shown_again_with_its_errors_and_nothing_is_stored(client, session, world, staff, db):
    coordinator, verified = world["coordinator"], world["verified"]
    consultation = make_consultation(session, coordinator, [verified], state="closed")
    outsider = make_partner(session, name="Неканена организация")
    cid = consultation.id

    wrong = client.post(
        f"/staff/consultations/{cid}/decision",
        data={"text": "", "decided_on": "32.13.2030", f"vote.{verified.id}": "maybe", "csrf_token": staff},
    )
    assert wrong.status_code == 422
    html = wrong.text
    assert re.search(r'id="decision-text-error"[^>]*>This field is required.<', html)
    assert re.search(r'id="decision-decided_on-error"[^>]*>Enter a date.<', html)
    assert re.search(rf'id="vote-{verified.id}-error"[^>]*>Choose one of the options.<', html)
    assert 'value="32.13.2030"' in html, "the date typed is kept"

    # A vote for an organisation that was not invited (a hand-made form) is refused by the rules.
    tampered = client.post(
        f"/staff/consultations/{cid}/decision",
        data={"text": "Приемат се мерките.", "decided_on": "2030-02-02", f"vote.{verified.id}": "for",
              f"vote.{outsider.id}": "for", "csrf_token": staff},
    )  # fmt: skip
    assert tampered.status_code == 422
    assert "Only organisations that were invited may vote." in tampered.text
    assert ">Приемат се мерките.</textarea>" in tampered.text
    assert re.search(rf'<select id="vote-{verified.id}"[^>]*>.*?<option value="for"\s+selected>', tampered.text, re.S)
    assert db.count(Decision) == 0 and db.count(DecisionVote) == 0
    assert db.get(Consultation, cid).status == ConsultationStatus.closed


# --- who may come in -------------------------------------------------------------------------------------


def test_only_coordinators_and_admins_reach_the_staff_pages(client, session, world, db):
    consultation = make_consultation(session, world["coordinator"], [world["verified"]])
    cid = consultation.id
    submission = submit(session, world["verified_user"], consultation, position="support")
    pages = [
        "/staff/consultations", "/staff/consultations/new", f"/staff/consultations/{cid}",
        f"/staff/consultations/{cid}/edit", f"/staff/consultations/{cid}/submissions/{submission.id}/attachment",
    ]  # fmt: skip
    assert client.get(pages[0], follow_redirects=False).headers["location"].startswith("/login")

    for user in (make_user(session, "communications", language="en"), world["verified_user"]):
        token = log_in(client, user)
        for url in pages:
            assert client.get(url).status_code == 403, (user.roles, url)
        for action in ("open", "close", "decision", "decision/publish"):
            assert client.post(f"/staff/consultations/{cid}/{action}", data={"csrf_token": token}).status_code == 403
        client.post("/logout", data={"csrf_token": token})
    assert db.get(Consultation, cid).status == ConsultationStatus.open

    log_in(client, make_user(session, "admin", language="en"))
    assert client.get(f"/staff/consultations/{cid}").status_code == 200


def test_a_form_without_the_sites_token_is_refused(client, session, world, staff, db):
    consultation = make_consultation(session, world["coordinator"], [world["verified"]])
    form = {"title": "План", "question": QUESTION, "measures": MEASURES, "opens_at": "2030-01-15T14:30",
            "closes_at": "2030-02-01T17:00", "open_to_all": "on"}  # fmt: skip
    for token in (None, "not-the-token"):
        data = form if token is None else {**form, "csrf_token": token}
        refused = client.post("/staff/consultations/new", data=data)
        assert refused.status_code == 403
        assert "The form has expired or did not come from this site." in refused.text
        closing = client.post(f"/staff/consultations/{consultation.id}/close", data={} if token is None else
                              {"csrf_token": token})  # fmt: skip
        assert closing.status_code == 403
    assert db.count(Consultation) == 1
    assert db.get(Consultation, consultation.id).status == ConsultationStatus.open
