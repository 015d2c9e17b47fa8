"""The staff's pages of public updates and the rumour log, driven through their forms over real HTTP.

Officers read English (their own language) so that the assertions can name the messages; what the public
sees is read from the public pages themselves.
"""

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.bulletins import service
from service.bulletins.models import (
    Bulletin,
    BulletinCategory,
    BulletinCreate,
    BulletinRevision,
    BulletinStatus,
    Rumour,
    RumourCreate,
    RumourStatus,
    Verdict,
    VerdictBody,
)
from service.emergencies import service as emergencies
from service.emergencies.models import EmergencyCreate
from service.i18n import local_input_value, parse_local_datetime
from tests.factories import make_partner, make_user, page_login

POLYGON = "43.85,25.95 43.86,25.97 43.84,25.98 43.85,25.95"


@pytest.fixture
def db(engine):
    """Reads what the app wrote, each time in a short session of its own (the `session` fixture is a writer,
    and a read through it would hold SQLite's write lock while the app waits for it)."""

    class Reader:
        def get(self, model, id_):
            with Session(engine) as s:
                return s.get(model, id_)

        def all(self, query) -> list:
            with Session(engine) as s:
                return list(s.exec(query))

    return Reader()


@pytest.fixture
def officers(client, session):
    """Two communications officers, each logged in with a browser of their own: (user, client, csrf token)."""
    first, second = (make_user(session, "communications", language="en") for _ in range(2))
    other = TestClient(client.app)
    return (first, client, page_login(client, first)), (second, other, page_login(other, second))


def draft_form(token: str, **overrides) -> dict[str, str]:
    return {
        "title": "Спиране на водата в кв. „Изток“",
        "body": "Водата е спряна до **18:00** заради авария.\n\n- Цистерна на площада\n- Бутилирана вода в училището",
        "language": "bg", "emergency_id": "", "category": "service_status", "urgency": "Expected",
        "severity": "Moderate", "certainty": "Observed", "cap_category": "Infra", "response_type": "Prepare",
        "area_desc": "кв. „Изток“", "polygon": POLYGON, "effective": "2030-01-15T14:30",
        "expires": "2030-01-16T08:00", "instruction": "Налейте вода за пиене.", "publish_at": "",
        "csrf_token": token, **overrides,
    }  # fmt: skip


def make_bulletin(session: Session, author, **overrides) -> Bulletin:
    fields = {"title": "Затворен мост на р. Лом", "body": "Мостът е затворен до второ нареждане.",
              "area_desc": "р. Лом", "instruction": "Ползвайте обходния път.", **overrides}  # fmt: skip
    return service.create(session=session, actor=author, data=BulletinCreate(**fields))


def published(session: Session, author, approver, **overrides) -> Bulletin:
    bulletin = make_bulletin(session, author, **overrides)
    service.submit(session=session, actor=author, bulletin=bulletin)
    return service.approve(session=session, actor=approver, bulletin=bulletin)


def status_on(html: str) -> str:
    return re.search(r'id="bulletin-status" data-status="([a-z_]+)"', html).group(1)


def error_beside(html: str, field_id: str) -> str:
    """The message shown right under a field (its id is `<form prefix>-<name>`)."""
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', html)
    assert match, f"no message beside {field_id}"
    assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"', html, re.S), f"{field_id} is not marked invalid"
    return match.group(1)


def field_value(html: str, field_id: str) -> str:
    """What an input or a textarea holds (as the browser would show it, entities still escaped)."""
    textarea = re.search(rf'<textarea id="{field_id}"[^>]*>(.*?)</textarea>', html, re.S)
    if textarea:
        return textarea.group(1)
    return re.search(rf'<input id="{field_id}"[^>]*value="([^"]*)"', html, re.S).group(1)


# --- the whole flow --------------------------------------------------------------------------------


def test_an_update_is_drafted_submitted_and_approved_by_a_second_officer_through_the_forms(
    client, session, officers, db
):
    """The form takes every field (times in local time), the author submits, another officer approves, and
    the public home then lists the update while the staff page links its public page."""
    (author, mine, token), (reviewer, theirs, their_token) = officers
    coordinator = make_user(session, "coordinator")
    flood = emergencies.declare(
        session=session, actor=coordinator,
        data=EmergencyCreate(title="Наводнение в кв. „Изток“", kind="flood", area="кв. „Изток“", severity="severe"),
    )  # fmt: skip

    form = mine.get("/staff/bulletins/new")
    assert form.status_code == 200
    for name in ("title", "body", "language", "emergency_id", "category", "urgency", "severity", "certainty",
                 "cap_category", "response_type", "area_desc", "polygon", "effective", "expires", "instruction",
                 "publish_at"):  # fmt: skip
        assert f'name="{name}"' in form.text, name
    assert f'<option value="{flood.id}"' in form.text, "the emergencies are offered"
    assert "Expected: act within the next hour" in form.text, "selects show the translated labels"

    created = mine.post(
        "/staff/bulletins/new", data=draft_form(token, emergency_id=str(flood.id)), follow_redirects=False
    )
    assert created.status_code == 303, created.text
    (bulletin,) = db.all(select(Bulletin))
    assert created.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=created"
    assert (bulletin.status, bulletin.created_by_id, bulletin.emergency_id) == ("draft", author.id, flood.id)
    assert bulletin.effective == parse_local_datetime("2030-01-15T14:30")
    assert bulletin.expires == parse_local_datetime("2030-01-16T08:00")
    assert (bulletin.polygon, bulletin.publish_at, bulletin.urgency) == (POLYGON, None, "Expected")

    page = mine.get(created.headers["location"])
    assert status_on(page.text) == "draft"
    assert "<strong>18:00</strong>" in page.text, "the body is rendered from Markdown"
    assert f'action="/staff/bulletins/{bulletin.id}/submit"' in page.text
    assert 'id="public-link"' not in page.text, "a draft has no public page"

    submitted = mine.post(f"/staff/bulletins/{bulletin.id}/submit", data={"csrf_token": token}, follow_redirects=False)
    assert submitted.status_code == 303
    assert submitted.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=submitted"
    own = mine.get(submitted.headers["location"])
    assert status_on(own.text) == "in_review"
    assert 'id="approve-own"' in own.text and f'action="/staff/bulletins/{bulletin.id}/approve"' not in own.text
    assert "Public updates" in mine.get("/staff").text and 'href="/staff/rumours"' in mine.get("/staff").text

    waiting = theirs.get("/staff/bulletins?status=in_review")
    assert f'href="/staff/bulletins/{bulletin.id}"' in waiting.text
    review = theirs.get(f"/staff/bulletins/{bulletin.id}")
    assert f'action="/staff/bulletins/{bulletin.id}/approve"' in review.text
    approved = theirs.post(
        f"/staff/bulletins/{bulletin.id}/approve", data={"publish_at": "", "csrf_token": their_token},
        follow_redirects=False,
    )  # fmt: skip
    assert approved.status_code == 303, approved.text
    assert approved.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=published"
    stored = db.get(Bulletin, bulletin.id)
    assert (stored.status, stored.approved_by_id, stored.revision) == ("published", reviewer.id, 1)

    shown = theirs.get(approved.headers["location"])
    assert status_on(shown.text) == "published"
    assert 'id="public-link">' in shown.text and f'href="/updates/{bulletin.id}"' in shown.text
    public = TestClient(client.app).get("/")
    assert public.status_code == 200
    assert f'href="/updates/{bulletin.id}"' in public.text
    assert "Спиране на водата в кв. „Изток“" in public.text
    assert TestClient(client.app).get(f"/updates/{bulletin.id}").status_code == 200


def test_an_approval_for_later_schedules_the_update(session, officers, db):
    """A publish-at time on the approval form schedules the update instead of publishing it."""
    (author, _mine, _token), (_reviewer, theirs, token) = officers
    bulletin = make_bulletin(session, author)
    service.submit(session=session, actor=author, bulletin=bulletin)
    approved = theirs.post(
        f"/staff/bulletins/{bulletin.id}/approve", data={"publish_at": "2031-03-01T09:00", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert approved.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=scheduled"
    stored = db.get(Bulletin, bulletin.id)
    assert (stored.status, stored.publish_at) == ("scheduled", parse_local_datetime("2031-03-01T09:00"))
    assert 'id="scheduled-notice"' in theirs.get(approved.headers["location"]).text

    past = make_bulletin(session, author)
    service.submit(session=session, actor=author, bulletin=past)
    refused = theirs.post(
        f"/staff/bulletins/{past.id}/approve", data={"publish_at": "2020-01-01T09:00", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert error_beside(refused.text, "approve-publish_at") == "This time has already passed."
    assert field_value(refused.text, "approve-publish_at") == "2020-01-01T09:00"
    assert db.get(Bulletin, past.id).status == "in_review"


def test_the_author_approving_their_own_update_is_refused_on_the_page(session, officers, db):
    """Four eyes: the server refuses the author's approval, and the update's page says why."""
    (author, mine, token), _ = officers
    bulletin = make_bulletin(session, author)
    service.submit(session=session, actor=author, bulletin=bulletin)

    refused = mine.post(f"/staff/bulletins/{bulletin.id}/approve", data={"csrf_token": token})
    assert refused.status_code == 403
    assert status_on(refused.text) == "in_review", "the update's own page, not a bare error page"
    message = "Another communications officer must approve what you wrote."
    assert re.search(rf'id="refusal"[^>]*><p>{message}</p>', refused.text)
    stored = db.get(Bulletin, bulletin.id)
    assert (stored.status, stored.approved_by_id, stored.published_at) == ("in_review", None, None)


# --- bad input -------------------------------------------------------------------------------------


def test_a_bad_form_is_shown_again_with_the_input_kept_and_each_message_beside_its_field(session, officers, db):
    (author, mine, token), _ = officers
    bad = mine.post("/staff/bulletins/new", data=draft_form(token, title="  ", polygon="43.85,25.95 43.86,25.97"))
    assert bad.status_code == 422
    assert error_beside(bad.text, "bulletin-title") == "This field is required."
    assert error_beside(bad.text, "bulletin-polygon") == (
        "A polygon needs at least four points, the last the same as the first."
    )
    assert 'id="form-errors"' in bad.text
    assert field_value(bad.text, "bulletin-polygon") == "43.85,25.95 43.86,25.97"
    assert field_value(bad.text, "bulletin-area_desc") == "кв. „Изток“"
    assert "**18:00**" in field_value(bad.text, "bulletin-body")
    assert field_value(bad.text, "bulletin-effective") == "2030-01-15T14:30"
    assert re.search(r'<option value="Infra"\s+selected>', bad.text), "the chosen CAP category is kept"

    unclosed = mine.post("/staff/bulletins/new", data=draft_form(token, polygon="43.85,25.95 43.86,25.97 1,1 2,2"))
    assert error_beside(unclosed.text, "bulletin-polygon") == (
        "The polygon must be closed: its last point is the same as its first."
    )
    not_a_time = mine.post("/staff/bulletins/new", data=draft_form(token, effective="tomorrow"))
    assert error_beside(not_a_time.text, "bulletin-effective") == "Enter a date and time."

    backwards = mine.post(
        "/staff/bulletins/new", data=draft_form(token, effective="2030-01-16T08:00", expires="2030-01-15T14:30")
    )
    assert backwards.status_code == 422
    assert error_beside(backwards.text, "bulletin-expires") == "It must expire after it takes effect."
    assert field_value(backwards.text, "bulletin-expires") == "2030-01-15T14:30"
    assert field_value(backwards.text, "bulletin-title") == "Спиране на водата в кв. „Изток“"
    assert db.all(select(Bulletin)) == [], "nothing is saved"

    # The edit form refuses the same way and leaves the draft as it was.
    bulletin = make_bulletin(session, author, polygon=POLYGON)
    edit = mine.get(f"/staff/bulletins/{bulletin.id}/edit")
    assert field_value(edit.text, "bulletin-polygon") == POLYGON
    assert field_value(edit.text, "bulletin-title") == "Затворен мост на р. Лом"
    refused = mine.post(
        f"/staff/bulletins/{bulletin.id}/edit",
        data=draft_form(token, effective="2030-01-16T08:00", expires="2030-01-15T14:30"),
    )
    assert refused.status_code == 422
    assert error_beside(refused.text, "bulletin-expires") == "It must expire after it takes effect."
    assert db.get(Bulletin, bulletin.id).title == "Затворен мост на р. Лом"
    saved = mine.post(
        f"/staff/bulletins/{bulletin.id}/edit", data=draft_form(token, polygon="", expires=""), follow_redirects=False
    )
    assert saved.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=saved"
    stored = db.get(Bulletin, bulletin.id)
    assert (stored.title, stored.polygon, stored.expires) == ("Спиране на водата в кв. „Изток“", None, None)


def test_a_form_without_the_csrf_token_is_refused(session, officers, db):
    (author, mine, _token), _ = officers
    assert mine.post("/staff/bulletins/new", data=draft_form("")).status_code == 403
    assert mine.post("/staff/bulletins/new", data=draft_form("forged")).status_code == 403
    bulletin = make_bulletin(session, author)
    assert mine.post(f"/staff/bulletins/{bulletin.id}/submit", data={}).status_code == 403
    rumour = {"wording": "Язовирът ще прелее", "channel": "Facebook"}
    assert mine.post("/staff/rumours/new", data=rumour).status_code == 403
    assert [b.id for b in db.all(select(Bulletin))] == [bulletin.id]
    assert db.get(Bulletin, bulletin.id).status == "draft"
    assert db.all(select(Rumour)) == []


def test_only_communications_officers_and_admins_reach_the_pages(client, session, officers):
    (author, _mine, _token), _ = officers
    bulletin = make_bulletin(session, author)
    rumour = service.log_rumour(
        session=session, actor=author, data=RumourCreate(wording="Язовирът ще прелее довечера", channel="Facebook")
    )
    reads = ["/staff/bulletins", "/staff/bulletins/new", f"/staff/bulletins/{bulletin.id}",
             f"/staff/bulletins/{bulletin.id}/edit", "/staff/rumours", "/staff/rumours/new",
             f"/staff/rumours/{rumour.id}"]  # fmt: skip

    anonymous = TestClient(client.app)
    for path in reads:
        answer = anonymous.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next="), path

    for role, organisation in (("coordinator", None), ("partner", make_partner(session))):
        other = TestClient(client.app)
        token = page_login(other, make_user(session, role, organisation=organisation))
        for path in reads:
            assert other.get(path).status_code == 403, (role, path)
        for action in ("submit", "approve", "delete", "retract", "send-back"):
            form = {"csrf_token": token, "reason": "abc"}
            refused = other.post(f"/staff/bulletins/{bulletin.id}/{action}", data=form)
            assert refused.status_code == 403, (role, action)
        assert other.post("/staff/bulletins/new", data=draft_form(token)).status_code == 403
        assert other.post(f"/staff/rumours/{rumour.id}/fact-check", data={"csrf_token": token}).status_code == 403
        assert 'href="/staff/bulletins"' not in other.get("/staff").text

    admin = TestClient(client.app)
    page_login(admin, make_user(session, "admin"))
    for path in reads:
        assert admin.get(path).status_code == 200, path
    assert 'href="/staff/bulletins"' in admin.get("/staff").text, "the navigation links the updates"
    assert admin.get("/staff/bulletins/999999").status_code == 404
    assert admin.get("/staff/rumours/999999").status_code == 404


# --- the list, sending back, deleting --------------------------------------------------------------


def test_the_list_filters_by_status_and_language(session, officers):
    (author, mine, _token), (reviewer, _theirs, _t) = officers
    draft = make_bulletin(session, author, title="Чернова на български")
    english = make_bulletin(session, author, title="Bridge closed on the Lom", language="en")
    live = published(session, author, reviewer, title="Публикувано съобщение")

    everything = mine.get("/staff/bulletins").text
    assert all(f'id="bulletin-{b.id}"' in everything for b in (draft, english, live))
    drafts = mine.get("/staff/bulletins?status=draft").text
    assert f'id="bulletin-{draft.id}"' in drafts and f'id="bulletin-{live.id}"' not in drafts
    in_english = mine.get("/staff/bulletins?language=en").text
    assert f'id="bulletin-{english.id}"' in in_english and f'id="bulletin-{draft.id}"' not in in_english
    ignored = mine.get("/staff/bulletins?status=bogus&language=xx")
    assert ignored.status_code == 200 and f'id="bulletin-{live.id}"' in ignored.text


def test_a_reviewer_sends_an_update_back_and_the_author_deletes_the_draft(session, officers, db):
    (author, mine, token), (_reviewer, theirs, their_token) = officers
    bulletin = make_bulletin(session, author)
    service.submit(session=session, actor=author, bulletin=bulletin)

    no_reason = theirs.post(f"/staff/bulletins/{bulletin.id}/send-back", data={"csrf_token": their_token})
    assert no_reason.status_code == 422
    assert error_beside(no_reason.text, "send-back-reason") == "This field is required."
    sent = theirs.post(
        f"/staff/bulletins/{bulletin.id}/send-back", data={"reason": "Добавете часа на отваряне.",
        "csrf_token": their_token}, follow_redirects=False,
    )  # fmt: skip
    assert sent.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=sent_back"
    page = mine.get(f"/staff/bulletins/{bulletin.id}")
    assert status_on(page.text) == "draft"
    assert 'id="review-note"' in page.text and "Добавете часа на отваряне." in page.text

    deleted = mine.post(f"/staff/bulletins/{bulletin.id}/delete", data={"csrf_token": token}, follow_redirects=False)
    assert deleted.headers["location"] == "/staff/bulletins?done=deleted"
    assert db.get(Bulletin, bulletin.id) is None


# --- corrections and retraction --------------------------------------------------------------------


def test_a_published_update_is_corrected_and_retracted_through_the_forms(client, session, officers, db):
    (author, mine, token), (reviewer, _theirs, _t) = officers
    bulletin = published(session, author, reviewer)
    page = mine.get(f"/staff/bulletins/{bulletin.id}")
    assert field_value(page.text, "corrections-body") == "Мостът е затворен до второ нареждане."
    assert field_value(page.text, "corrections-instruction") == "Ползвайте обходния път."

    same = mine.post(
        f"/staff/bulletins/{bulletin.id}/corrections",
        data={"body": bulletin.body, "instruction": bulletin.instruction, "reason": "Без промяна", "csrf_token": token},
    )  # fmt: skip
    assert same.status_code == 422
    assert error_beside(same.text, "corrections-body") == "The correction changes nothing."
    assert field_value(same.text, "corrections-reason") == "Без промяна"

    corrected = mine.post(
        f"/staff/bulletins/{bulletin.id}/corrections",
        data={"title": "", "body": "Мостът е отворен за леки автомобили.", "instruction": "",
              "reason": "Мостът е отворен отново.", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert corrected.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=corrected"
    stored = db.get(Bulletin, bulletin.id)
    assert (stored.revision, stored.title, stored.instruction) == (2, "Затворен мост на р. Лом", "")
    revisions = db.all(select(BulletinRevision).where(BulletinRevision.bulletin_id == bulletin.id))
    assert sorted((r.number, r.reason) for r in revisions) == [(1, ""), (2, "Мостът е отворен отново.")]
    shown = mine.get(corrected.headers["location"]).text
    assert 'id="revision-2"' in shown and 'id="revision-1"' in shown
    public = TestClient(client.app).get(f"/updates/{bulletin.id}").text
    assert "Мостът е отворен за леки автомобили." in public and "Мостът е отворен отново." in public

    short = mine.post(f"/staff/bulletins/{bulletin.id}/retract", data={"reason": "no", "csrf_token": token})
    assert short.status_code == 422
    assert error_beside(short.text, "retract-reason") == "This field is required."
    retracted = mine.post(
        f"/staff/bulletins/{bulletin.id}/retract", data={"reason": "Подадено по грешка.", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert retracted.headers["location"] == f"/staff/bulletins/{bulletin.id}?done=retracted"
    assert db.get(Bulletin, bulletin.id).status == BulletinStatus.retracted
    assert 'id="retracted-notice"' in mine.get(retracted.headers["location"]).text
    public = TestClient(client.app).get(f"/updates/{bulletin.id}").text
    assert "Подадено по грешка." in public
    assert f'href="/updates/{bulletin.id}"' not in TestClient(client.app).get("/").text

    again = mine.post(f"/staff/bulletins/{bulletin.id}/retract", data={"reason": "Пак.", "csrf_token": token})
    assert again.status_code == 409
    assert re.search(r'id="refusal"[^>]*><p>Only a published update can be retracted.</p>', again.text)


# --- rumours ---------------------------------------------------------------------------------------


def test_a_rumour_is_logged_investigated_given_a_verdict_and_answered_by_a_fact_check_draft(session, officers, db):
    (author, mine, token), _ = officers
    assert 'name="wording"' in mine.get("/staff/rumours/new").text
    bad = mine.post(
        "/staff/rumours/new", data={"wording": "Язовир „Огоста“ ще прелее довечера!", "channel": "",
        "url": "ftp://example.test", "language": "bg", "risk": "high", "report_count": "3", "csrf_token": token},
    )  # fmt: skip
    assert bad.status_code == 422
    assert error_beside(bad.text, "rumour-channel") == "This field is required."
    assert error_beside(bad.text, "rumour-url") == "This value has characters that do not belong here."
    assert field_value(bad.text, "rumour-wording") == "Язовир „Огоста“ ще прелее довечера!"

    logged = mine.post(
        "/staff/rumours/new", data={"wording": "Язовир „Огоста“ ще прелее довечера!", "summary": "Язовирът ще прелее",
        "channel": "Facebook група „Монтана днес“", "url": "https://example.test/post/1", "language": "bg",
        "first_seen": "2030-01-15T08:00", "last_seen": "2030-01-15T09:00", "risk": "high", "report_count": "3",
        "csrf_token": token}, follow_redirects=False,
    )  # fmt: skip
    assert logged.status_code == 303, logged.text
    (rumour,) = db.all(select(Rumour))
    assert logged.headers["location"] == f"/staff/rumours/{rumour.id}?done=logged"
    assert (rumour.status, rumour.risk, rumour.report_count) == ("new", "high", 3)
    assert rumour.first_seen == parse_local_datetime("2030-01-15T08:00")
    listed = mine.get("/staff/rumours?status=new").text
    assert f'id="rumour-{rumour.id}"' in listed
    assert f'id="rumour-{rumour.id}"' not in mine.get("/staff/rumours?status=resolved").text

    edit = {"status": "investigating", "last_seen": "2030-01-15T12:00", "report_count": "many", "risk": "high",
            "summary": "Язовирът ще прелее", "channel": "Facebook", "url": "", "csrf_token": token}  # fmt: skip
    not_a_number = mine.post(f"/staff/rumours/{rumour.id}/edit", data=edit)
    assert not_a_number.status_code == 422
    assert error_beside(not_a_number.text, "edit-report_count") == "Enter a whole number."
    assert field_value(not_a_number.text, "edit-report_count") == "many"
    saved = mine.post(f"/staff/rumours/{rumour.id}/edit", data={**edit, "report_count": "12"}, follow_redirects=False)
    assert saved.headers["location"] == f"/staff/rumours/{rumour.id}?done=saved"
    stored = db.get(Rumour, rumour.id)
    assert (stored.status, stored.report_count, stored.url, stored.channel) == ("investigating", 12, None, "Facebook")
    assert stored.last_seen == parse_local_datetime("2030-01-15T12:00")
    backwards = mine.post(f"/staff/rumours/{rumour.id}/edit", data={**edit, "report_count": "12", "status": "new"})
    assert backwards.status_code == 409
    assert "only a new one can be put under investigation" in backwards.text
    assert 'id="edit-refusal"' in backwards.text

    page = mine.get(f"/staff/rumours/{rumour.id}").text
    assert 'id="fact-check-button"' not in page, "no fact-check before the verdict"
    early = mine.post(f"/staff/rumours/{rumour.id}/fact-check", data={"csrf_token": token})
    assert early.status_code == 409 and "Record the verdict before drafting the fact-check." in early.text

    verdict = {"verdict": "false", "evidence": "", "response": "Язовирът е на 60 % от обема си.", "csrf_token": token}
    no_evidence = mine.post(f"/staff/rumours/{rumour.id}/verdict", data=verdict)
    assert no_evidence.status_code == 422
    assert error_beside(no_evidence.text, "verdict-evidence") == "This field is required."
    assert field_value(no_evidence.text, "verdict-response") == "Язовирът е на 60 % от обема си."
    recorded = mine.post(
        f"/staff/rumours/{rumour.id}/verdict", data={**verdict, "evidence": "Данни от „Напоителни системи“."},
        follow_redirects=False,
    )  # fmt: skip
    assert recorded.headers["location"] == f"/staff/rumours/{rumour.id}?done=verdict"
    stored = db.get(Rumour, rumour.id)
    assert (stored.status, stored.verdict, stored.verdict_by_id) == ("resolved", "false", author.id)

    drafted = mine.post(f"/staff/rumours/{rumour.id}/fact-check", data={"csrf_token": token}, follow_redirects=False)
    assert drafted.status_code == 303
    bulletin_id = db.get(Rumour, rumour.id).bulletin_id
    assert drafted.headers["location"] == f"/staff/bulletins/{bulletin_id}?done=created"
    answer = db.get(Bulletin, bulletin_id)
    assert (answer.status, answer.category, answer.body) == ("draft", BulletinCategory.correction, stored.response)
    assert status_on(mine.get(drafted.headers["location"]).text) == "draft"
    page = mine.get(f"/staff/rumours/{rumour.id}").text
    assert f'id="answer-link">{answer.title}</a>' in page and 'data-status="draft"' in page
    twice = mine.post(f"/staff/rumours/{rumour.id}/fact-check", data={"csrf_token": token})
    assert twice.status_code == 409
    assert f"This rumour already has its public update (#{bulletin_id})." in twice.text


def test_the_rumour_page_shows_its_published_fact_check(session, officers):
    """Once the fact-check is approved, the rumour's page links the published update with its status."""
    (author, mine, _token), (reviewer, _theirs, _t) = officers
    rumour = service.log_rumour(
        session=session, actor=author, data=RumourCreate(wording="Водата от чешмата е отровна", channel="Viber")
    )
    rumour = service.record_verdict(
        session=session, actor=author, rumour=rumour,
        data=VerdictBody(verdict=Verdict.false, evidence="Проби на РЗИ от днес.", response="Водата е годна за пиене."),
    )  # fmt: skip
    draft = service.draft_fact_check(session=session, actor=author, rumour=rumour, area_desc="Община Примерно")
    service.submit(session=session, actor=author, bulletin=draft)
    service.approve(session=session, actor=reviewer, bulletin=draft)
    page = mine.get(f"/staff/rumours/{rumour.id}").text
    assert re.search(rf'id="rumour-status" data-status="{RumourStatus.resolved}"', page)
    assert 'data-status="published"' in page and 'id="fact-check-button"' not in page
    assert 'id="verdict-verdict"' in page and local_input_value(rumour.last_seen) in page


def test_the_staff_page_shows_the_body_sanitised(session, officers):
    """What an officer pastes is rendered through the allow-list: no script, handler, inline style or
    `javascript:` link reaches the page, while the Markdown itself is kept."""
    (author, mine, _token), _ = officers
    body = ('Текст с **удебеляване**.\n\n<script>alert("body")</script>\n\n'
            '<a href="javascript:alert(1)" onclick="steal()" style="color:red">връзка</a> '
            '<img src="x" onerror="alert(2)">')  # fmt: skip
    bulletin = make_bulletin(session, author, body=body, instruction="<script>alert('instruction')</script>Бягайте")
    html = mine.get(f"/staff/bulletins/{bulletin.id}").text
    shown = re.search(r'<div class="body" id="bulletin-body"[^>]*>(.*?)</div>', html, re.S).group(1)
    assert "<strong>удебеляване</strong>" in shown
    assert "връзка" in shown
    for forbidden in ("<script", "javascript:", "onclick", "onerror", "style=", "<img"):
        assert forbidden not in shown, forbidden
    assert "<script>alert" not in html and "onerror=" not in html
