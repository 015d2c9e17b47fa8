"""The public verification: by the code printed on every page, by the issued or the signed PDF's SHA-256, and by
uploading the PDF; unknown and tampered documents; the status in words; JSON for `Accept: application/json`;
answers a proxy may share (no session, no form token, Cache-Control and ETag)."""

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.memoranda import archive, public, service
from service.memoranda.models import Memorandum
from service.users.models import User
from tests.factories import make_partner, make_user
from tests.memoranda.build import issue, make_active, make_draft, make_issued, on_paper
from tests.memoranda.test_pages import log_in

JSON = {"Accept": "application/json"}
WATER = "„Минерална вода Струма“ ЕООД"


@pytest.fixture
def world(session: Session) -> dict:
    coordinator = make_user(session, "coordinator")
    water = make_partner(session, name=WATER, kind="business", registration_number="113003225")
    transport = make_partner(session, name="„Транс Логистик Примерно“ ООД", kind="business")
    return {"coordinator": coordinator, "water": water, "transport": transport}


@pytest.fixture
def active(session: Session, world: dict) -> Memorandum:
    """A memorandum in force, with its issued and its signed PDF."""
    return make_active(session, world["coordinator"], [world["water"]])


def sign_every_party(session: Session, actor: User, memorandum: Memorandum) -> Memorandum:
    """Every party signs, without the final PDF (one render fewer, where a test needs only the status)."""
    for party in service.parties_of(session=session, memorandum=memorandum):
        memorandum = service.sign(
            session=session, actor=actor, memorandum=memorandum, organisation_id=party.organisation_id,
            signer_name="Мария Иванова", signer_title="Представител", **on_paper(party),
        )  # fmt: skip
    return memorandum


def verdict(html: str) -> dict[str, str]:
    tag = re.search(r'<div class="verdict [^"]*" id="verdict"([^>]*)>', html).group(1)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag))


def tampered(pdf: bytes) -> bytes:
    """The same PDF with one byte changed: a digit of its creation date."""
    at = pdf.index(b"/CreationDate (D:") + len(b"/CreationDate (D:") + 3
    return pdf[:at] + (b"1" if pdf[at : at + 1] != b"1" else b"2") + pdf[at + 1 :]


# --- by code and by hash -------------------------------------------------------------------------


def test_by_code_the_page_says_genuine_in_force_with_the_parties_and_a_proxy_may_keep_it(client, active, world):
    code = active.verification_code
    answer = client.get(f"/verify/{code}")
    assert answer.status_code == 200
    assert verdict(answer.text) == {"genuine": "true", "status": "active", "matched": "code"}
    assert 'data-in-force="true"' in answer.text
    assert '<html lang="bg">' in answer.text, "Bulgarian by default"
    assert WATER in answer.text and "113003225" in answer.text
    assert answer.text.count('data-signed="true"') == 2, "both parties signed"
    assert active.sha256 in answer.text and active.signed_sha256 in answer.text
    assert answer.headers["cache-control"] == "public, max-age=60"
    assert "Accept" in answer.headers["vary"] and "Cookie" in answer.headers["vary"]
    etag = answer.headers["etag"]
    assert client.get(f"/verify/{code}", headers={"If-None-Match": etag}).status_code == 304

    english = client.get(f"/verify/{code}?lang=en")
    assert '<html lang="en">' in english.text
    assert "In force until" in english.text
    assert "Logistics support in emergencies" in english.text
    assert 'href="/verify/' in english.text
    typed = client.get(f"/verify/{code[:4].lower()} {code[4:8]}-{code[8:].lower()}?lang=en")
    assert typed.status_code == 200, "spaces, dashes and lower case, as people type a code"
    assert verdict(typed.text)["matched"] == "code"


def test_the_page_carries_no_session_no_token_and_no_name_even_for_a_logged_in_reader(client, active, world):
    log_in(client, world["coordinator"])
    answer = client.get(f"/verify/{active.verification_code}")
    assert answer.status_code == 200
    assert 'name="csrf_token"' not in answer.text
    assert world["coordinator"].email not in answer.text
    assert 'action="/logout"' not in answer.text
    assert "Мария Иванова" not in answer.text, "signers' names are not published"


def test_by_the_issued_or_the_signed_sha256(client, active):
    issued = client.get(f"/verify/{active.sha256}?lang=en")
    assert issued.status_code == 200
    assert verdict(issued.text)["matched"] == "issued"
    assert "A signed PDF, with every signature, also exists." in issued.text
    signed = client.get(f"/verify/{active.signed_sha256.upper()}?lang=en")
    assert verdict(signed.text)["matched"] == "signed"

    body = client.get(f"/verify/{active.signed_sha256}", headers=JSON).json()
    assert body["genuine"] is True and body["matched"] == "signed"
    assert (body["status"], body["in_force"], body["code"]) == ("active", True, active.verification_code)
    assert (body["sha256"], body["signed_sha256"]) == (active.sha256, active.signed_sha256)
    assert body["valid_from"] == active.valid_from.isoformat()
    assert body["valid_until"] == active.valid_until.isoformat()
    assert body["issued_on"] == service.today().isoformat()
    assert body["parties"][0] == {
        "name": WATER, "registration_number": "113003225", "signed": True,
        "signed_on": service.today().isoformat(), "declined": False,
    }  # fmt: skip
    assert body["parties"][1]["signed"] is True and body["parties"][1]["registration_number"] == "000697371"
    assert client.get(f"/verify/{active.verification_code}", headers=JSON).json()["matched"] == "code"


def test_an_unknown_code_or_hash_is_not_found_and_a_draft_is_not_on_record(client, session, world):
    draft = make_draft(session, world["coordinator"], [world["water"]])
    for key in ("AAAAAAAAAAAAAAAA", "0" * 64, draft.verification_code, "x" * 300, "1 OR 1=1; --"):
        answer = client.get(f"/verify/{key}?lang=en")
        assert answer.status_code == 404, key
        assert verdict(answer.text) == {"genuine": "false"}, key
        assert "Not found: this document is not genuine, or the code is mistyped" in answer.text
        assert client.get(f"/verify/{key}", headers=JSON).json() == {"genuine": False}
    assert client.get("/verify/AAAAAAAAAAAAAAAA", headers=JSON).status_code == 404


def test_the_status_in_words_for_every_end_of_a_memorandum(client, session, world):
    coordinator, water, transport = world["coordinator"], world["water"], world["transport"]

    def answer(memorandum: Memorandum) -> tuple[dict, str]:
        body = client.get(f"/verify/{memorandum.verification_code}", headers=JSON).json()
        page = client.get(f"/verify/{memorandum.verification_code}?lang=en").text
        words = re.search(r'id="status-words"[^>]*><strong>([^<]*)</strong>', page).group(1)
        return body, words.replace("&#39;", "'")

    waiting = make_issued(session, coordinator, [water, transport])
    service.sign(session=session, actor=coordinator, memorandum=waiting, organisation_id=None,
                 signer_name="Петър Димитров", signer_title="кмет")  # fmt: skip
    body, words = answer(waiting)
    assert (body["status"], body["in_force"]) == ("partially_signed", False)
    assert words == "Not yet in force: awaiting signatures (1 of 3 parties have signed)"

    service.cancel(session=session, actor=coordinator, memorandum=waiting, reason="Вътрешна причина")
    body, words = answer(waiting)
    assert body["status"] == "cancelled"
    assert words == "Never in force: the municipality cancelled it before it was signed"
    assert "Вътрешна причина" not in client.get(f"/verify/{waiting.verification_code}").text

    declined = make_issued(session, coordinator, [water])
    service.decline(session=session, actor=coordinator, memorandum=declined, organisation_id=water.id, reason="Не")
    body, words = answer(declined)
    assert (body["status"], words) == ("declined", "Never in force: a party declined to sign it")

    ended = sign_every_party(session, coordinator, make_issued(session, coordinator, [water]))
    service.terminate(session=session, actor=coordinator, memorandum=ended, reason="По взаимно съгласие")
    body, words = answer(ended)
    assert (body["status"], body["in_force"]) == ("terminated", False)
    assert body["ended_on"] == service.today().isoformat()
    assert words.startswith("Terminated on ") and words.endswith(": no longer in force")

    old = sign_every_party(session, coordinator, make_issued(session, coordinator, [water]))
    assert service.expire_due(session=session, on=old.valid_until + timedelta(days=1)) == 1
    body, words = answer(old)
    assert body["status"] == "expired" and words.startswith("Expired: it was in force until ")

    renewal = service.renew(session=session, actor=coordinator, memorandum=old)
    renewal = sign_every_party(session, coordinator, issue(session, coordinator, renewal))
    body, words = answer(old)
    assert (body["status"], body["superseded_by"]) == ("superseded", renewal.verification_code)
    assert words == f"Superseded by memorandum {renewal.verification_code}: no longer in force"
    assert f'href="/verify/{renewal.verification_code}"' in client.get(f"/verify/{old.verification_code}").text
    body, _words = answer(renewal)
    assert body["status"] == "active"
    assert body["in_force"] is (renewal.valid_from <= service.today())


# --- by upload -----------------------------------------------------------------------------------


def test_an_uploaded_genuine_pdf_is_recognised_as_issued_or_signed(client, active):
    issued_pdf, signed_pdf = archive.load(active.sha256), archive.load(active.signed_sha256)
    issued = client.post("/verify?lang=en", files={"file": ("memorandum.pdf", issued_pdf, "application/pdf")})
    assert issued.status_code == 200
    assert verdict(issued.text) == {"genuine": "true", "status": "active", "matched": "issued"}
    assert "The file you uploaded is, byte for byte, the PDF of this memorandum as issued for signing." in issued.text
    assert issued.headers["cache-control"] == "no-store"
    signed = client.post("/verify", files={"file": ("signed.pdf", signed_pdf, "application/pdf")}, headers=JSON)
    assert signed.status_code == 200
    assert signed.json()["genuine"] is True and signed.json()["matched"] == "signed"


def test_a_tampered_pdf_is_not_genuine_and_the_page_names_the_code_it_carries(client, active):
    changed = tampered(archive.load(active.sha256))
    answer = client.post("/verify?lang=en", files={"file": ("memorandum.pdf", changed, "application/pdf")})
    assert answer.status_code == 404
    assert verdict(answer.text) == {"genuine": "false"}
    assert "This file is NOT a genuine memorandum" in answer.text
    assert f'id="carries-code" data-code="{active.verification_code}"' in answer.text
    assert f"although it carries the code of memorandum {active.verification_code}" in answer.text
    assert f'href="/verify/{active.verification_code}?lang=en"' in answer.text
    assert "Genuine memorandum" not in answer.text

    body = client.post("/verify", files={"file": ("m.pdf", changed, "application/pdf")}, headers=JSON)
    assert body.status_code == 404
    code = active.verification_code
    assert body.json() == {"genuine": False, "carries_code": code, "verify_url": service.verify_url(code)}

    stranger = b"%PDF-1.4\n% not a memorandum; its code would be K7Q2M4XHNRBT3WZP\n%%EOF\n"
    unknown = client.post("/verify?lang=en", files={"file": ("other.pdf", stranger, "application/pdf")})
    assert unknown.status_code == 404
    assert "carries no code of one" in unknown.text
    assert client.post("/verify", files={"file": ("o.pdf", stranger)}, headers=JSON).json() == {"genuine": False}


def test_an_upload_that_is_not_a_pdf_missing_or_too_large_is_refused_with_a_message(client, monkeypatch):
    not_pdf = client.post("/verify?lang=en", files={"file": ("photo.jpg", b"\xff\xd8\xff\xe0", "image/jpeg")})
    assert not_pdf.status_code == 422
    assert re.search(r'id="file-error" role="alert">This is not a PDF file.', not_pdf.text)
    nothing = client.post("/verify?lang=en", data={"file": ""})
    assert nothing.status_code == 422
    assert "Choose the PDF file to check." in nothing.text
    monkeypatch.setattr(public, "MAX_UPLOAD_BYTES", 100)
    big = b"%PDF-1.4\n" + b"0" * 200
    too_big = client.post("/verify?lang=en", files={"file": ("big.pdf", big, "application/pdf")})
    assert too_big.status_code == 413
    assert "The file is larger than 25 MB." in too_big.text
    huge = client.post("/verify", files={"file": ("huge.pdf", big + b"0" * 70_000, "application/pdf")}, headers=JSON)
    assert huge.status_code == 413, "refused by its Content-Length, before it is read"
    assert huge.json()["genuine"] is False


def test_the_form_page_and_a_typed_code(client):
    form = client.get("/verify?lang=en")
    assert form.status_code == 200
    assert 'action="/verify?lang=en" enctype="multipart/form-data"' in form.text
    assert '<form method="get" action="/verify"' in form.text
    assert 'name="csrf_token"' not in form.text, "nothing to forge: the checks change nothing"
    assert form.headers["cache-control"].startswith("public")
    typed = client.get("/verify", params={"key": " k7q2 m4xh-nrbt 3wzp "}, follow_redirects=False)
    assert (typed.status_code, typed.headers["location"]) == (303, "/verify/K7Q2M4XHNRBT3WZP")
    empty = client.get("/verify", params={"key": "  ", "lang": "en"})
    assert empty.status_code == 422
    assert re.search(r'id="key-error" role="alert">Type the verification code', empty.text)
    # From the front page of another client, no cookies at all: the same shared answer.
    assert TestClient(client.app).get("/verify").status_code == 200
