"""Malformed, oversized and hostile input to the partner registry, through the API and the HTML forms.

A refusal is a clear 4xx that names the field (the API's `detail[].loc`, the form's message beside the
field, the form shown again with what was typed) and changes nothing. Hostile text that is valid is kept
exactly as typed and only ever shown escaped.
"""

import csv
import io
import re
from typing import Any

from fastapi.testclient import TestClient
from markupsafe import escape
from sqlmodel import Session, func, select

from service.partners import service as partners
from service.partners.models import Contact, ContactCreate, Organisation
from service.users.models import AuthToken, User
from tests.factories import api_headers, make_partner, make_user, page_login
from tests.partners.state import registry_state

VALID_EIK = "175074752"
BAD_EIKS = {
    "wrong check digit": "175074753",
    "a person's 10-digit EGN": "7501010010",
    "letters": "17507475A",
    "too short": "1750747",
}
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SQL = "Robert'); DROP TABLE organisation; --"
HUGE = "99999999999999999999"


def has_error_at(response: Any, *loc: Any) -> bool:
    """Whether an API 422 names `loc` (e.g. "body", "name") among its field errors."""
    detail = response.json().get("detail")
    return isinstance(detail, list) and any(tuple(item.get("loc", ())) == loc for item in detail)


def field_error(html: str, field: str) -> str | None:
    """The message shown beside `field` in a form, or None."""
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error"[^>]*>(.*?)</p>', html, re.S)
    return found.group(1).strip() if found else None


def shows_input(html: str, field: str, value: str, prefix: str = "") -> bool:
    """Whether the form holds `value` in its `field` input (or textarea), escaped as HTML."""
    shown = str(escape(value))
    inputs = re.finditer(rf'<input id="{re.escape(prefix + field)}" name="{re.escape(field)}"[^>]*>', html)
    textareas = re.finditer(rf'<textarea id="{re.escape(field)}"[^>]*>(.*?)</textarea>', html, re.S)
    return any(f'value="{shown}"' in tag.group(0) for tag in inputs) or any(t.group(1) == shown for t in textareas)


def logged_in(app, user: User) -> tuple[TestClient, str]:
    """A browser of its own, logged in as `user`, reading English; with its CSRF token."""
    browser = TestClient(app, follow_redirects=False)
    browser.cookies.set("accord_lang", "en")
    return browser, page_login(browser, user)


# --- the JSON API ----------------------------------------------------------------------------------------

ORG = {"name": "Сдружение „Проба“", "kind": "ngo"}
CREATE_CASES = [
    *[({**ORG, "registration_number": eik}, ("body", "registration_number")) for eik in BAD_EIKS.values()],
    ({"kind": "ngo"}, ("body", "name")),
    ({"name": "Сдружение „Проба“"}, ("body", "kind")),
    ({**ORG, "name": " "}, ("body", "name")),
    ({**ORG, "name": "я" * 301}, ("body", "name")),
    ({**ORG, "name_en": "a" * 301}, ("body", "name_en")),
    ({**ORG, "capabilities": "я" * 5001}, ("body", "capabilities")),
    ({**ORG, "address": "я" * 501}, ("body", "address")),
    ({**ORG, "name": 12345}, ("body", "name")),
    ({**ORG, "kind": 5}, ("body", "kind")),
    ({**ORG, "kind": "cartel"}, ("body", "kind")),
    ({**ORG, "sectors": "food"}, ("body", "sectors")),
    ({**ORG, "sectors": ["food", "weapons"]}, ("body", "sectors", 1)),
    ({**ORG, "sectors": ["food"] * 13}, ("body", "sectors")),
    ({**ORG, "website": "javascript:alert(1)"}, ("body", "website")),
    ({**ORG, "website": "https://" + "a" * 300 + ".example"}, ("body", "website")),
    ({**ORG, "email": "not-an-address"}, ("body", "email")),
    ({**ORG, "phone": SCRIPT}, ("body", "phone")),
    ({**ORG, "verification_status": "verified"}, ("body", "verification_status")),
    ({**ORG, "owner_id": 1}, ("body", "owner_id")),
    ([ORG], ("body",)),
]


def test_api_refuses_bad_organisation_fields_naming_them(client, session, engine):
    headers = api_headers(client, make_user(session, "coordinator"))
    org = make_partner(session, registration_number=VALID_EIK)
    before = registry_state(engine)

    for body, loc in CREATE_CASES:
        response = client.post("/api/v1/partners?allow_duplicate=true", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        assert has_error_at(response, *loc), (loc, response.json())

    for body, loc in [
        ({"registration_number": BAD_EIKS["wrong check digit"]}, ("body", "registration_number")),
        ({"registration_number": BAD_EIKS["a person's 10-digit EGN"]}, ("body", "registration_number")),
        ({"name": "я" * 301}, ("body", "name")),
        ({"capabilities": "я" * 5001}, ("body", "capabilities")),
        ({"sectors": "food"}, ("body", "sectors")),
        ({"kind": 3}, ("body", "kind")),
        ({"kind": "cartel"}, ("body", "kind")),
        ({"verification_status": "verified"}, ("body", "verification_status")),
        ({"id": org.id + 1}, ("body", "id")),
        ({"name": None}, ("body", "name")),
    ]:
        response = client.patch(f"/api/v1/partners/{org.id}", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        assert has_error_at(response, *loc), (loc, response.json())

    malformed = client.post(
        "/api/v1/partners", content=b'{"name": "x", ', headers={**headers, "content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert registry_state(engine) == before


def test_api_refuses_bad_contacts_suspensions_and_logins(client, session, engine):
    headers = api_headers(client, make_user(session, "coordinator"))
    org = make_partner(session)
    other = make_partner(session)
    contact = partners.add_contact(session=session, actor="test", org=org, data=ContactCreate(full_name="Дежурен"))
    before = registry_state(engine)

    contacts = f"/api/v1/partners/{org.id}/contacts"
    for method, path, body, loc in [
        ("POST", contacts, {}, ("body", "full_name")),
        ("POST", contacts, {"full_name": "я" * 301}, ("body", "full_name")),
        ("POST", contacts, {"full_name": "Иван", "role": "я" * 201}, ("body", "role")),
        ("POST", contacts, {"full_name": "Иван", "phone": "call me"}, ("body", "phone")),
        ("POST", contacts, {"full_name": "Иван", "email": "ivan@"}, ("body", "email")),
        ("POST", contacts, {"full_name": "Иван", "is_primary": "maybe"}, ("body", "is_primary")),
        ("POST", contacts, {"full_name": "Иван", "organisation_id": other.id}, ("body", "organisation_id")),
        ("PATCH", f"{contacts}/{contact.id}", {"full_name": None}, ("body", "full_name")),
        ("PATCH", f"{contacts}/{contact.id}", {"phone": SCRIPT}, ("body", "phone")),
        ("PATCH", f"{contacts}/{contact.id}", {"organisation_id": other.id}, ("body", "organisation_id")),
        ("POST", f"/api/v1/partners/{org.id}/suspend", {}, ("body", "reason")),
        ("POST", f"/api/v1/partners/{org.id}/suspend", {"reason": "x"}, ("body", "reason")),
        ("POST", f"/api/v1/partners/{org.id}/suspend", {"reason": "я" * 501}, ("body", "reason")),
        ("POST", f"/api/v1/partners/{org.id}/users", {"email": "rep@partner.example"}, ("body", "password")),
        (
            "POST",
            f"/api/v1/partners/{org.id}/users",
            {"email": "rep@partner.example", "full_name": "Представител", "password": "short"},
            ("body", "password"),
        ),
        (
            "POST",
            f"/api/v1/partners/{org.id}/users",
            {"email": "not-an-address", "full_name": "Представител", "password": "a-long-password"},
            ("body", "email"),
        ),
        (
            "POST",
            f"/api/v1/partners/{org.id}/users",
            {"email": "rep@partner.example", "full_name": "Р", "password": "a-long-password", "roles": ["admin"]},
            ("body", "roles"),
        ),
    ]:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 422, (method, path, body, response.text)
        assert has_error_at(response, *loc), (loc, response.json())
    assert registry_state(engine) == before


def test_api_refuses_huge_negative_and_malformed_ids_and_query_values(client, session, engine):
    headers = api_headers(client, make_user(session, "coordinator"))
    org = make_partner(session)
    contact = partners.add_contact(session=session, actor="test", org=org, data=ContactCreate(full_name="Дежурен"))
    before = registry_state(engine)

    for method, path, loc in [
        ("GET", f"/api/v1/partners/{HUGE}", ("path", "organisation_id")),
        ("GET", "/api/v1/partners/2147483648", ("path", "organisation_id")),
        ("GET", "/api/v1/partners/-1", ("path", "organisation_id")),
        ("GET", "/api/v1/partners/0", ("path", "organisation_id")),
        ("GET", "/api/v1/partners/1e3", ("path", "organisation_id")),
        ("GET", "/api/v1/partners/1;DROP", ("path", "organisation_id")),
        ("PATCH", f"/api/v1/partners/{HUGE}", ("path", "organisation_id")),
        ("POST", f"/api/v1/partners/{HUGE}/verify", ("path", "organisation_id")),
        ("GET", f"/api/v1/partners/{HUGE}/contacts", ("path", "organisation_id")),
        ("GET", f"/api/v1/partners/{HUGE}/users", ("path", "organisation_id")),
        ("PATCH", f"/api/v1/partners/{org.id}/contacts/{HUGE}", ("path", "contact_id")),
        ("DELETE", f"/api/v1/partners/{org.id}/contacts/{HUGE}", ("path", "contact_id")),
        ("DELETE", f"/api/v1/partners/{org.id}/contacts/-{contact.id}", ("path", "contact_id")),
        ("GET", f"/api/v1/partners?limit={HUGE}", ("query", "limit")),
        ("GET", "/api/v1/partners?limit=0", ("query", "limit")),
        ("GET", "/api/v1/partners?offset=-1", ("query", "offset")),
        ("GET", "/api/v1/partners?kind=cartel", ("query", "kind")),
        ("GET", "/api/v1/partners?sector=1", ("query", "sector")),
        ("GET", "/api/v1/partners?q=" + "я" * 201, ("query", "q")),
        ("GET", "/api/v1/partners/export.csv?verification_status=bogus", ("query", "verification_status")),
    ]:
        body = {"phone": "1"} if method == "PATCH" else None
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 422, (method, path, response.text)
        assert has_error_at(response, *loc), (loc, response.json())

    # SQL in the search box is only ever a search term.
    found = client.get("/api/v1/partners", params={"q": "' OR 1=1 --"}, headers=headers)
    assert found.status_code == 200 and found.json()["total"] == 0
    assert registry_state(engine) == before


# --- the HTML forms ---------------------------------------------------------------------------------------


def test_staff_forms_show_each_error_beside_its_field_with_the_input_kept(app, session, engine):
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="Сдружение „Първо“", registration_number=VALID_EIK)
    staff, token = logged_in(app, coordinator)
    before = registry_state(engine)

    new_form = {"name": "Сдружение „Ново“", "kind": "ngo", "csrf_token": token}
    for changes, field, typed in [
        *[({"registration_number": eik}, "registration_number", eik) for eik in BAD_EIKS.values()],
        ({"name": ""}, "name", None),
        ({"name": "я" * 301}, "name", "я" * 301),
        ({"kind": ""}, "kind", None),
        ({"kind": "cartel"}, "kind", None),
        ({"kind": "5"}, "kind", None),
        ({"sectors": ["food", "weapons"]}, "sectors", None),
        ({"capabilities": "я" * 5001}, "capabilities", "я" * 5001),
        ({"address": IMG + "я" * 500}, "address", IMG + "я" * 500),
        ({"website": "javascript:alert(1)"}, "website", "javascript:alert(1)"),
        ({"email": SCRIPT}, "email", SCRIPT),
        ({"phone": IMG}, "phone", IMG),
    ]:
        response = staff.post("/staff/partners/new", data={**new_form, **changes})
        assert response.status_code == 422, (changes, response.status_code)
        assert field_error(response.text, field), (field, changes)
        assert f'aria-describedby="{field}-error"' in response.text
        if typed is not None:
            assert shows_input(response.text, field, typed), (field, typed)
        assert shows_input(response.text, "name", new_form["name"]) or "name" in changes
    # A field the form does not have (here one only staff actions may set) is refused, not applied.
    smuggled = staff.post("/staff/partners/new", data={**new_form, "verification_status": "verified"})
    assert smuggled.status_code == 422
    assert "error-box" in smuggled.text

    edit = f"/staff/partners/{org.id}/edit"
    edit_form = {"name": org.name, "kind": "ngo", "registration_number": VALID_EIK, "csrf_token": token}
    for changes, field in [
        ({"registration_number": BAD_EIKS["wrong check digit"]}, "registration_number"),
        ({"name": " "}, "name"),
        ({"capabilities": "я" * 5001}, "capabilities"),
        ({"kind": "cartel"}, "kind"),
    ]:
        response = staff.post(edit, data={**edit_form, **changes})
        assert response.status_code == 422, changes
        assert field_error(response.text, field), (field, response.text)
        if field not in ("kind", "name"):
            assert shows_input(response.text, field, changes[field])

    detail = f"/staff/partners/{org.id}"
    for path, data, field in [
        (f"{detail}/suspend", {"reason": "x"}, "reason"),
        (f"{detail}/suspend", {"reason": "я" * 501}, "reason"),
        (f"{detail}/contacts", {"role": "Дежурен"}, "full_name"),
        (f"{detail}/contacts", {"full_name": "Иван", "phone": "call me"}, "phone"),
        (f"{detail}/contacts", {"full_name": "Иван", "email": "ivan@"}, "email"),
        (f"{detail}/users", {"full_name": "Р", "email": "rep@partner.example", "password": "shrtpw1"}, "password"),
        (f"{detail}/users", {"full_name": "Р", "email": "rep@", "password": "a-long-password"}, "email"),
    ]:
        response = staff.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 422, (path, data)
        # The new-login form's fields carry a `user-` prefix: the contact form on the same page has the same names.
        shown_as = f"user-{field}" if path.endswith("/users") else field
        assert field_error(response.text, shown_as), (path, field)
        if field in data and field != "password":
            prefix = "user-" if path.endswith("/users") else ""
            assert shows_input(response.text, field, data[field], prefix), (path, field)
        assert "shrtpw1" not in response.text  # a password is never sent back

    for path in [
        f"/staff/partners/{HUGE}",
        "/staff/partners/-1",
        f"/staff/partners/{HUGE}/edit",
        "/staff/partners?limit=" + HUGE,
    ]:
        response = staff.get(path)
        assert response.status_code == 422, path
        assert response.headers["content-type"].startswith("text/html")
    refused = staff.post(f"/staff/partners/{org.id}/contacts/{HUGE}/delete", data={"csrf_token": token})
    assert refused.status_code == 422
    assert registry_state(engine) == before


def test_portal_forms_show_errors_and_keep_identity_fields_out_of_reach(app, session, engine):
    org = make_partner(session, name="Сдружение „Портал“", registration_number=VALID_EIK)
    contact = partners.add_contact(session=session, actor="test", org=org, data=ContactCreate(full_name="Дежурен"))
    portal, token = logged_in(app, make_user(session, "partner", organisation=org))
    before = registry_state(engine)

    for changes, field in [
        ({"website": "javascript:alert(1)"}, "website"),
        ({"capabilities": "я" * 5001}, "capabilities"),
        ({"name_en": "a" * 301}, "name_en"),
        ({"email": "office@"}, "email"),
        ({"sectors": ["weapons"]}, "sectors"),
    ]:
        response = portal.post("/portal/organisation/edit", data={**changes, "csrf_token": token})
        assert response.status_code == 422, changes
        assert field_error(response.text, field), field
        if field != "sectors":
            assert shows_input(response.text, field, changes[field])

    for path, data, field in [
        ("/portal/contacts", {"role": "Дежурен"}, "full_name"),
        ("/portal/contacts", {"full_name": "Иван", "email": "ivan@"}, "email"),
        (f"/portal/contacts/{contact.id}/edit", {"full_name": "Иван", "phone": "call me"}, "phone"),
        (f"/portal/contacts/{contact.id}/edit", {"full_name": "я" * 301}, "full_name"),
    ]:
        response = portal.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 422, (path, data)
        assert field_error(response.text, field), (path, field)
        assert all(shows_input(response.text, name, value) for name, value in data.items()), (path, data)

    for path in [f"/portal/contacts/{HUGE}/edit", "/portal/contacts/-1/edit"]:
        assert portal.get(path).status_code == 422
    assert portal.post(f"/portal/contacts/{HUGE}/delete", data={"csrf_token": token}).status_code == 422
    assert registry_state(engine) == before

    # The portal form has no name, kind, EIK or verification: sent anyway, they change nothing.
    sneaky = {"name": "Ново име", "kind": "business", "registration_number": "113003225"}
    sneaky |= {"verification_status": "verified", "phone": "+359 2 1", "csrf_token": token}
    assert portal.post("/portal/organisation/edit", data=sneaky).status_code == 303
    session.expire_all()
    stored = session.get(Organisation, org.id)
    assert (stored.name, stored.kind, stored.registration_number) == (org.name, org.kind, VALID_EIK)
    assert stored.verification_status == "pending" and stored.phone == "+359 2 1"
    session.rollback()


# --- CSRF ----------------------------------------------------------------------------------------------


def auth_tokens(engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(AuthToken)).one()


def test_every_page_post_needs_the_csrf_token_of_its_own_browser(app, session, engine):
    org = make_partner(session)
    contact = partners.add_contact(session=session, actor="test", org=org, data=ContactCreate(full_name="Дежурен"))
    coordinator = make_user(session, "coordinator")
    partner = make_user(session, "partner", organisation=org)
    staff, staff_token = logged_in(app, coordinator)
    portal, portal_token = logged_in(app, partner)
    anonymous = TestClient(app, follow_redirects=False)
    anonymous.get("/login")
    # Bodies that would succeed with the right token.
    posts = [
        (staff, "/staff/partners/new", {"name": "Сдружение „Ново“", "kind": "ngo"}),
        (staff, f"/staff/partners/{org.id}/edit", {"name": "Ново име", "kind": "ngo"}),
        (staff, f"/staff/partners/{org.id}/verify", {}),
        (staff, f"/staff/partners/{org.id}/suspend", {"reason": "Проверка"}),
        (staff, f"/staff/partners/{org.id}/contacts", {"full_name": "Иван"}),
        (staff, f"/staff/partners/{org.id}/contacts/{contact.id}/delete", {}),
        (staff, f"/staff/partners/{org.id}/users", {"full_name": "Р", "email": "r@partner.example",
                                                     "password": "a-long-password"}),
        (portal, "/portal/organisation/edit", {"phone": "+359 2 1"}),
        (portal, "/portal/contacts", {"full_name": "Иван"}),
        (portal, f"/portal/contacts/{contact.id}/edit", {"full_name": "Иван"}),
        (portal, f"/portal/contacts/{contact.id}/delete", {}),
        (staff, "/language", {"language": "bg"}),
        (staff, "/logout", {}),
        (anonymous, "/login", {"email": coordinator.email, "password": "test-password-1"}),
    ]  # fmt: skip
    before, tokens_before = registry_state(engine), auth_tokens(engine)

    for browser, path, data in posts:
        good = browser.cookies.get("accord_csrf")
        # A browser without the cookie (a cross-site form sent with only the victim's session cookie).
        cookieless = TestClient(app, follow_redirects=False)
        if session_cookie := browser.cookies.get("accord_session"):
            cookieless.cookies.set("accord_session", session_cookie)
        for sender, form in [
            (browser, {**data, "csrf_token": "forged-" + good}),
            (browser, {**data, "csrf_token": ""}),
            (browser, data),
            (cookieless, {**data, "csrf_token": good}),
        ]:
            response = sender.post(path, data=form)
            assert response.status_code == 403, (path, form, response.status_code)
            assert "text/html" in response.headers["content-type"]
            assert registry_state(engine) == before, (path, form)
            assert auth_tokens(engine) == tokens_before, (path, form)
    # Still logged in (the refused logout did nothing), and the right token still works.
    assert staff.get("/staff/partners").status_code == 200
    assert staff.post("/logout", data={"csrf_token": staff_token}).status_code == 303
    assert staff.get("/staff/partners").status_code == 303
    assert portal.post(f"/portal/contacts/{contact.id}/delete", data={"csrf_token": portal_token}).status_code == 303


# --- hostile text ---------------------------------------------------------------------------------------


def assert_escaped(html: str, *texts: str) -> None:
    """No markup from the data got into the page, and each text is there, escaped."""
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "onerror=alert(1)>" not in html
    for text in texts:
        assert str(escape(text)) in html, text


def test_hostile_text_is_stored_exactly_and_shown_only_escaped(client, app, session, engine):
    coordinator = make_user(session, "coordinator")
    headers = api_headers(client, coordinator)
    texts = {
        "name": SCRIPT,
        "name_en": IMG,
        "capabilities": f"{SCRIPT}\n{IMG}\n{SQL}",
        "address": IMG,
        "service_area": SQL,
    }
    created = client.post(
        "/api/v1/partners",
        json={**texts, "kind": "ngo", "website": "https://evil.example/?q=<script>alert(1)</script>"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    org_id = created.json()["id"]
    contact = client.post(
        f"/api/v1/partners/{org_id}/contacts",
        json={"full_name": IMG, "role": SCRIPT, "is_primary": True},
        headers=headers,
    )
    assert contact.status_code == 201
    second = client.post(f"/api/v1/partners/{org_id}/contacts", json={"full_name": "Втори контакт"}, headers=headers)
    assert second.status_code == 201
    suspended = client.post(f"/api/v1/partners/{org_id}/suspend", json={"reason": SCRIPT}, headers=headers)
    assert suspended.status_code == 200
    staff, token = logged_in(app, coordinator)
    by_form = staff.post(
        "/staff/partners/new",
        data={"name": IMG, "name_en": SCRIPT, "kind": "media", "capabilities": SQL, "allow_duplicate": "on",
              "csrf_token": token},
    )  # fmt: skip
    assert by_form.status_code == 303, by_form.text
    form_org_id = int(by_form.headers["location"].split("/")[3].split("?")[0])
    member = staff.post(
        f"/staff/partners/{org_id}/users",
        data={"full_name": SCRIPT, "email": "rep@partner.example", "password": "a-long-password", "csrf_token": token},
    )
    assert member.status_code == 303

    # Stored as typed, and given back as typed by the API.
    session.expire_all()
    org = session.get(Organisation, org_id)
    assert {field: getattr(org, field) for field in texts} == texts
    assert org.suspended_reason == SCRIPT
    stored_contact = session.get(Contact, contact.json()["id"])
    assert (stored_contact.full_name, stored_contact.role) == (IMG, SCRIPT)
    form_org = session.get(Organisation, form_org_id)
    assert (form_org.name, form_org.name_en, form_org.capabilities) == (IMG, SCRIPT, SQL)
    session.rollback()
    shown = client.get(f"/api/v1/partners/{org_id}", headers=headers).json()
    assert {field: shown[field] for field in texts} == texts

    # Shown escaped to staff: the detail page, the edit form, the list.
    assert_escaped(staff.get(f"/staff/partners/{org_id}").text, SCRIPT, IMG, SQL)
    assert_escaped(staff.get(f"/staff/partners/{org_id}/edit").text, SCRIPT, IMG)
    assert_escaped(staff.get(f"/staff/partners/{form_org_id}").text, SCRIPT, IMG, SQL)
    assert_escaped(staff.get("/staff/partners").text, SCRIPT, IMG)

    # ... and to the organisation's own partner user in the portal.
    portal_login = TestClient(app, follow_redirects=False)
    portal_login.get("/login")
    logged = portal_login.post(
        "/login",
        data={"email": "rep@partner.example", "password": "a-long-password",
              "csrf_token": portal_login.cookies.get("accord_csrf")},
    )  # fmt: skip
    assert logged.status_code == 303
    assert_escaped(portal_login.get("/portal").text, SCRIPT, IMG, SQL)
    assert_escaped(portal_login.get("/portal/organisation/edit").text, IMG, SQL)
    assert_escaped(portal_login.get(f"/portal/contacts/{stored_contact.id}/edit").text, SCRIPT, IMG)

    # The CSV holds the text exactly (a download, never sniffed as HTML).
    for export in (client.get("/api/v1/partners/export.csv", headers=headers), staff.get("/staff/partners/export.csv")):
        assert export.status_code == 200
        assert export.headers["content-type"].startswith("text/csv")
        assert export.headers["content-disposition"].startswith("attachment")
        assert export.headers["x-content-type-options"] == "nosniff"
        rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(export.content.decode("utf-8-sig")))}
        assert {field: rows[org_id][field] for field in texts} == texts
        assert rows[org_id]["primary_contact"] == IMG  # the primary one, not the other contact
        assert (rows[form_org_id]["name"], rows[form_org_id]["name_en"]) == (IMG, SCRIPT)
