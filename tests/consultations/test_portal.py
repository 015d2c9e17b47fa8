"""The partner portal's consultations: which ones an organisation sees, sending and revising its position with
a PDF, refused files and late submissions shown on the page, the published decision, and who may come in.
Messages are checked in English (the catalogue changes on its own)."""

import hashlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service.config import settings
from service.consultations import service
from service.consultations.models import Consultation, DecisionCreate, Submission, VoteIn
from service.db import utcnow, write_engine
from service.partners import service as partners
from tests.consultations.test_pages import (
    MEASURES,
    QUESTION,
    Stored,
    log_in,
    make_consultation,
    pdf_bytes,
    submit,
    text_of,
)
from tests.factories import make_partner, make_user


@pytest.fixture
def db(engine) -> Stored:
    return Stored(engine)


@pytest.fixture(autouse=True)
def attachments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Attached PDFs go to this test's own folder."""
    folder = tmp_path / "attachments"
    monkeypatch.setattr(settings, "attachments_dir", folder)
    return folder


def stored_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def world(session: Session) -> dict:
    coordinator = make_user(session, "coordinator", language="en")
    org = make_partner(session, name="Сдружение „Читалище Светлина“")
    partners.verify(session=session, actor=coordinator, org=org)
    other = make_partner(session, name="Браншова камара „Строител“")
    return {
        "coordinator": coordinator,
        "org": org,
        "partner": make_user(session, "partner", organisation=org, language="en"),
        "other": other,
        "other_partner": make_user(session, "partner", organisation=other),
    }


@pytest.fixture
def partner(client, world) -> str:
    return log_in(client, world["partner"])


def ids_in(html: str, section_id: str) -> list[int]:
    start = html.index(f'id="{section_id}"')
    end = html.index("</section>", start)
    return [int(n) for n in re.findall(r'<tr id="consultation-(\d+)"', html[start:end])]


def send(client, consultation_id: int, token: str, *, file: tuple[str, bytes, str] | None = None, **fields):
    """The position form as a browser sends it: multipart, with an empty file part when no file is chosen."""
    data = {"csrf_token": token, **fields}
    files = {"file": file or ("", b"", "application/octet-stream")}
    return client.post(
        f"/portal/consultations/{consultation_id}/submission", data=data, files=files, follow_redirects=False
    )


# --- which consultations -------------------------------------------------------------------------------


def test_the_list_shows_the_organisations_consultations_open_first(client, session, world, partner):
    coordinator, org = world["coordinator"], world["org"]
    later = make_consultation(session, coordinator, [org], title="Затваря се по-късно",
                              closes_at=utcnow() + timedelta(days=5))  # fmt: skip
    sooner = make_consultation(session, coordinator, [org], title="Затваря се скоро")
    closed = make_consultation(session, coordinator, [org], state="closed", title="Вече затворена")
    to_all = make_consultation(session, coordinator, [], open_to_all=True, title="За всички проверени")
    not_invited = make_consultation(session, coordinator, [world["other"]], title="Не е за нас")
    draft = make_consultation(session, coordinator, [org], state="draft", title="Още е чернова")
    submit(session, world["partner"], sooner, position="amend")

    page = client.get("/portal/consultations")
    assert page.status_code == 200
    html = page.text
    assert ids_in(html, "open-consultations") == [sooner.id, to_all.id, later.id]  # the soonest to close first
    assert ids_in(html, "ended-consultations") == [closed.id]
    assert not_invited.title not in html and draft.title not in html
    sooner_row = re.search(rf'<tr id="consultation-{sooner.id}">(.*?)</tr>', html, re.S).group(1)
    assert 'data-position="amend"' in sooner_row
    assert 'href="/portal/consultations"' in html, "the header links the page"


def test_the_page_shows_the_question_and_the_measures_as_safe_markdown(client, session, world, partner):
    measures = MEASURES + '\n\n<script>alert("x")</script><a href="javascript:alert(1)">връзка</a>'
    consultation = make_consultation(session, world["coordinator"], [world["org"]], measures=measures)
    page = client.get(f"/portal/consultations/{consultation.id}")
    assert page.status_code == 200
    html = page.text
    assert QUESTION in text_of(html, "question")
    assert "<strong>300 €</strong>" in html
    assert "<script>alert" not in html and "javascript:" not in html
    assert 'id="submission-form"' in html and 'enctype="multipart/form-data"' in html
    assert 'id="no-position"' in html


# --- sending and revising --------------------------------------------------------------------------------


def test_a_position_is_sent_then_revised_with_a_pdf_and_the_own_attachment_downloads(
    client, session, world, partner, db, attachments
):
    consultation = make_consultation(session, world["coordinator"], [world["org"]])
    cid = consultation.id
    sent = send(client, cid, partner, position="support", comments="Подкрепяме мерките.", public="on")
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == f"/portal/consultations/{cid}?done=submitted#own-submission"
    first = db.one(select(Submission))
    assert (first.organisation_id, first.position.value, first.comments, first.public, first.revision) == (
        world["org"].id, "support", "Подкрепяме мерките.", True, 1,
    )  # fmt: skip
    assert first.attachment_sha256 is None
    page = client.get(sent.headers["location"]).text
    assert 'id="done-notice"' in page
    assert 'data-position="support"' in page and 'data-revision="1"' in page
    assert re.search(r'id="position-support"\s+required\s+checked', page), "the form starts from the position sent"

    pdf = pdf_bytes("Становище с предложения")
    revised = send(
        client, cid, partner, position="amend", comments="Предлагаме 400 €.",
        file=("становище.pdf", pdf, "application/pdf"),
    )  # fmt: skip
    assert revised.status_code == 303, revised.text
    assert revised.headers["location"] == f"/portal/consultations/{cid}?done=revised#own-submission"
    second = db.one(select(Submission))
    assert (second.id, second.position.value, second.public, second.revision) == (first.id, "amend", False, 2)
    assert second.attachment_sha256 == hashlib.sha256(pdf).hexdigest()
    assert second.attachment_name == "становище.pdf" and second.attachment_size == len(pdf)
    assert len(stored_files(attachments)) == 1

    page = client.get(f"/portal/consultations/{cid}").text
    link = f"/portal/consultations/{cid}/submissions/{second.id}/attachment"
    assert f'href="{link}"' in page
    download = client.get(link)
    assert download.status_code == 200 and download.content == pdf
    assert download.headers["content-type"] == "application/pdf"

    # Revised again without a file: the one attached stays.
    kept = send(client, cid, partner, position="amend", comments="Предлагаме 450 €.")
    assert kept.status_code == 303
    third = db.one(select(Submission))
    assert (third.revision, third.attachment_sha256) == (3, second.attachment_sha256)


def test_a_file_that_is_not_a_pdf_or_too_large_is_refused_beside_the_file_field_and_nothing_is_stored(
    client, session, world, partner, db, attachments, monkeypatch
):
    consultation = make_consultation(session, world["coordinator"], [world["org"]])
    cid = consultation.id
    fake = send(
        client, cid, partner, position="oppose", comments="Не подкрепяме.", public="on",
        file=("становище.pdf", b"%PDF-1.7 but not really a PDF", "application/pdf"),
    )  # fmt: skip
    assert fake.status_code == 422
    html = fake.text
    assert re.search(r'id="submission-file-error"[^>]*>Only PDF files can be attached.<', html)
    assert re.search(r'id="position-oppose"\s+required\s+checked', html), "the position chosen is kept"
    assert ">Не подкрепяме.</textarea>" in html
    assert re.search(r'id="submission-public"\s+checked', html)
    assert db.count(Submission) == 0, "the position is not saved either: the form is sent again whole"
    assert stored_files(attachments) == []

    monkeypatch.setattr(settings, "attachment_max_mb", 0.001)  # about 1 KB
    large = send(
        client, cid, partner, position="oppose", comments="Не подкрепяме.",
        file=("приложение.pdf", pdf_bytes("x" * 2000), "application/pdf"),
    )  # fmt: skip
    assert large.status_code == 422
    assert re.search(r'id="submission-file-error"[^>]*>The file is larger than 0.001 MB.<', large.text)
    assert db.count(Submission) == 0
    assert stored_files(attachments) == []

    no_position = send(client, cid, partner, comments="Забравихме позицията.")
    assert no_position.status_code == 422
    assert re.search(r'id="position-error"[^>]*>This field is required.<', no_position.text)
    assert ">Забравихме позицията.</textarea>" in no_position.text
    assert db.count(Submission) == 0


def test_after_closing_the_form_is_gone_and_a_late_submission_is_refused_with_a_clear_message(
    client, session, world, partner, db, engine
):
    coordinator = world["coordinator"]
    consultation = make_consultation(session, coordinator, [world["org"]])
    cid = consultation.id
    submit(session, world["partner"], consultation, position="support", comments="Първа версия.")
    service.close(session=session, actor=coordinator, consultation=consultation)

    page = client.get(f"/portal/consultations/{cid}").text
    assert 'id="submission-form"' not in page
    assert "The consultation is closed: submissions are no longer accepted." in text_of(page, "closed-notice")
    assert "Първа версия." in page, "the position sent is still shown"

    late = send(client, cid, partner, position="oppose", comments="Късно.")
    assert late.status_code == 409
    assert "The consultation is closed: submissions are no longer accepted." in text_of(late.text, "refusal")
    assert 'id="submission-form"' not in late.text
    (stored,) = db.all(select(Submission))
    assert (stored.position.value, stored.comments, stored.revision) == ("support", "Първа версия.", 1)

    # Past its closing time, before the job has closed it: refused all the same.
    overdue = make_consultation(session, coordinator, [world["org"]], title="Просрочена")
    with Session(write_engine(engine)) as s:
        s.execute(
            sa.update(Consultation)
            .where(Consultation.id == overdue.id)
            .values(closes_at=utcnow() - timedelta(minutes=1))
        )
        s.commit()
    assert 'id="submission-form"' not in client.get(f"/portal/consultations/{overdue.id}").text
    refused = send(client, overdue.id, partner, position="oppose")
    assert refused.status_code == 409
    assert "submissions are no longer accepted" in text_of(refused.text, "refusal")
    assert db.count(Submission) == 1


def test_a_consultation_not_yet_open_says_when_it_opens(client, session, world, partner, db):
    consultation = make_consultation(
        session, world["coordinator"], [world["org"]], opens_at=utcnow() + timedelta(days=1),
        closes_at=utcnow() + timedelta(days=3),
    )  # fmt: skip
    page = client.get(f"/portal/consultations/{consultation.id}").text
    assert 'id="submission-form"' not in page and 'id="not-yet-open"' in page
    listed = client.get("/portal/consultations").text
    row = re.search(rf'<tr id="consultation-{consultation.id}">(.*?)</tr>', listed, re.S).group(1)
    assert 'class="not-accepting"' in row
    early = send(client, consultation.id, partner, position="support")
    assert early.status_code == 409
    assert "The consultation opens for submissions on" in text_of(early.text, "refusal")
    assert db.count(Submission) == 0


# --- what a partner never sees ---------------------------------------------------------------------------


def test_a_partner_sees_only_its_own_submission_and_only_consultations_it_may_take_part_in(
    client, session, world, partner, db
):
    coordinator, other_partner = world["coordinator"], world["other_partner"]
    shared = make_consultation(session, coordinator, [world["org"], world["other"]])
    theirs = submit(session, other_partner, shared, position="oppose", comments="Поверително мнение.", public=True)
    service.attach(
        session=session, actor=other_partner, consultation=shared, submission=theirs, filename="тайно.pdf",
        data=pdf_bytes("Чуждо"),
    )  # fmt: skip
    page = client.get(f"/portal/consultations/{shared.id}").text
    assert "Поверително мнение." not in page and "тайно.pdf" not in page
    assert client.get(f"/portal/consultations/{shared.id}/submissions/{theirs.id}/attachment").status_code == 404

    not_invited = make_consultation(session, coordinator, [world["other"]], title="Не е за нас")
    draft = make_consultation(session, coordinator, [world["org"]], state="draft", title="Чернова")
    for consultation in (not_invited, draft):
        assert client.get(f"/portal/consultations/{consultation.id}").status_code == 404
        assert send(client, consultation.id, partner, position="support").status_code == 404
    assert client.get("/portal/consultations/999999").status_code == 404
    assert [s.id for s in db.all(select(Submission))] == [theirs.id]


def test_the_published_decision_is_shown_with_the_votes_and_an_unpublished_one_is_not(client, session, world, partner):
    coordinator, org, other = world["coordinator"], world["org"], world["other"]
    consultation = make_consultation(session, coordinator, [org, other], state="closed")
    service.record_decision(
        session=session, actor=coordinator, consultation=consultation,
        data=DecisionCreate(text="Приемат се **мерките** с поправка.", decided_on=utcnow().date(),
                            votes=[VoteIn(organisation_id=org.id, vote="for"),
                                   VoteIn(organisation_id=other.id, vote="against")]),
    )  # fmt: skip
    unpublished = client.get(f"/portal/consultations/{consultation.id}").text
    assert 'id="decision"' not in unpublished and "мерките" not in unpublished.split('id="measures"')[0]
    assert 'id="closed-notice"' in unpublished

    service.publish_decision(session=session, actor=coordinator, consultation=consultation)
    page = client.get(f"/portal/consultations/{consultation.id}").text
    assert "<strong>мерките</strong> с поправка." in page
    own = re.search(rf'<tr id="vote-row-{org.id}">(.*?)</tr>', page, re.S).group(1)
    theirs = re.search(rf'<tr id="vote-row-{other.id}">(.*?)</tr>', page, re.S).group(1)
    assert org.name in own and 'data-vote="for"' in own
    assert other.name in theirs and 'data-vote="against"' in theirs
    assert (text_of(page, "votes-for"), text_of(page, "votes-against"), text_of(page, "votes-abstain")) == (
        "1", "1", "0",
    )  # fmt: skip


# --- who may come in -------------------------------------------------------------------------------------


def test_the_portal_is_for_partner_users_only_and_forms_need_the_sites_token(client, session, world, db):
    consultation = make_consultation(session, world["coordinator"], [world["org"]])
    log_in(client, world["coordinator"])
    assert client.get("/portal/consultations").status_code == 403
    assert client.get(f"/portal/consultations/{consultation.id}").status_code == 403

    client.cookies.clear()
    assert client.get("/portal/consultations", follow_redirects=False).headers["location"].startswith("/login")
    token = log_in(client, world["partner"])
    for bad in ("", "not-the-token"):
        refused = send(client, consultation.id, bad, position="support")
        assert refused.status_code == 403
        assert "The form has expired or did not come from this site." in refused.text
    assert db.count(Submission) == 0
    assert send(client, consultation.id, token, position="support").status_code == 303
