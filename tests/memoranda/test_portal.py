"""The partner portal's memoranda: a partner sees only their organisation's issued memoranda (awaiting their
signature first), opens the PDF (which marks it seen), signs or declines, in order when the order matters.
Messages are checked in English (the catalogue changes on its own)."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.memoranda import service
from service.memoranda.models import Memorandum, MemorandumStatus, SignatureMethod
from tests.factories import make_partner, make_user
from tests.memoranda.build import make_active, make_draft, make_issued
from tests.memoranda.test_pages import Reader, field_error, log_in


@pytest.fixture
def db(engine) -> Reader:
    return Reader(engine)


@pytest.fixture
def world(session: Session) -> dict:
    coordinator = make_user(session, "coordinator")
    water = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business")
    transport = make_partner(session, name="„Транс Логистик Примерно“ ООД", kind="business")
    return {
        "coordinator": coordinator,
        "water": water,
        "transport": transport,
        "water_user": make_user(session, "partner", organisation=water, full_name="Николай Георгиев"),
        "transport_user": make_user(session, "partner", organisation=transport, full_name="Васил Тодоров"),
    }


def status_of(html: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}" data-status="([a-z_]+)"', html).group(1)


def test_a_partner_sees_only_their_organisations_issued_memoranda(client, session, world, db):
    coordinator, water, transport = world["coordinator"], world["water"], world["transport"]
    awaiting = make_issued(session, coordinator, [water])
    in_force = make_active(session, coordinator, [water, transport])
    draft = make_draft(session, coordinator, [water])
    theirs = make_issued(session, coordinator, [transport])

    for path in ("/portal/memoranda", f"/portal/memoranda/{awaiting.id}"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    staff = TestClient(client.app)
    log_in(staff, coordinator)
    assert staff.get("/portal/memoranda").status_code == 403
    assert staff.get(f"/portal/memoranda/{awaiting.id}").status_code == 403

    token = log_in(client, world["water_user"])
    listed = client.get("/portal/memoranda")
    assert listed.status_code == 200
    awaiting_section = listed.text[listed.text.index('id="awaiting"') : listed.text.index("</section>")]
    assert re.findall(r'<li id="awaiting-(\d+)">', awaiting_section) == [str(awaiting.id)]
    assert [int(i) for i in re.findall(r'<tr id="memorandum-(\d+)">', listed.text)] == [in_force.id, awaiting.id]
    assert 'href="/portal/memoranda"' in listed.text, "the portal's navigation links the memoranda"

    page = client.get(f"/portal/memoranda/{in_force.id}")
    assert page.status_code == 200
    assert status_of(page.text, "memorandum-status") == "active"
    assert "„Транс Логистик Примерно“ ООД" in page.text, "the other parties are named"
    assert f'href="/portal/memoranda/{in_force.id}/pdf?variant=signed"' in page.text
    assert 'action="/portal/memoranda' not in page.text, "nothing left to sign or decline"

    form = {"csrf_token": token, "signer_name": "Николай Георгиев", "signer_title": "управител", "reason": "Не."}
    for hidden in (draft.id, theirs.id, 999999):
        assert client.get(f"/portal/memoranda/{hidden}").status_code == 404
        assert client.get(f"/portal/memoranda/{hidden}/pdf").status_code == 404
        assert client.post(f"/portal/memoranda/{hidden}/sign", data=form).status_code == 404
        assert client.post(f"/portal/memoranda/{hidden}/decline", data=form).status_code == 404
    with Session(session.get_bind()) as s:
        assert all(
            p.signed_at is None and p.declined_at is None for p in service.parties_of(session=s, memorandum=theirs)
        )
        assert s.get(Memorandum, draft.id).status == MemorandumStatus.draft


def test_the_partner_opens_the_pdf_and_signs_with_their_name(client, session, world, db):
    memorandum = make_issued(session, world["coordinator"], [world["water"]])
    token = log_in(client, world["water_user"])
    page = client.get(f"/portal/memoranda/{memorandum.id}").text
    assert status_of(page, "own-status") == "pending"
    assert 'id="sign-signer_name" name="signer_name" type="text" value="Николай Георгиев"' in page
    assert client.get(f"/portal/memoranda/{memorandum.id}/pdf?variant=signed").status_code == 404

    pdf = client.get(f"/portal/memoranda/{memorandum.id}/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["cache-control"] == "private, no-store"
    assert status_of(client.get(f"/portal/memoranda/{memorandum.id}").text, "own-status") == "viewed"

    blank = client.post(
        f"/portal/memoranda/{memorandum.id}/sign", data={"csrf_token": token, "signer_name": "Н", "signer_title": ""}
    )
    assert blank.status_code == 422
    assert field_error(blank.text, "sign-signer_name") == "This field is required."
    assert field_error(blank.text, "sign-signer_title") == "This field is required."
    assert 'value="Н"' in blank.text
    assert db.parties(memorandum.id)[0].signed_at is None

    signed = client.post(
        f"/portal/memoranda/{memorandum.id}/sign",
        data={"csrf_token": token, "signer_name": "Николай Георгиев", "signer_title": "управител"},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == f"/portal/memoranda/{memorandum.id}?done=signed"
    party = db.parties(memorandum.id)[0]
    assert (party.signer_name, party.signer_title, party.method) == (
        "Николай Георгиев",
        "управител",
        SignatureMethod.click,
    )
    assert party.signer_user_id == world["water_user"].id
    assert db.get(Memorandum, memorandum.id).status == MemorandumStatus.partially_signed
    page = client.get(signed.headers["location"]).text
    assert 'id="done-notice"' in page
    assert status_of(page, "own-status") == "signed"
    assert f'action="/portal/memoranda/{memorandum.id}/sign"' not in page
    again = client.post(
        f"/portal/memoranda/{memorandum.id}/sign",
        data={"csrf_token": token, "signer_name": "Николай Георгиев", "signer_title": "управител"},
    )
    assert again.status_code == 409
    assert "This party has already signed." in again.text


def test_in_order_a_later_partner_waits_for_the_earlier_one(client, session, world, db):
    memorandum = make_issued(session, world["coordinator"], [world["water"], world["transport"]], sequential=True)
    token = log_in(client, world["transport_user"])
    page = client.get(f"/portal/memoranda/{memorandum.id}").text
    assert 'id="wait-notice"' in page
    assert f'action="/portal/memoranda/{memorandum.id}/sign"' not in page
    early = client.post(
        f"/portal/memoranda/{memorandum.id}/sign",
        data={"csrf_token": token, "signer_name": "Васил Тодоров", "signer_title": "управител"},
    )
    assert early.status_code == 409
    assert "The parties sign in order, and an earlier party has not signed yet." in early.text
    assert db.parties(memorandum.id)[1].signed_at is None

    service.sign(
        session=session, actor=world["water_user"], memorandum=memorandum, organisation_id=None,
        signer_name="Николай Георгиев", signer_title="управител",
    )  # fmt: skip
    page = client.get(f"/portal/memoranda/{memorandum.id}").text
    assert f'action="/portal/memoranda/{memorandum.id}/sign"' in page
    assert 'value="Васил Тодоров"' in page


def test_the_partner_declines_with_a_reason(client, session, world, db):
    memorandum = make_issued(session, world["coordinator"], [world["water"], world["transport"]])
    token = log_in(client, world["water_user"])
    url = f"/portal/memoranda/{memorandum.id}"
    short = client.post(f"{url}/decline", data={"csrf_token": token, "reason": "не"})
    assert short.status_code == 422
    assert field_error(short.text, "decline-reason") == "This field is required."
    assert 'id="decline" open' in short.text
    declined = client.post(
        f"{url}/decline", data={"csrf_token": token, "reason": "Складът ни е наводнен."}, follow_redirects=False
    )
    assert declined.status_code == 303, declined.text
    memorandum = db.get(Memorandum, memorandum.id)
    assert (memorandum.status, memorandum.status_reason) == (MemorandumStatus.declined, "Складът ни е наводнен.")
    party = db.parties(memorandum.id)[0]
    assert party.declined_at is not None and party.decline_reason == "Складът ни е наводнен."
    page = client.get(f"{url}?done=declined").text
    assert status_of(page, "memorandum-status") == "declined"
    assert f'action="{url}/decline"' not in page and f'action="{url}/sign"' not in page

    other = TestClient(client.app)
    other_token = log_in(other, world["transport_user"])
    late = other.post(f"{url}/decline", data={"csrf_token": other_token, "reason": "И ние отказваме."})
    assert late.status_code == 409
    assert re.search(r'id="refusal"><p>This memorandum is not awaiting signatures.</p>', late.text)
