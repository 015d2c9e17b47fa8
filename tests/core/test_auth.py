"""Logging in and out, throttling and lock-out, tokens, how passwords are kept, and the admin-only users API."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.audit import AuditEntry
from service.config import settings
from service.db import utcnow, write_engine
from service.users.models import AuthToken, User
from tests.factories import PASSWORD, api_headers, make_partner, make_user, page_login
from tests.partners.state import registry_state

HUGE = "99999999999999999999"


def token_response(client: TestClient, email: str, password: str):
    return client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}, headers={"Accept-Language": "en"}
    )


def browser(app) -> TestClient:
    """A browser of its own, reading English, with the CSRF cookie already set."""
    client = TestClient(app, follow_redirects=False)
    client.cookies.set("accord_lang", "en")
    client.get("/login")
    return client


def form_login(client: TestClient, email: str, password: str, next: str = ""):
    return client.post(
        "/login",
        data={"email": email, "password": password, "next": next, "csrf_token": client.cookies.get("accord_csrf")},
    )


def login_message(html: str) -> str:
    found = re.search(r'<p class="notice error-box" role="alert">(.*?)</p>', html, re.S)
    assert found, "the login page shows no message"
    return found.group(1).strip()


def update_user(engine, user_id: int, **values) -> None:
    """Changes a user's row directly in the database (to move clocks without waiting)."""
    with Session(write_engine(engine)) as s:
        s.execute(sa.update(User).where(User.id == user_id).values(**values))
        s.commit()


def stored_user(engine, user_id: int) -> User:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(User, user_id)


# --- logging in ---------------------------------------------------------------------------------------


def test_api_login_gives_a_bearer_token_for_that_user(client, session):
    coordinator = make_user(session, "coordinator", email="koordinator@example.test")
    response = token_response(client, "  Koordinator@Example.TEST ", PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.token_hours * 3600
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == coordinator.id and "password_hash" not in me.json()

    for authorization in ["", "Bearer", "Bearer not-a-token", f"Basic {body['access_token']}", body["access_token"]]:
        refused = client.get("/api/v1/users/me", headers={"Authorization": authorization})
        assert refused.status_code == 401, authorization
        assert refused.headers["www-authenticate"] == "Bearer"


def test_form_login_starts_a_session_and_goes_to_the_users_home(app, session):
    coordinator = make_user(session, "coordinator")
    partner = make_user(session, "partner", organisation=make_partner(session))
    for user, home in [(coordinator, "/staff"), (partner, "/portal")]:
        client = browser(app)
        response = form_login(client, user.email, PASSWORD)
        assert response.status_code == 303
        assert response.headers["location"] == home
        cookie = response.headers["set-cookie"]
        assert "accord_session=" in cookie and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert client.get(home).status_code == 200
        # Already logged in: the login page sends the user on.
        assert client.get("/login").headers["location"] == home


def test_wrong_password_and_unknown_email_get_the_same_answer(client, app, session, engine):
    user = make_user(session, "coordinator")
    wrong = token_response(client, user.email, "not-the-password")
    unknown = token_response(client, "nobody@example.test", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"

    page = browser(app)
    wrong_page = form_login(page, user.email, "not-the-password")
    unknown_page = form_login(page, "nobody@example.test", "not-the-password")
    assert wrong_page.status_code == unknown_page.status_code == 401
    assert login_message(wrong_page.text) == login_message(unknown_page.text) == "Wrong e-mail or password."
    assert 'value="nobody@example.test"' in unknown_page.text  # the e-mail is kept; the password is not
    assert "not-the-password" not in unknown_page.text
    assert "accord_session" not in page.cookies
    assert stored_user(engine, user.id).failed_logins == 2


def test_repeated_failures_are_slowed_down_then_locked_out(client, app, session, engine):
    user = make_user(session, "coordinator")
    for _ in range(settings.login_slowdown_after):
        assert token_response(client, user.email, "wrong-password").status_code == 401

    # Inside the back-off window even the right password is refused, and the answer says how long to wait.
    slowed = token_response(client, user.email, PASSWORD)
    assert slowed.status_code == 429
    assert int(slowed.headers["retry-after"]) >= 1
    page = form_login(browser(app), user.email, PASSWORD)
    assert page.status_code == 429
    assert "Try again in" in login_message(page.text)
    assert stored_user(engine, user.id).failed_logins == settings.login_slowdown_after  # refusals not counted

    # Each later failure, once its window has passed, counts; the last one locks the account.
    for failures in range(settings.login_slowdown_after + 1, settings.login_lock_after + 1):
        update_user(engine, user.id, last_failed_login_at=utcnow() - timedelta(minutes=2))
        assert token_response(client, user.email, "wrong-password").status_code == 401, failures
    stored = stored_user(engine, user.id)
    assert stored.locked_until is not None
    assert stored.locked_until - utcnow() > timedelta(minutes=settings.login_lock_minutes - 1)

    # Locked: no back-off window is left, yet the right password is refused, for minutes.
    update_user(engine, user.id, last_failed_login_at=utcnow() - timedelta(hours=1))
    locked = token_response(client, user.email, PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) == settings.login_lock_minutes * 60
    assert f"{settings.login_lock_minutes} min" in locked.json()["detail"]
    assert "locked" in locked.json()["detail"]
    locked_page = form_login(browser(app), user.email, PASSWORD)
    assert locked_page.status_code == 429
    assert f"{settings.login_lock_minutes} min" in login_message(locked_page.text)

    # When the lock has run out, the right password works and the count starts again.
    update_user(engine, user.id, locked_until=utcnow() - timedelta(seconds=1))
    assert token_response(client, user.email, PASSWORD).status_code == 200
    stored = stored_user(engine, user.id)
    assert (stored.failed_logins, stored.locked_until) == (0, None)


# --- tokens and sessions --------------------------------------------------------------------------------


def test_a_deactivated_user_cannot_log_in_and_their_logins_stop_working(client, app, session):
    admin = make_user(session, "admin")
    coordinator = make_user(session, "coordinator")
    admin_headers = api_headers(client, admin)
    headers = api_headers(client, coordinator)
    page = browser(app)
    page_login(page, coordinator)
    assert page.get("/staff/partners").status_code == 200

    deactivated = client.patch(f"/api/v1/users/{coordinator.id}", json={"is_active": False}, headers=admin_headers)
    assert deactivated.status_code == 200 and deactivated.json()["is_active"] is False

    assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    assert client.get("/api/v1/partners", headers=headers).status_code == 401
    assert page.get("/staff/partners").headers["location"] == "/login?next=/staff/partners"
    refused = token_response(client, coordinator.email, PASSWORD)
    assert refused.status_code == 401
    assert refused.json() == token_response(client, coordinator.email, "wrong-password").json()

    client.patch(f"/api/v1/users/{coordinator.id}", json={"is_active": True}, headers=admin_headers)
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200


def test_tokens_expire_and_each_kind_works_only_where_it_belongs(client, app, session, engine):
    coordinator = make_user(session, "coordinator")
    headers = api_headers(client, coordinator)
    page = browser(app)
    page_login(page, coordinator)
    session_token = page.cookies.get("accord_session")

    # A page session is no bearer token, and a bearer token is no page session.
    assert client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {session_token}"}).status_code == 401
    other = TestClient(app, follow_redirects=False)
    other.cookies.set("accord_session", headers["Authorization"].removeprefix("Bearer "))
    assert other.get("/staff/partners").status_code == 303

    with Session(write_engine(engine)) as s:
        s.execute(sa.update(AuthToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    assert client.get("/api/v1/users/me", headers=headers).status_code == 401
    assert page.get("/staff/partners").headers["location"] == "/login?next=/staff/partners"


def test_logout_ends_the_session_for_good(app, session, engine):
    coordinator = make_user(session, "coordinator")
    page = browser(app)
    token = page_login(page, coordinator)
    raw = page.cookies.get("accord_session")
    assert page.get("/staff").status_code == 200

    response = page.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert 'accord_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]
    with Session(engine) as s:
        assert s.exec(select(AuthToken).where(AuthToken.user_id == coordinator.id)).all() == []

    # Even a copy of the cookie kept from before is of no use now.
    replay = TestClient(app, follow_redirects=False)
    replay.cookies.set("accord_session", raw)
    assert replay.get("/staff").headers["location"] == "/login?next=/staff"


# --- passwords ---------------------------------------------------------------------------------------


def test_passwords_are_kept_only_as_argon2id_hashes(client, session, engine):
    admin_headers = api_headers(client, make_user(session, "admin"))
    org = make_partner(session)
    created = client.post(
        "/api/v1/users",
        json={
            "email": "new@staff.example",
            "full_name": "Нов",
            "password": "correct-horse-1",
            "roles": ["coordinator"],
        },
        headers=admin_headers,
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert "password" not in created.text
    partner = client.post(
        f"/api/v1/partners/{org.id}/users",
        json={"email": "rep@partner.example", "full_name": "Представител", "password": "battery-staple-2"},
        headers=admin_headers,
    )
    assert partner.status_code == 201
    changed = client.patch(f"/api/v1/users/{user_id}", json={"password": "new-password-3"}, headers=admin_headers)
    assert changed.status_code == 200

    with Session(engine) as s:
        hashes = {u.email: u.password_hash for u in s.exec(select(User))}
        audit_text = " ".join(f"{e.before} {e.after}" for e in s.exec(select(AuditEntry)))
    for email, password in [("new@staff.example", "new-password-3"), ("rep@partner.example", "battery-staple-2")]:
        assert hashes[email].startswith("$argon2id$")
        assert password not in hashes[email]
    for secret in ["correct-horse-1", "new-password-3", "battery-staple-2", *hashes.values()]:
        assert secret not in audit_text
    assert token_response(client, "new@staff.example", "correct-horse-1").status_code == 401
    assert token_response(client, "new@staff.example", "new-password-3").status_code == 200


# --- the users API ------------------------------------------------------------------------------------


def test_the_users_api_is_for_administrators_only(client, session, engine):
    org = make_partner(session)
    admin = make_user(session, "admin")
    target = make_user(session, "communications")
    callers = {
        "coordinator": make_user(session, "coordinator"),
        "communications": target,
        "partner": make_user(session, "partner", organisation=org),
    }
    new = {"email": "x@staff.example", "full_name": "Х", "password": "a-long-password", "roles": ["admin"]}
    routes = [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", new),
        ("GET", f"/api/v1/users/{target.id}", None),
        ("PATCH", f"/api/v1/users/{target.id}", {"roles": ["admin"]}),
        ("PATCH", f"/api/v1/users/{admin.id}", {"is_active": False}),
    ]
    before = registry_state(engine)
    for method, path, body in routes:
        assert client.request(method, path, json=body).status_code == 401, (method, path)
    for role, user in callers.items():
        headers = api_headers(client, user)
        for method, path, body in routes:
            assert client.request(method, path, json=body, headers=headers).status_code == 403, (role, method, path)
        # Everyone may see who they are logged in as, and only that.
        me = client.get("/api/v1/users/me", headers=headers)
        assert me.status_code == 200 and me.json()["email"] == user.email
    assert client.get("/api/v1/users/me").status_code == 401
    assert registry_state(engine) == before

    headers = api_headers(client, admin)
    listed = client.get("/api/v1/users?limit=2&offset=1", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 4 and len(listed.json()["items"]) == 2
    assert client.get(f"/api/v1/users/{target.id}", headers=headers).json()["email"] == target.email
    assert client.get(f"/api/v1/users/{org.id + 1000}", headers=headers).status_code == 404
    for path in [f"/api/v1/users/{HUGE}", "/api/v1/users/-1", "/api/v1/users/me2"]:
        assert client.get(path, headers=headers).status_code == 422, path
    assert client.post("/api/v1/users", json=new, headers=headers).status_code == 201


def test_roles_are_validated(client, session, engine):
    org = make_partner(session)
    admin_headers = api_headers(client, make_user(session, "admin"))
    staff = make_user(session, "coordinator", email="staff@staff.example")
    partner = make_user(session, "partner", organisation=org)
    base = {"email": "new@staff.example", "full_name": "Нов", "password": "a-long-password"}
    before = registry_state(engine)

    for body, loc in [
        ({"roles": ["partner"]}, ("body", "organisation_id")),
        ({"roles": ["partner"], "organisation_id": org.id + 1000}, ("body", "organisation_id")),
        ({"roles": ["partner"], "organisation_id": int(HUGE)}, ("body", "organisation_id")),
        ({"roles": ["coordinator"], "organisation_id": org.id}, ("body", "organisation_id")),
        ({"roles": ["admin"], "organisation_id": org.id}, ("body", "organisation_id")),
        ({"roles": ["partner", "coordinator"], "organisation_id": org.id}, ("body", "roles")),
        ({"roles": []}, ("body", "roles")),
        ({}, ("body", "roles")),
        ({"roles": ["superuser"]}, ("body", "roles", 0)),
        ({"roles": "admin"}, ("body", "roles")),
        ({"roles": ["coordinator"], "password": "short"}, ("body", "password")),
        ({"roles": ["coordinator"], "email": "not-an-address"}, ("body", "email")),
        ({"roles": ["coordinator"], "language": "de"}, ("body", "language")),
    ]:
        response = client.post("/api/v1/users", json={**base, **body}, headers=admin_headers)
        assert response.status_code == 422, (body, response.text)
        assert any(tuple(item["loc"]) == loc for item in response.json()["detail"]), (loc, response.json())

    for user, body, loc in [
        (staff, {"organisation_id": org.id}, ("body", "organisation_id")),
        (partner, {"roles": ["coordinator"]}, ("body", "organisation_id")),
        (partner, {"roles": ["partner", "admin"]}, ("body", "roles")),
        (partner, {"organisation_id": None}, ("body", "organisation_id")),
        (staff, {"roles": None}, ("body", "roles")),
    ]:
        response = client.patch(f"/api/v1/users/{user.id}", json=body, headers=admin_headers)
        assert response.status_code == 422, (body, response.text)
        assert any(tuple(item["loc"]) == loc for item in response.json()["detail"]), (loc, response.json())

    taken = client.post(
        "/api/v1/users", json={**base, "email": staff.email, "roles": ["coordinator"]}, headers=admin_headers
    )
    assert taken.status_code == 409
    assert registry_state(engine) == before

    moved = client.patch(
        f"/api/v1/users/{partner.id}", json={"roles": ["coordinator"], "organisation_id": None}, headers=admin_headers
    )
    assert moved.status_code == 200
    assert (moved.json()["roles"], moved.json()["organisation_id"]) == (["coordinator"], None)


def test_an_admin_cannot_remove_their_own_admin_access(client, app, session, engine):
    admin = make_user(session, "admin")
    other_admin = make_user(session, "admin")
    headers = api_headers(client, admin)
    before = registry_state(engine)
    for body in [{"roles": ["coordinator"]}, {"roles": ["communications", "coordinator"]}, {"is_active": False}]:
        response = client.patch(f"/api/v1/users/{admin.id}", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == ["body", "roles"]
    page = browser(app)
    token = page_login(page, admin)
    refused = page.post(f"/staff/users/{admin.id}/active", data={"csrf_token": token})
    assert refused.status_code == 422
    assert "You cannot remove your own administrator access." in refused.text
    assert page.post(f"/staff/users/{HUGE}/active", data={"csrf_token": token}).status_code == 422
    assert registry_state(engine) == before

    # Adding a role to oneself is fine, and another administrator may take the role away.
    assert client.patch(
        f"/api/v1/users/{admin.id}", json={"roles": ["admin", "coordinator"]}, headers=headers
    ).is_success
    demoted = client.patch(
        f"/api/v1/users/{admin.id}", json={"roles": ["coordinator"]}, headers=api_headers(client, other_admin)
    )
    assert demoted.status_code == 200 and demoted.json()["roles"] == ["coordinator"]
    assert client.get("/api/v1/users", headers=headers).status_code == 403


# --- where a login leads --------------------------------------------------------------------------------


def test_login_goes_on_only_to_a_page_of_this_site(app, session):
    coordinator = make_user(session, "coordinator")
    client = browser(app)
    for next_url in [
        "//evil.example",
        "//evil.example/staff",
        "https://evil.example/",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
    ]:
        response = form_login(client, coordinator.email, PASSWORD, next=next_url)
        assert response.status_code == 303
        assert response.headers["location"] == "/staff", next_url
        # Logged in already: the login page's `next` is checked the same way.
        assert client.get("/login", params={"next": next_url}).headers["location"] == "/staff", next_url
        client.cookies.delete("accord_session")

    # Characters a browser drops from a URL (tab, newline) cannot smuggle in a second slash.
    form_login(client, coordinator.email, PASSWORD)
    for next_url in ["/\t/evil.example", "/\n/evil.example"]:
        location = client.get("/login", params={"next": next_url}).headers["location"]
        assert not re.sub(r"[\t\r\n]", "", location).startswith("//") and not urlsplit(location).netloc, location

    response = form_login(client, coordinator.email, PASSWORD, next="/staff/partners?q=вода")
    assert response.headers["location"] == "/staff/partners?q=%D0%B2%D0%BE%D0%B4%D0%B0"
