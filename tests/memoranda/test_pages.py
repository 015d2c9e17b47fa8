"""The staff's memoranda pages: who may open them, drafting from a kind's declared variables, the actions on one
memorandum by its status, and a whole memorandum's life through the pages (staff, portal, public check).

Pages are read in English (the coordinator's own language) so that the assertions can name the messages.
"""

import hashlib
import re
from datetime import timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.memoranda import archive, pages, service
from service.memoranda.models import Memorandum, MemorandumParty, MemorandumStatus, SignatureMethod
from service.users.models import User
from tests.factories import make_partner, make_user, page_login
from tests.memoranda.build import make_active, make_draft, make_issued, variables

SCAN = b"%PDF-1.4\n% a scanned, hand-signed copy\n%%EOF\n"


class Reader:
    """Reads what the app wrote, each time in a short session of its own: the `session` fixture is a writer,
    and a read through it would hold SQLite's write lock while the app waits for it."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def get(self, model, ident):
        with Session(self.engine) as s:
            return s.get(model, ident)

    def all(self, query) -> list:
        with Session(self.engine) as s:
            return list(s.exec(query))

    def parties(self, memorandum_id: int) -> list[MemorandumParty]:
        query = select(MemorandumParty).where(MemorandumParty.memorandum_id == memorandum_id)
        return sorted(self.all(query), key=lambda p: p.position)


@pytest.fixture
def db(engine) -> Reader:
    return Reader(engine)


def log_in(client: TestClient, user: User) -> str:
    """Logs in through the form, reading English; the CSRF token for forms."""
    client.cookies.set("accord_lang", "en")
    return page_login(client, user)


@pytest.fixture
def world(session: Session) -> dict:
    """A coordinator and two organisations (water, transport) each with a partner user; a suspended one."""
    coordinator = make_user(session, "coordinator", language="en")
    water = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business", registration_number="113003225")
    transport = make_partner(session, name="„Транс Логистик Примерно“ ООД", kind="business")
    suspended = make_partner(session, name="Сдружение „Спряно“")
    from service.partners import service as partners

    partners.suspend(session=session, actor=coordinator, org=suspended, reason="Проверка на документите")
    return {
        "coordinator": coordinator,
        "water": water,
        "transport": transport,
        "suspended": suspended,
        "water_user": make_user(session, "partner", organisation=water, full_name="Николай Георгиев"),
        "transport_user": make_user(session, "partner", organisation=transport),
    }


def draft_form(token: str, partners: list, kind: str = "logistics_support", **overrides) -> dict:
    """The drafting form as a browser sends it, with every variable filled."""
    today = service.today()
    form = {
        "csrf_token": token,
        "template": kind,
        "language": "bg",
        "partner_ids": [str(p.id) for p in partners],
        "signing_order": "parallel",
        "signing_deadline": str(today + timedelta(days=14)),
        "valid_from": str(today),
        "valid_until": str(today + timedelta(days=365)),
        **{f"variables.{name}": str(value) for name, value in variables(kind).items() if value is not None},
    }
    return {**form, **overrides}


def field_error(html: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error" role="alert">([^<]*)</p>', html)
    assert match, f"no message beside {field_id}"
    return unescape(match.group(1))


def status_shown(html: str) -> str:
    return re.search(r'id="memorandum-status" data-status="([a-z_]+)"', html).group(1)


# --- who may come in -----------------------------------------------------------------------------


def test_only_coordinators_and_admins_reach_the_staff_pages(client, session, world):
    draft = make_draft(session, world["coordinator"], [world["water"]])
    reads = ["/staff/memoranda", "/staff/memoranda/new", f"/staff/memoranda/{draft.id}",
             f"/staff/memoranda/{draft.id}/edit"]  # fmt: skip

    for path in reads:
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")

    for role, organisation in (("communications", None), ("partner", world["water"])):
        other = TestClient(client.app)
        token = log_in(other, make_user(session, role, organisation=organisation))
        for path in [*reads, f"/staff/memoranda/{draft.id}/pdf"]:
            assert other.get(path).status_code == 403, (role, path)
        for action in ("issue", "discard", "cancel", "renew"):
            refused = other.post(f"/staff/memoranda/{draft.id}/{action}", data={"csrf_token": token, "reason": "abc"})
            assert refused.status_code == 403, (role, action)
        assert other.post("/staff/memoranda/new", data=draft_form(token, [world["water"]])).status_code == 403

    for role in ("coordinator", "admin"):
        staff = TestClient(client.app)
        log_in(staff, make_user(session, role))
        for path in reads:
            assert staff.get(path).status_code == 200, (role, path)
        assert 'href="/staff/memoranda"' in staff.get("/staff").text, "the navigation links the memoranda"
        assert staff.get("/staff/memoranda/999999").status_code == 404


def test_a_form_without_the_csrf_token_is_refused(client, session, world):
    log_in(client, world["coordinator"])
    draft = make_draft(session, world["coordinator"], [world["water"]])
    assert client.post(f"/staff/memoranda/{draft.id}/discard", data={}).status_code == 403
    assert client.post(f"/staff/memoranda/{draft.id}/discard", data={"csrf_token": "forged"}).status_code == 403


# --- the list ------------------------------------------------------------------------------------


def test_the_list_filters_by_status_partner_kind_and_end_and_pages(client, session, world, db):
    coordinator, water, transport = world["coordinator"], world["water"], world["transport"]
    today = service.today()
    soon = make_draft(session, coordinator, [water], valid_until=str(today + timedelta(days=30)))
    later = make_draft(session, coordinator, [transport], kind="public_awareness")
    both = make_draft(session, coordinator, [water, transport])
    service.discard(session=session, actor=coordinator, memorandum=make_draft(session, coordinator, [water]))
    log_in(client, coordinator)

    def shown(query: str = "") -> list[int]:
        page = client.get("/staff/memoranda" + query)
        assert page.status_code == 200
        return [int(i) for i in re.findall(r'<tr id="memorandum-(\d+)">', page.text)]

    assert shown() == [both.id, later.id, soon.id]
    assert shown(f"?organisation_id={water.id}") == [both.id, soon.id]
    assert shown("?template=public_awareness") == [later.id]
    assert shown(f"?expiring_before={today + timedelta(days=31)}") == [soon.id]
    assert shown("?status=issued") == []
    assert shown("?status=draft&template=logistics_support") == [both.id, soon.id]
    assert shown("?status=nonsense&expiring_before=tomorrow&organisation_id=x") == [both.id, later.id, soon.id]
    first = client.get(f"/staff/memoranda?organisation_id={water.id}&limit=1").text
    assert re.search(rf'href="/staff/memoranda\?organisation_id={water.id}&(amp;)?limit=1&(amp;)?offset=1"', first)
    assert shown(f"?organisation_id={water.id}&limit=1&offset=1") == [soon.id]
    assert "„Минерална вода Струма“ ЕООД" in client.get("/staff/memoranda").text


# --- drafting ------------------------------------------------------------------------------------


def test_the_new_form_asks_for_the_kind_first_then_shows_the_kinds_variables(client, session, world):
    log_in(client, world["coordinator"])
    step_one = client.get("/staff/memoranda/new").text
    assert 'name="template" value="countering_disinformation"' in step_one
    assert f'name="partner_ids" value="{world["water"].id}"' in step_one
    assert f'name="partner_ids" value="{world["suspended"].id}"' not in step_one, "suspended: not a party"
    assert 'name="signing_order" value="sequential"' in step_one
    assert 'name="variables.' not in step_one

    step_two = client.get(
        f"/staff/memoranda/new?template=logistics_support&language=en&partner_ids={world['water'].id}"
        "&signing_order=sequential&valid_until=2031-01-31"
    ).text
    assert 'action="/staff/memoranda/new"' in step_two and 'method="post"' in step_two
    assert f'name="partner_ids" value="{world["water"].id}" checked' in step_two
    assert 'name="signing_order" value="sequential" checked' in step_two
    assert 'id="valid_until" name="valid_until" type="date" value="2031-01-31"' in step_two
    assert re.search(r'<option value="en" selected>', step_two)
    # Generated from the declaration: labels and help in the reader's language, the input by the type.
    assert re.search(r'<label for="var-place_of_signing">Place of signing <span aria-hidden="true">\*</span>', step_two)
    assert "The town or village, e.g." in step_two
    assert re.search(r'<textarea id="var-goods_and_services" name="variables.goods_and_services"', step_two)
    assert re.search(
        r'<input id="var-termination_notice_days" name="variables.termination_notice_days" value="30" required\s+'
        r'type="number" inputmode="numeric" step="1" min="1" max="365"',
        step_two,
    ), "an integer: a number input, its default filled in"
    assert re.search(r'<select id="var-cost_arrangement" name="variables.cost_arrangement" required', step_two)
    assert '<option value="free_of_charge" selected>Free of charge; each party bears its own costs</option>' in step_two
    assert re.search(r'<label for="var-storage_facilities">The Partners&#39; storage facilities</label>', step_two)

    fundraising = client.get("/staff/memoranda/new?template=fundraising_campaign").text
    assert re.search(r'name="variables.target_amount" value="" required\s+type="text" inputmode="decimal"', fundraising)
    assert re.search(r'name="variables.campaign_start" value="" required\s+type="date"', fundraising)
    client.cookies.set("accord_lang", "bg")
    assert "Място на сключване" in client.get("/staff/memoranda/new?template=logistics_support").text

    unknown = client.get("/staff/memoranda/new?template=nonsense")
    assert "Choose one of the options." in unknown.text or "Изберете" in unknown.text
    assert 'name="variables.' not in unknown.text


def test_a_bad_variable_shows_the_form_again_with_the_input_and_the_message_beside_the_field(
    client, session, world, db
):
    token = log_in(client, world["coordinator"])
    form = draft_form(
        token,
        [world["water"], world["transport"]],
        **{"variables.termination_notice_days": "тридесет", "variables.goods_and_services": "   ",
           "variables.place_of_signing": "гр. Примерно <script>alert(1)</script>"},
    )  # fmt: skip
    bad = client.post("/staff/memoranda/new", data=form)
    assert bad.status_code == 422
    assert field_error(bad.text, "var-termination_notice_days") == "Must be a whole number."
    assert field_error(bad.text, "var-goods_and_services") == "Required."
    assert 'aria-invalid="true" aria-describedby="var-termination_notice_days-error' in bad.text
    assert 'value="тридесет"' in bad.text, "the input is kept"
    assert 'value="гр. Примерно &lt;script&gt;alert(1)&lt;/script&gt;"' in bad.text, "kept, and escaped"
    delivery = variables()["delivery_points"]
    assert f">{delivery}</textarea>" in bad.text
    for org in (world["water"], world["transport"]):
        assert f'name="partner_ids" value="{org.id}" checked' in bad.text
    assert "Please correct the fields marked below." in bad.text
    assert db.all(select(Memorandum)) == []

    # Dates and parties are checked with the variables, each message beside its own field.
    worse = client.post(
        "/staff/memoranda/new",
        data={**draft_form(token, []), "valid_until": "31.02.2030", "variables.response_hours": "1000"},
    )
    assert worse.status_code == 422
    assert field_error(worse.text, "partner_ids") == "Choose at least one partner organisation."
    assert field_error(worse.text, "valid_until") == "Enter a date."
    assert field_error(worse.text, "var-response_hours") == "Larger than this field allows; see the field's help."
    # The rules' own refusal (a deadline after the end) shows beside the deadline.
    late = draft_form(token, [world["water"]], signing_deadline=str(service.today() + timedelta(days=400)))
    refused = client.post("/staff/memoranda/new", data=late)
    assert refused.status_code == 422
    assert (
        field_error(refused.text, "signing_deadline") == "The signing deadline must not be after the memorandum ends."
    )
    suspended = client.post("/staff/memoranda/new", data=draft_form(token, [world["suspended"]]))
    assert "is suspended and cannot be a party" in field_error(suspended.text, "partner_ids")
    assert db.all(select(Memorandum)) == []


def test_a_draft_is_created_edited_previewed_and_discarded(client, session, world, db):
    token = log_in(client, world["coordinator"])
    created = client.post(
        "/staff/memoranda/new",
        data=draft_form(token, [world["water"]], signing_order="sequential"),
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    (memorandum,) = db.all(select(Memorandum))
    assert created.headers["location"] == f"/staff/memoranda/{memorandum.id}?done=created"
    assert memorandum.sequential and memorandum.status == MemorandumStatus.draft
    assert memorandum.variables == variables()
    assert [p.organisation_id for p in db.parties(memorandum.id)] == [world["water"].id, None]

    page = client.get(created.headers["location"]).text
    assert "The draft is saved." in page
    assert f'href="/staff/memoranda/{memorandum.id}/pdf"' in page
    assert "verification-code" not in page, "a draft has no code to check yet"

    edit = client.get(f"/staff/memoranda/{memorandum.id}/edit").text
    assert 'name="template"' not in edit, "the kind of a draft is fixed"
    assert f'name="partner_ids" value="{world["water"].id}" checked' in edit
    assert 'name="variables.place_of_signing" value="гр. Примерно"' in edit
    changed = draft_form(token, [world["water"], world["transport"]], **{"variables.place_of_signing": "с. Долно село"})
    saved = client.post(f"/staff/memoranda/{memorandum.id}/edit", data=changed, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    memorandum = db.get(Memorandum, memorandum.id)
    assert memorandum.variables["place_of_signing"] == "с. Долно село"
    assert not memorandum.sequential
    assert [p.organisation_id for p in db.parties(memorandum.id)] == [world["water"].id, world["transport"].id, None]
    bad_edit = client.post(f"/staff/memoranda/{memorandum.id}/edit", data={**changed, "variables.response_hours": "-1"})
    assert bad_edit.status_code == 422
    assert field_error(bad_edit.text, "var-response_hours") == "Smaller than this field allows; see the field's help."

    preview = client.get(f"/staff/memoranda/{memorandum.id}/pdf")
    assert preview.status_code == 200
    assert preview.headers["content-type"] == "application/pdf"
    assert preview.content.startswith(b"%PDF-")
    assert db.get(Memorandum, memorandum.id).sha256 is None, "a preview issues nothing"

    discarded = client.post(
        f"/staff/memoranda/{memorandum.id}/discard", data={"csrf_token": token}, follow_redirects=False
    )
    assert discarded.headers["location"] == "/staff/memoranda?done=discarded"
    assert db.all(select(Memorandum)) == []
    assert client.get(f"/staff/memoranda/{memorandum.id}").status_code == 404


# --- a memorandum's life through the pages -------------------------------------------------------


def test_created_issued_signed_by_both_sides_in_the_pages_and_the_public_check_says_in_force(
    client, session, world, db
):
    token = log_in(client, world["coordinator"])
    created = client.post("/staff/memoranda/new", data=draft_form(token, [world["water"]]), follow_redirects=False)
    mid = int(re.search(r"/staff/memoranda/(\d+)\?", created.headers["location"]).group(1))

    issued = client.post(f"/staff/memoranda/{mid}/issue", data={"csrf_token": token}, follow_redirects=False)
    assert issued.status_code == 303, issued.text
    memorandum = db.get(Memorandum, mid)
    assert memorandum.status == MemorandumStatus.issued and memorandum.sha256
    page = client.get(f"/staff/memoranda/{mid}").text
    assert status_shown(page) == "issued"
    assert f'<span class="code" id="verification-code">{memorandum.verification_code}</span>' in page
    assert f'href="/verify/{memorandum.verification_code}"' in page
    assert f'href="/staff/memoranda/{mid}/pdf?variant=issued"' in page
    assert re.search(r'id="sign-signer_name" name="signer_name" type="text" value="Петър Димитров"', page), (
        "prefilled with the municipality's representative"
    )
    issued_pdf = client.get(f"/staff/memoranda/{mid}/pdf?variant=issued")
    assert hashlib.sha256(issued_pdf.content).hexdigest() == memorandum.sha256
    again = client.post(f"/staff/memoranda/{mid}/issue", data={"csrf_token": token})
    assert again.status_code == 409
    assert "Only a draft can be issued." in again.text

    blank = client.post(
        f"/staff/memoranda/{mid}/sign", data={"csrf_token": token, "signer_name": "", "signer_title": ""}
    )
    assert blank.status_code == 422
    assert field_error(blank.text, "sign-signer_name") == "This field is required."
    signed = client.post(
        f"/staff/memoranda/{mid}/sign",
        data={"csrf_token": token, "signer_name": "Петър Димитров", "signer_title": "кмет на Община Примерно"},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    assert db.get(Memorandum, mid).status == MemorandumStatus.partially_signed

    partner = TestClient(client.app)
    partner_token = log_in(partner, world["water_user"])
    listed = partner.get("/portal/memoranda").text
    assert re.search(rf'<li id="awaiting-{mid}"><a href="/portal/memoranda/{mid}">', listed)
    detail = partner.get(f"/portal/memoranda/{mid}").text
    assert 'value="Николай Георгиев"' in detail, "prefilled with the partner user's name"
    assert partner.get(f"/portal/memoranda/{mid}/pdf").content == issued_pdf.content
    assert db.parties(mid)[0].viewed_at is not None, "opening the PDF marks the party as having seen it"
    done = partner.post(
        f"/portal/memoranda/{mid}/sign",
        data={"csrf_token": partner_token, "signer_name": "Николай Георгиев", "signer_title": "управител"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    memorandum = db.get(Memorandum, mid)
    assert memorandum.status == MemorandumStatus.active
    assert memorandum.signed_sha256, "the final PDF is made right after the last signature"
    water_party = db.parties(mid)[0]
    assert (water_party.signer_name, water_party.method) == ("Николай Георгиев", SignatureMethod.click)
    assert "Nothing awaits your signature." in partner.get("/portal/memoranda").text

    page = client.get(f"/staff/memoranda/{mid}").text
    assert status_shown(page) == "active"
    assert f'href="/staff/memoranda/{mid}/pdf?variant=signed"' in page
    signed_pdf = client.get(f"/staff/memoranda/{mid}/pdf?variant=signed").content
    assert hashlib.sha256(signed_pdf).hexdigest() == memorandum.signed_sha256

    public = TestClient(client.app).get(f"/verify/{memorandum.verification_code}")
    assert public.status_code == 200
    assert 'data-in-force="true"' in public.text
    assert "In force until" in public.text or "В сила до" in public.text


def test_a_scanned_copy_records_the_signature_by_upload_with_its_sha256(client, session, world, db, monkeypatch):
    memorandum = make_issued(session, world["coordinator"], [world["water"]])
    token = log_in(client, world["coordinator"])
    page = client.get(f"/staff/memoranda/{memorandum.id}").text
    assert 'enctype="multipart/form-data"' in page
    assert f'<option value="{world["water"].id}"' in page and '<option value="municipality"' in page

    fields = {"csrf_token": token, "party": str(world["water"].id), "signer_name": "Николай Георгиев",
              "signer_title": "управител"}  # fmt: skip
    not_pdf = client.post(
        f"/staff/memoranda/{memorandum.id}/scan",
        data=fields,
        files={"scan": ("scan.jpg", b"\xff\xd8\xff", "image/jpeg")},
    )
    assert not_pdf.status_code == 422
    assert field_error(not_pdf.text, "scan-file") == "The scanned copy must be a PDF file."
    assert 'id="scan-signer_name" name="signer_name" type="text" value="Николай Георгиев"' in not_pdf.text
    missing = client.post(f"/staff/memoranda/{memorandum.id}/scan", data=fields)
    assert field_error(missing.text, "scan-file") == "Attach the scanned, signed copy."
    monkeypatch.setattr(pages, "MAX_SCAN_BYTES", 16)
    too_big = client.post(f"/staff/memoranda/{memorandum.id}/scan", data=fields, files={"scan": ("s.pdf", SCAN)})
    assert field_error(too_big.text, "scan-file") == "The scanned copy is larger than 20 MB."
    monkeypatch.undo()
    stranger = client.post(
        f"/staff/memoranda/{memorandum.id}/scan",
        data={**fields, "party": str(world["transport"].id)},
        files={"scan": ("s.pdf", SCAN)},
    )
    assert field_error(stranger.text, "scan-party") == "This organisation is not a party to the memorandum."
    assert db.parties(memorandum.id)[0].signed_at is None

    recorded = client.post(
        f"/staff/memoranda/{memorandum.id}/scan",
        data=fields,
        files={"scan": ("scan.pdf", SCAN, "application/pdf")},
        follow_redirects=False,
    )
    assert recorded.status_code == 303, recorded.text
    party = db.parties(memorandum.id)[0]
    assert party.method == SignatureMethod.upload
    assert party.scan_sha256 == hashlib.sha256(SCAN).hexdigest()
    assert archive.load(party.scan_sha256) == SCAN
    assert (party.signer_name, party.signer_title, party.signer_user_id) == (
        "Николай Георгиев", "управител", world["coordinator"].id,
    )  # fmt: skip
    page = client.get(f"/staff/memoranda/{memorandum.id}").text
    assert f'data-scan-sha256="{party.scan_sha256}"' in page
    assert 'data-method="upload"' in page
    assert db.get(Memorandum, memorandum.id).status == MemorandumStatus.partially_signed


def test_the_deadline_is_extended_and_a_memorandum_cancelled_with_its_reason(client, session, world, db):
    memorandum = make_issued(session, world["coordinator"], [world["water"]])
    token = log_in(client, world["coordinator"])
    url = f"/staff/memoranda/{memorandum.id}"
    past = client.post(f"{url}/deadline", data={"csrf_token": token, "signing_deadline": "2020-01-01"})
    assert past.status_code == 422
    assert field_error(past.text, "deadline-signing_deadline") == "The signing deadline must not be in the past."
    assert (
        field_error(
            client.post(f"{url}/deadline", data={"csrf_token": token, "signing_deadline": "soon"}).text,
            "deadline-signing_deadline",
        )
        == "Enter a date."
    )
    later = service.today() + timedelta(days=60)
    moved = client.post(
        f"{url}/deadline", data={"csrf_token": token, "signing_deadline": str(later)}, follow_redirects=False
    )
    assert moved.status_code == 303
    assert db.get(Memorandum, memorandum.id).signing_deadline == later

    short = client.post(f"{url}/cancel", data={"csrf_token": token, "reason": "x"})
    assert short.status_code == 422
    assert field_error(short.text, "cancel-reason") == "This field is required."
    assert 'id="cancel" open' in short.text
    cancelled = client.post(f"{url}/cancel", data={"csrf_token": token, "reason": "Партньорът се преобразува."},
                            follow_redirects=False)  # fmt: skip
    assert cancelled.status_code == 303
    memorandum = db.get(Memorandum, memorandum.id)
    assert (memorandum.status, memorandum.status_reason) == (MemorandumStatus.cancelled, "Партньорът се преобразува.")
    page = client.get(url).text
    assert status_shown(page) == "cancelled" and "Партньорът се преобразува." in page
    assert f'action="{url}/cancel"' not in page and f'action="{url}/renew"' in page
    refused = client.post(f"{url}/deadline", data={"csrf_token": token, "signing_deadline": str(later)})
    assert refused.status_code == 409
    assert "This memorandum is not awaiting signatures." in refused.text


def test_a_memorandum_in_force_is_terminated_and_renewed_into_a_new_draft(client, session, world, db):
    memorandum = make_active(session, world["coordinator"], [world["water"]])
    token = log_in(client, world["coordinator"])
    url = f"/staff/memoranda/{memorandum.id}"
    page = client.get(url).text
    assert f'action="{url}/terminate"' in page and f'action="{url}/renew"' in page
    assert f'action="{url}/issue"' not in page and f'action="{url}/sign"' not in page

    renewed = client.post(f"{url}/renew", data={"csrf_token": token}, follow_redirects=False)
    assert renewed.status_code == 303
    renewal = max(db.all(select(Memorandum)), key=lambda m: m.id)
    assert renewed.headers["location"] == f"/staff/memoranda/{renewal.id}/edit?done=renewed"
    assert (renewal.status, renewal.supersedes_id) == (MemorandumStatus.draft, memorandum.id)
    edit = client.get(renewed.headers["location"]).text
    assert "A renewal is drafted from the memorandum." in edit
    assert 'name="variables.place_of_signing" value="гр. Примерно"' in edit
    assert f'href="/staff/memoranda/{memorandum.id}"' in client.get(f"/staff/memoranda/{renewal.id}").text

    terminated = client.post(f"{url}/terminate", data={"csrf_token": token, "reason": "По взаимно съгласие."},
                             follow_redirects=False)  # fmt: skip
    assert terminated.status_code == 303
    assert db.get(Memorandum, memorandum.id).status == MemorandumStatus.terminated
    twice = client.post(f"{url}/terminate", data={"csrf_token": token, "reason": "Отново."})
    assert twice.status_code == 409
    assert "Only a memorandum in force can be terminated." in twice.text


def test_an_issue_refused_for_a_variable_links_to_the_draft_to_correct(client, session, world, db):
    draft = make_draft(session, world["coordinator"], [world["water"]])
    draft.variables = {**draft.variables, "response_hours": 5000}  # as a renewal under an older declaration
    session.add(draft)
    session.commit()
    token = log_in(client, world["coordinator"])
    refused = client.post(f"/staff/memoranda/{draft.id}/issue", data={"csrf_token": token})
    assert refused.status_code == 422
    assert 'id="issue-errors"' in refused.text
    assert "Larger than this field allows" in refused.text
    assert f'<a href="/staff/memoranda/{draft.id}/edit">' in refused.text
    edit = client.get(f"/staff/memoranda/{draft.id}/edit").text
    assert field_error(edit, "var-response_hours") == "Larger than this field allows; see the field's help."
    assert db.get(Memorandum, draft.id).status == MemorandumStatus.draft
