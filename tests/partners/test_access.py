"""Who may call which partner route: every API and page route × every kind of caller, always aimed at org A.

One table per interface says the expected status per caller. The callers and organisations are built once
per test and the routes are looped over inside it, so the two matrices cost two databases per backend.
After every call that changes nothing on org A (refusals, reads, a partner of B acting on B), org A is
checked unchanged; after a refusal the whole registry and the audit log are.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlmodel import Session

from service.db import write_engine
from service.partners import service as partners
from service.partners.models import ContactCreate
from tests.factories import api_headers, make_partner, make_user, page_login
from tests.partners.state import organisation_state, registry_state

ANON, PARTNER_A, PARTNER_B, COMMS, COORD, ADMIN = CALLERS = (
    "anonymous", "partner of A", "partner of B", "communications", "coordinator", "admin",
)  # fmt: skip
# Who must never see or change anything of org A.
OUTSIDERS = (ANON, PARTNER_B, COMMS)
LOGIN = "login"  # a page's answer to an anonymous caller: 303 to /login (?next=<the page> for a GET)
REFUSED = (401, 403, 404, LOGIN)
CSRF_MESSAGE = "The form has expired"

ORG_A = "Сдружение „Алфа Тестова“"
ORG_B = "Фондация „Бета Проверка“"
CONTACT_A = "Иван Алфов"
PHONE_A = "+359 888 111 222"


@dataclass
class Route:
    method: str
    path: str  # with {org} (org A's id) and {contact} (a contact of org A)
    body: Callable[[], dict[str, Any]] | None
    expected: dict[str, int | str] = field(default_factory=dict)


def route(method: str, path: str, body: Callable[[], dict[str, Any]] | None, *statuses: int | str) -> Route:
    return Route(method, path, body, dict(zip(CALLERS, statuses, strict=True)))


def unique() -> str:
    return uuid.uuid4().hex[:12]


def new_org() -> dict[str, Any]:
    return {"name": f"Организация {unique()}", "kind": "business", "sectors": ["food"]}


def new_login() -> dict[str, Any]:
    return {"email": f"rep-{unique()}@partner.example", "full_name": "Представител", "password": "a-long-password"}


def profile() -> dict[str, Any]:
    return {"phone": "+359 2 123 456", "sectors": ["water", "food"]}


def new_contact() -> dict[str, Any]:
    return {"full_name": f"Дежурен {unique()}", "phone": "+359 2 000 111"}


def contact_edit() -> dict[str, Any]:
    return {"full_name": "Иван Алфов-Петров", "role": "Дежурен"}


def reason() -> dict[str, Any]:
    return {"reason": "Проверка на данните"}


def nothing() -> dict[str, Any]:
    return {}


# Suspend comes before verify, so that each staff caller finds org A suspendable (verify lifts a suspension).
API_ROUTES = [
    #     method    path                                         body          anon  pA   pB comms coord admin
    route("GET",    "/api/v1/partners",                          None,         401, 403, 403, 403, 200, 200),
    route("POST",   "/api/v1/partners?allow_duplicate=true",     new_org,      401, 403, 403, 403, 201, 201),
    route("GET",    "/api/v1/partners/export.csv",               None,         401, 403, 403, 403, 200, 200),
    route("GET",    "/api/v1/partners/{org}",                    None,         401, 200, 404, 403, 200, 200),
    route("PATCH",  "/api/v1/partners/{org}",                    profile,      401, 200, 404, 403, 200, 200),
    route("POST",   "/api/v1/partners/{org}/suspend",            reason,       401, 403, 403, 403, 200, 200),
    route("POST",   "/api/v1/partners/{org}/verify",             None,         401, 403, 403, 403, 200, 200),
    route("GET",    "/api/v1/partners/{org}/contacts",           None,         401, 200, 404, 403, 200, 200),
    route("POST",   "/api/v1/partners/{org}/contacts",           new_contact,  401, 201, 404, 403, 201, 201),
    route("PATCH",  "/api/v1/partners/{org}/contacts/{contact}", contact_edit, 401, 200, 404, 403, 200, 200),
    route("DELETE", "/api/v1/partners/{org}/contacts/{contact}", None,         401, 204, 404, 403, 204, 204),
    route("GET",    "/api/v1/partners/{org}/users",              None,         401, 403, 403, 403, 200, 200),
    route("POST",   "/api/v1/partners/{org}/users",              new_login,    401, 403, 403, 403, 201, 201),
]  # fmt: skip


def org_form() -> dict[str, Any]:
    return {"name": ORG_A, "kind": "ngo", "phone": "+359 2 987 654", "sectors": ["shelter"]}


def new_org_form() -> dict[str, Any]:
    return {**new_org(), "allow_duplicate": "on"}


PAGE_ROUTES = [
    #     method  path                                               body          anon   pA   pB comms coord admin
    route("GET",  "/staff/partners",                                 None,         LOGIN, 403, 403, 403, 200, 200),
    route("GET",  "/staff/partners/export.csv",                      None,         LOGIN, 403, 403, 403, 200, 200),
    route("GET",  "/staff/partners/new",                             None,         LOGIN, 403, 403, 403, 200, 200),
    route("POST", "/staff/partners/new",                             new_org_form, LOGIN, 403, 403, 403, 303, 303),
    route("GET",  "/staff/partners/{org}",                           None,         LOGIN, 403, 403, 403, 200, 200),
    route("GET",  "/staff/partners/{org}/edit",                      None,         LOGIN, 403, 403, 403, 200, 200),
    route("POST", "/staff/partners/{org}/edit",                      org_form,     LOGIN, 403, 403, 403, 303, 303),
    route("POST", "/staff/partners/{org}/suspend",                   reason,       LOGIN, 403, 403, 403, 303, 303),
    route("POST", "/staff/partners/{org}/verify",                    nothing,      LOGIN, 403, 403, 403, 303, 303),
    route("POST", "/staff/partners/{org}/contacts",                  new_contact,  LOGIN, 403, 403, 403, 303, 303),
    route("POST", "/staff/partners/{org}/contacts/{contact}/delete", nothing,      LOGIN, 403, 403, 403, 303, 303),
    route("POST", "/staff/partners/{org}/users",                     new_login,    LOGIN, 403, 403, 403, 303, 303),
    # The portal always shows the caller's own organisation: a partner of B gets B, never A.
    route("GET",  "/portal",                                         None,         LOGIN, 200, 200, 403, 403, 403),
    route("GET",  "/portal/organisation/edit",                       None,         LOGIN, 200, 200, 403, 403, 403),
    route("POST", "/portal/organisation/edit",                       profile,      LOGIN, 303, 303, 403, 403, 403),
    route("POST", "/portal/contacts",                                new_contact,  LOGIN, 303, 303, 403, 403, 403),
    route("GET",  "/portal/contacts/{contact}/edit",                 None,         LOGIN, 200, 404, 403, 403, 403),
    route("POST", "/portal/contacts/{contact}/edit",                 contact_edit, LOGIN, 303, 404, 403, 403, 403),
    route("POST", "/portal/contacts/{contact}/delete",               nothing,      LOGIN, 303, 404, 403, 403, 403),
]  # fmt: skip


@dataclass
class World:
    """Org A (the target, with one contact), org B, and one user per kind of caller."""

    org_a: int
    org_b: int
    contact_a: int
    users: dict[str, Any]


def build_world(session: Session) -> World:
    org_a = make_partner(session, name=ORG_A, sectors=["food"])
    org_b = make_partner(session, name=ORG_B, sectors=["water"])
    contact = partners.add_contact(
        session=session, actor="test", org=org_a, data=ContactCreate(full_name=CONTACT_A, phone=PHONE_A)
    )
    users = {
        PARTNER_A: make_user(session, "partner", organisation=org_a),
        PARTNER_B: make_user(session, "partner", organisation=org_b),
        COMMS: make_user(session, "communications"),
        COORD: make_user(session, "coordinator"),
        ADMIN: make_user(session, "admin"),
    }
    return World(org_a=org_a.id, org_b=org_b.id, contact_a=contact.id, users=users)


def a_contact_of_a(world: World, engine, state: dict[str, Any]) -> int:
    """The id of org A's contact, adding a new one when a call before deleted it."""
    if world.contact_a not in state["contacts"]:
        with Session(write_engine(engine), expire_on_commit=False) as session:
            org = partners.get(session=session, organisation_id=world.org_a)
            contact = partners.add_contact(
                session=session, actor="test", org=org, data=ContactCreate(full_name=CONTACT_A, phone=PHONE_A)
            )
            world.contact_a = contact.id
    return world.contact_a


def check_call(
    caller: str, r: Route, path: str, response: Any, got: int | str, before: dict, after: dict, world: World
) -> list[str]:
    """What is wrong with one call's outcome (nothing, if it went as the table says)."""
    expected = r.expected[caller]
    where = f"{caller:>14}  {r.method:6} {path}"
    problems = []
    if got != expected:
        problems.append(f"{where}: expected {expected}, got {response.status_code} {response.text[:150]!r}")
    if got in REFUSED or r.method == "GET":
        if after != before:
            problems.append(f"{where}: answered {got}, yet the database changed")
    elif after["audit_rows"] <= before["audit_rows"]:
        problems.append(f"{where}: a change that left no audit entry")
    if caller in OUTSIDERS:
        if organisation_state(after, world.org_a) != organisation_state(before, world.org_a):
            problems.append(f"{where}: org A changed")
        for secret in (ORG_A, CONTACT_A, PHONE_A):
            if secret in response.text:
                problems.append(f"{where}: the answer shows org A's {secret!r}")
    return problems


def test_api_access_matrix(client, session, engine):
    world = build_world(session)
    headers = {ANON: {}} | {caller: api_headers(client, user) for caller, user in world.users.items()}
    problems = []
    state = registry_state(engine)
    for caller in CALLERS:
        for r in API_ROUTES:
            contact = a_contact_of_a(world, engine, state)
            before = registry_state(engine)
            path = r.path.format(org=world.org_a, contact=contact)
            response = client.request(
                r.method, path, json=r.body() if r.body else None, headers=headers[caller], follow_redirects=False
            )
            state = registry_state(engine)
            problems += check_call(caller, r, path, response, response.status_code, before, state, world)
            if response.status_code == 401 and response.headers.get("www-authenticate") != "Bearer":
                problems.append(f"{caller} {r.method} {path}: 401 without WWW-Authenticate: Bearer")
    assert not problems, "\n".join(problems)


def page_outcome(response: Any) -> int | str:
    """The status, with a redirect to the login page as LOGIN: coming back to a page asked for with GET;
    plain for a form's POST, whose address is no page to come back to."""
    location = response.headers.get("location", "")
    back = "/login?next=" + quote(response.request.url.path) if response.request.method == "GET" else "/login"
    if response.status_code == 303 and location == back:
        return LOGIN
    if response.status_code == 303 and location.startswith("/login"):
        return f"303 to {location}"
    return response.status_code


def test_page_access_matrix(app, session, engine):
    world = build_world(session)
    clients, tokens = {}, {}
    for caller in CALLERS:
        clients[caller] = TestClient(app, follow_redirects=False)
        clients[caller].cookies.set("accord_lang", "en")
        if caller == ANON:
            clients[caller].get("/login")  # sets the CSRF cookie: refused for being anonymous, not for CSRF
            tokens[caller] = clients[caller].cookies.get("accord_csrf")
        else:
            tokens[caller] = page_login(clients[caller], world.users[caller])
    problems = []
    state = registry_state(engine)
    for caller in CALLERS:
        for r in PAGE_ROUTES:
            contact = a_contact_of_a(world, engine, state)
            before = registry_state(engine)
            path = r.path.format(org=world.org_a, contact=contact)
            if r.method == "GET":
                response = clients[caller].get(path)
            else:
                response = clients[caller].post(path, data={**r.body(), "csrf_token": tokens[caller]})
            state = registry_state(engine)
            got = page_outcome(response)
            problems += check_call(caller, r, path, response, got, before, state, world)
            if got == 403 and (CSRF_MESSAGE in response.text or "text/html" not in response.headers["content-type"]):
                problems.append(f"{caller} {r.method} {path}: 403 is not the role check's error page")
            if got == 303 and response.headers["location"].startswith("/login"):
                problems.append(f"{caller} {r.method} {path}: a logged-in caller sent to the login page")
    assert not problems, "\n".join(problems)


def test_a_missing_or_foreign_id_is_404_and_reveals_nothing(client, app, session, engine):
    world = build_world(session)
    b = partners.get(session=session, organisation_id=world.org_b)
    contact_b = partners.add_contact(session=session, actor="test", org=b, data=ContactCreate(full_name="Петър Бетов"))
    missing = world.org_b + 1000
    coordinator = api_headers(client, world.users[COORD])
    partner_a = api_headers(client, world.users[PARTNER_A])
    before = registry_state(engine)

    for method, path, body in [
        ("GET", f"/api/v1/partners/{missing}", None),
        ("PATCH", f"/api/v1/partners/{missing}", {"phone": "1"}),
        ("POST", f"/api/v1/partners/{missing}/verify", None),
        ("POST", f"/api/v1/partners/{missing}/suspend", {"reason": "няма такава"}),
        ("GET", f"/api/v1/partners/{missing}/contacts", None),
        ("GET", f"/api/v1/partners/{missing}/users", None),
        # a real contact, but of another organisation than the one in the path
        ("PATCH", f"/api/v1/partners/{world.org_a}/contacts/{contact_b.id}", {"role": "чужд"}),
        ("DELETE", f"/api/v1/partners/{world.org_a}/contacts/{contact_b.id}", None),
        ("DELETE", f"/api/v1/partners/{world.org_a}/contacts/{contact_b.id + 1000}", None),
    ]:
        response = client.request(method, path, json=body, headers=coordinator)
        assert response.status_code == 404, (method, path, response.text)

    # To a partner user another organisation looks exactly like one that does not exist.
    foreign = client.get(f"/api/v1/partners/{world.org_b}", headers=partner_a)
    absent = client.get(f"/api/v1/partners/{missing}", headers=partner_a)
    assert foreign.status_code == absent.status_code == 404
    assert foreign.json() == absent.json()

    staff = TestClient(app, follow_redirects=False)
    staff_token = page_login(staff, world.users[COORD])
    portal = TestClient(app, follow_redirects=False)
    portal_token = page_login(portal, world.users[PARTNER_A])
    for page_client, method, path, token in [
        (staff, "GET", f"/staff/partners/{missing}", None),
        (staff, "GET", f"/staff/partners/{missing}/edit", None),
        (staff, "POST", f"/staff/partners/{missing}/verify", staff_token),
        (staff, "POST", f"/staff/partners/{world.org_a}/contacts/{contact_b.id}/delete", staff_token),
        (portal, "GET", f"/portal/contacts/{contact_b.id}/edit", None),
        (portal, "POST", f"/portal/contacts/{contact_b.id}/delete", portal_token),
        (portal, "GET", f"/portal/contacts/{contact_b.id + 1000}/edit", None),
    ]:
        data = {"csrf_token": token} if token else None
        response = page_client.request(method, path, data=data)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"].startswith("text/html")
        assert "Петър Бетов" not in response.text

    assert registry_state(engine) == before
