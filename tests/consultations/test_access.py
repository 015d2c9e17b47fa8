"""Who may call which consultation route: every API route × every kind of caller.

One table says the expected status per caller. Org A and org B are invited; org C is verified but not invited;
org U is neither verified nor invited. After every refusal and every read nothing changed (rows, queued e-mail,
audit log); a successful change left an audit entry; no one outside org A sees org A's comments or its
attachment, and a partner's answer names no organisation but their own.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.config import settings
from service.partners import service as partners
from service.users.models import User
from tests.consultations.state import (
    API,
    Consultations,
    changes,
    consultation_body,
    consultations_state,
    decision_body,
    pdf_bytes,
)
from tests.factories import api_headers, make_partner, make_user

ANON, PARTNER_A, PARTNER_B, PARTNER_C, PARTNER_U, COMMS, COORD, ADMIN = CALLERS = (
    "anonymous", "partner of A", "partner of B", "partner of C", "partner of U", "communications", "coordinator",
    "admin",
)  # fmt: skip
PARTNERS = (PARTNER_A, PARTNER_B, PARTNER_C, PARTNER_U)
OUTSIDERS = (ANON, PARTNER_B, PARTNER_C, PARTNER_U, COMMS)  # who must never see org A's submission
REFUSED = (401, 403, 404)
COMMENTS_A = "Предлагаме срокът да е 12 месеца — Иван Алфов, тел. 0888 123 456"
FILE_A = "становище-алфа.pdf"


@pytest.fixture(autouse=True)
def attachments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Attachments go to the test's own folder, never the project's `var/`."""
    monkeypatch.setattr(settings, "attachments_dir", tmp_path / "attachments")
    return tmp_path / "attachments"


@dataclass
class World:
    build: Consultations
    orgs: dict[str, int]  # "A", "B", "C", "U" → organisation id
    users: dict[str, User]
    shared: int = 0  # open, inviting A and B, with both their submissions (A's with an attachment)
    sub_a: int = 0
    sub_b: int = 0

    def invited(self) -> list[int]:
        return [self.orgs["A"], self.orgs["B"]]

    def consultation(self, state: str, **fields: Any) -> int:
        return self.build.make(state, self.invited(), **fields)

    def with_submission_of_a(self) -> tuple[int, int]:
        """A fresh open consultation with org A's submission; (its id, the submission's id)."""
        cid = self.build.make("open", self.invited())
        return cid, self.build.submit(cid, self.orgs["A"], self.users[PARTNER_A], comments=COMMENTS_A)


# Where a route aims: the ids for the path's {c} and {s}, fresh where the call would use it up.
def shared(w: World) -> dict[str, int]:
    return {"c": w.shared, "s": w.sub_a}


def draft(w: World) -> dict[str, int]:
    return {"c": w.consultation("draft")}


def fresh_open(w: World) -> dict[str, int]:
    return {"c": w.consultation("open")}


def closed(w: World) -> dict[str, int]:
    return {"c": w.consultation("closed")}


def decided(w: World) -> dict[str, int]:
    return {"c": w.consultation("decided", votes={w.orgs["A"]: "for"})}


def published(w: World) -> dict[str, int]:
    return {"c": w.consultation("published", votes={w.orgs["A"]: "for"})}


def submitted_by_a(w: World) -> dict[str, int]:
    cid, sid = w.with_submission_of_a()
    return {"c": cid, "s": sid}


# Bodies, built per call.
def create_body(w: World) -> dict[str, Any]:
    return consultation_body(w.invited())


def title(w: World) -> dict[str, Any]:
    return {"title": "Мерки за подпомагане (ново заглавие)"}


def position(w: World) -> dict[str, Any]:
    return {"position": "support", "comments": "Подкрепяме мерките."}


def votes(w: World) -> dict[str, Any]:
    return decision_body({w.orgs["A"]: "for", w.orgs["B"]: "abstain"})


def a_pdf(w: World) -> dict[str, Any]:
    return {"file": ("становище.pdf", pdf_bytes(title="Второ становище"), "application/pdf")}


@dataclass
class Route:
    method: str
    path: str
    body: Callable[[World], Any] | None
    target: Callable[[World], dict[str, int]]
    expected: dict[str, int] = field(default_factory=dict)
    files: Callable[[World], Any] | None = None


def route(method: str, path: str, body, target, *statuses: int, files=None) -> Route:
    return Route(method, path, body, target, dict(zip(CALLERS, statuses, strict=True)), files)


C, S = API + "/{c}", API + "/{c}/submissions"
API_ROUTES = [
    #     method   path                      body         target          anon  pA   pB   pC   pU  comms coord admin
    route("GET",   API,                      None,        shared,         401, 200, 200, 200, 200, 403, 200, 200),
    route("POST",  API,                      create_body, shared,         401, 403, 403, 403, 403, 403, 201, 201),
    route("GET",   C,                        None,        shared,         401, 200, 200, 404, 404, 403, 200, 200),
    route("GET",   C,                        None,        draft,          401, 404, 404, 404, 404, 403, 200, 200),
    route("PATCH", C,                        title,       draft,          401, 403, 403, 403, 403, 403, 200, 200),
    route("POST",  C + "/open",              None,        draft,          401, 403, 403, 403, 403, 403, 200, 200),
    route("POST",  C + "/close",             None,        fresh_open,     401, 403, 403, 403, 403, 403, 200, 200),
    route("GET",   S,                        None,        shared,         401, 200, 200, 404, 404, 403, 200, 200),
    route("GET",   S,                        None,        draft,          401, 404, 404, 404, 404, 403, 200, 200),
    # A position is an organisation's own act: staff do not submit one in its name.
    route("POST",  S,                        position,    fresh_open,     401, 201, 201, 404, 404, 403, 403, 403),
    route("POST",  S,                        position,    draft,          401, 404, 404, 404, 404, 403, 403, 403),
    route("GET",   S + "/{s}/attachment",    None,        shared,         401, 200, 404, 404, 404, 403, 200, 200),
    route("PUT",   S + "/{s}/attachment",    None,        submitted_by_a, 401, 200, 404, 404, 404, 403, 403, 403,
          files=a_pdf),
    route("GET",   C + "/decision",          None,        decided,        401, 404, 404, 404, 404, 403, 200, 200),
    route("GET",   C + "/decision",          None,        published,      401, 200, 200, 404, 404, 403, 200, 200),
    route("POST",  C + "/decision",          votes,       closed,         401, 403, 403, 403, 403, 403, 201, 201),
    route("POST",  C + "/decision/publish",  None,        decided,        401, 403, 403, 403, 403, 403, 200, 200),
]  # fmt: skip


def build_world(session, engine) -> World:
    coordinator = make_user(session, "coordinator")
    orgs = {
        "A": make_partner(session, name="Сдружение „Алфа Тестова“"),  # pending: taking part by invitation only
        "B": make_partner(session, name="Камара „Бета Проверка“", kind="professional_association"),
        "C": make_partner(session, name="„Гама Одит“ ООД", kind="business"),
        "U": make_partner(session, name="Група „Ипсилон“", kind="volunteer_group"),
    }
    for key in ("B", "C"):
        partners.verify(session=session, actor=coordinator, org=orgs[key])
    users = {COORD: coordinator, ADMIN: make_user(session, "admin"), COMMS: make_user(session, "communications")}
    for key, caller in zip("ABCU", PARTNERS, strict=True):
        users[caller] = make_user(session, "partner", organisation=orgs[key])
    w = World(Consultations(engine, coordinator), {k: org.id for k, org in orgs.items()}, users)
    w.shared = w.consultation("open")
    w.sub_a = w.build.submit(w.shared, w.orgs["A"], users[PARTNER_A], comments=COMMENTS_A)
    w.sub_b = w.build.submit(w.shared, w.orgs["B"], users[PARTNER_B], position="oppose", comments="Бета е против.")
    w.build.attach(w.shared, w.sub_a, users[PARTNER_A], pdf_bytes(title="Становище на Алфа"), FILE_A)
    return w


def organisations_in(value: Any) -> set[int]:
    """Every `organisation_id` anywhere in a JSON answer."""
    if isinstance(value, dict):
        found = {value["organisation_id"]} if "organisation_id" in value else set()
        return found.union(*(organisations_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(organisations_in(v) for v in value))
    return set()


def check_call(caller: str, r: Route, path: str, response: Any, before: dict, after: dict, w: World) -> list[str]:
    """What is wrong with one call's outcome (nothing, if it went as the table says)."""
    expected, got = r.expected[caller], response.status_code
    where = f"{caller:>14}  {r.method:5} {path}"
    problems = []
    if got != expected:
        problems.append(f"{where}: expected {expected}, got {got} {response.text[:150]!r}")
    if got in REFUSED or r.method == "GET":
        if changed := changes(before, after):
            problems.append(f"{where}: answered {got}, yet changed {changed[:3]}")
        if got in REFUSED and not response.json().get("detail"):
            problems.append(f"{where}: a refusal that says nothing")
    elif after["audit_rows"] <= before["audit_rows"]:
        problems.append(f"{where}: a change that left no audit entry")
    if got == 401 and response.headers.get("www-authenticate") != "Bearer":
        problems.append(f"{where}: 401 without WWW-Authenticate: Bearer")
    if caller in OUTSIDERS and (COMMENTS_A in response.text or FILE_A in response.text):
        problems.append(f"{where}: the answer shows org A's submission")
    if caller in PARTNERS and response.headers.get("content-type", "").startswith("application/json"):
        own = w.orgs["ABCU"[PARTNERS.index(caller)]]
        # A published decision names every organisation that voted: it is public.
        if (foreign := organisations_in(response.json()) - {own}) and not path.endswith("/decision"):
            problems.append(f"{where}: the answer shows organisations {foreign}")
    return problems


def test_api_access_matrix(client, session, engine):
    w = build_world(session, engine)
    headers = {ANON: {}} | {caller: api_headers(client, user) for caller, user in w.users.items()}
    problems = []
    for caller in CALLERS:
        for r in API_ROUTES:
            path = r.path.format(**r.target(w))
            kwargs = {"files": r.files(w)} if r.files else {"json": r.body(w) if r.body else None}
            before = consultations_state(engine)
            response = client.request(r.method, path, headers=headers[caller], **kwargs)
            problems += check_call(caller, r, path, response, before, consultations_state(engine), w)
    assert not problems, "\n".join(problems)


@pytest.fixture
def world(client, session, engine) -> tuple[World, dict[str, dict[str, str]]]:
    w = build_world(session, engine)
    return w, {caller: api_headers(client, user) for caller, user in w.users.items()}


def test_partners_read_and_revise_only_their_own_submission(client, engine, world):
    w, headers = world
    a, b, staff = headers[PARTNER_A], headers[PARTNER_B], headers[COORD]
    path = f"{API}/{w.shared}/submissions"
    before = consultations_state(engine)

    assert [(s["id"], s["comments"]) for s in client.get(path, headers=a).json()] == [(w.sub_a, COMMENTS_A)]
    assert [s["id"] for s in client.get(path, headers=b).json()] == [w.sub_b]
    assert sorted(s["id"] for s in client.get(path, headers=staff).json()) == sorted([w.sub_a, w.sub_b])
    # Another organisation's attachment looks exactly like a submission that does not exist.
    foreign = client.get(f"{path}/{w.sub_a}/attachment", headers=b)
    absent = client.get(f"{path}/999999/attachment", headers=b)
    assert foreign.status_code == absent.status_code == 404 and foreign.json() == absent.json()
    mine = client.get(f"{path}/{w.sub_a}/attachment", headers=a)
    assert mine.status_code == 200 and mine.content == pdf_bytes(title="Становище на Алфа")
    # Nor can B replace A's attachment: the same 404, and nothing stored.
    files = {"file": ("чуждо.pdf", pdf_bytes(title="Чуждо"), "application/pdf")}
    assert client.put(f"{path}/{w.sub_a}/attachment", files=files, headers=b).status_code == 404
    assert changes(before, consultations_state(engine)) == []

    # Sending a position revises only the sender's own organisation's submission.
    revised = client.post(path, json={"position": "amend", "comments": "Бета предлага промени."}, headers=b)
    assert revised.status_code == 200 and revised.json()["id"] == w.sub_b, revised.text
    after = consultations_state(engine)
    assert after["Submission"][w.sub_a] == before["Submission"][w.sub_a]
    assert after["Submission"][w.sub_b]["revision"] == 2
    # A submission names no organisation: a partner cannot speak for another one.
    other = client.post(path, json={"position": "oppose", "organisation_id": w.orgs["A"]}, headers=b)
    assert other.status_code == 422
    assert changes(after, consultations_state(engine)) == []


def test_a_partner_not_invited_cannot_see_the_consultation_nor_submit(client, engine, world):
    w, headers = world
    missing = client.get(f"{API}/999999", headers=headers[PARTNER_C]).json()
    before = consultations_state(engine)
    for caller in (PARTNER_C, PARTNER_U):
        h = headers[caller]
        assert client.get(API, headers=h).json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
        for method, path, body in [
            ("GET", f"{API}/{w.shared}", None),
            ("GET", f"{API}/{w.shared}/submissions", None),
            ("POST", f"{API}/{w.shared}/submissions", {"position": "support"}),
        ]:
            response = client.request(method, path, json=body, headers=h)
            assert response.status_code == 404, (caller, path, response.text)
            assert response.json() == missing
    assert changes(before, consultations_state(engine)) == []


def test_open_to_all_lets_every_verified_partner_take_part_and_no_unverified_one(client, engine, session, world):
    w, headers = world
    suspended = make_partner(session, name="Фондация „Сигма“")
    partners.verify(session=session, actor=w.users[COORD], org=suspended)
    partners.suspend(session=session, actor=w.users[COORD], org=suspended, reason="Проверка")
    s_headers = api_headers(client, make_user(session, "partner", organisation=suspended))
    cid = w.build.make("open", [], open_to_all=True)
    path = f"{API}/{cid}/submissions"

    for caller in (PARTNER_B, PARTNER_C):  # verified: B is invited elsewhere, C nowhere
        h = headers[caller]
        assert cid in [c["id"] for c in client.get(API, headers=h).json()["items"]]
        assert client.get(f"{API}/{cid}", headers=h).status_code == 200
        assert client.post(path, json={"position": "support"}, headers=h).status_code == 201
    before = consultations_state(engine)
    for who, h in [("pending A", headers[PARTNER_A]), ("unverified U", headers[PARTNER_U]), ("suspended", s_headers)]:
        assert cid not in [c["id"] for c in client.get(API, headers=h).json()["items"]], who
        assert client.get(f"{API}/{cid}", headers=h).status_code == 404, who
        assert client.post(path, json={"position": "support"}, headers=h).status_code == 404, who
    assert changes(before, consultations_state(engine)) == []
    assert sorted(s["organisation_id"] for s in client.get(path, headers=headers[COORD]).json()) == sorted(
        [w.orgs["B"], w.orgs["C"]]
    )


def test_partners_never_see_drafts(client, engine, world):
    w, headers = world
    a = headers[PARTNER_A]
    cid = w.consultation("draft")
    before = consultations_state(engine)
    assert cid not in [c["id"] for c in client.get(API, headers=a).json()["items"]]
    assert cid not in [c["id"] for c in client.get(f"{API}?status=draft", headers=a).json()["items"]]
    assert client.get(f"{API}?status=draft", headers=a).json()["total"] == 0
    assert client.get(f"{API}/{cid}", headers=a).status_code == 404
    assert client.post(f"{API}/{cid}/submissions", json={"position": "support"}, headers=a).status_code == 404
    assert changes(before, consultations_state(engine)) == []
    assert cid in [c["id"] for c in client.get(f"{API}?status=draft", headers=headers[COORD]).json()["items"]]

    assert client.post(f"{API}/{cid}/open", headers=headers[COORD]).status_code == 200
    assert cid in [c["id"] for c in client.get(API, headers=a).json()["items"]]
    assert client.get(f"{API}/{cid}", headers=a).json()["status"] == "open"


def test_a_partner_sees_the_decision_only_once_it_is_published(client, world):
    w, headers = world
    cid = w.consultation("closed")
    body = decision_body({w.orgs["A"]: "for", w.orgs["B"]: "against"}, text="Решение, още непубликувано.")
    assert client.post(f"{API}/{cid}/decision", json=body, headers=headers[COORD]).status_code == 201

    for caller in (PARTNER_A, PARTNER_B):
        hidden = client.get(f"{API}/{cid}/decision", headers=headers[caller])
        assert hidden.status_code == 404 and "непубликувано" not in hidden.text
    assert client.get(f"{API}/{cid}/decision", headers=headers[COORD]).json()["text"] == body["text"]

    assert client.post(f"{API}/{cid}/decision/publish", headers=headers[COORD]).status_code == 200
    for caller in (PARTNER_A, PARTNER_B):
        shown = client.get(f"{API}/{cid}/decision", headers=headers[caller])
        assert shown.status_code == 200
        assert shown.json()["tally"] == {"for": 1, "against": 1, "abstain": 0}
    for caller in (PARTNER_C, PARTNER_U):  # not invited: still none of their business through this route
        assert client.get(f"{API}/{cid}/decision", headers=headers[caller]).status_code == 404
