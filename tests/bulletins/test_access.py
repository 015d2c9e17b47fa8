"""Who may call which route of public updates and the rumour log, and what the public can see.

One table says the expected status per caller: only communications officers and administrators read or
write updates and rumours (a coordinator, a partner's user and the anonymous are refused before anything
is looked at). A call that may change its target gets a fresh one; the refused calls aim at shared ones.
After every refusal and every read nothing changed; every change left an audit entry; a refusal never
shows an unpublished text. The public surfaces show only what was published: never a draft, an update in
review or a scheduled one, and a retracted update never as current.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from service.bulletins import mirror
from service.bulletins.models import Bulletin
from service.i18n import gettext_in
from tests.bulletins.state import VERDICT, Newsroom, bulletin_body, changes, public_state, rumour_body
from tests.factories import api_headers, make_partner, make_user

ANON, PARTNER, COORD, COMMS, ADMIN, BOTH = CALLERS = (
    "anonymous", "partner", "coordinator", "communications", "admin", "coordinator+communications",
)  # fmt: skip
REFUSED = (401, 403)
SECRET = "Неизпратен текст 7F3A"  # in every update and rumour the matrix builds: no outsider may read it
B, R = "/api/v1/bulletins", "/api/v1/rumours"
ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass
class World:
    """The callers, and one update or rumour in each state a route aims at (shared by the calls that must
    be refused, and by reads)."""

    news: Newsroom
    users: dict[str, Any]
    shared: dict[str, int] = field(default_factory=dict)

    def make(self, state: str) -> int:
        if state.startswith("rumour "):
            return self.news.rumour(state.removeprefix("rumour "), wording=f"Слух. {SECRET}")
        return self.news.bulletin(state, body=f"Съобщение. {SECRET}")


def new_bulletin() -> dict[str, Any]:
    return bulletin_body(body=f"Ново. {SECRET}")


def title() -> dict[str, Any]:
    return {"title": "Заглавие след редакция"}


def reason() -> dict[str, Any]:
    return {"reason": "Проверка на достъпа"}


def correction() -> dict[str, Any]:
    return {"body": "Поправен текст на съобщението", "reason": "Проверка на достъпа"}


def new_rumour() -> dict[str, Any]:
    return rumour_body(wording=f"Нов слух. {SECRET}")


def seen_again() -> dict[str, Any]:
    return {"report_count": 7}


def verdict() -> dict[str, Any]:
    return VERDICT


@dataclass
class Route:
    method: str
    path: str
    body: Callable[[], Any] | None
    target: str  # the state of what `{id}` names: "draft", ..., "rumour new", ...
    fresh: bool  # whether a call that may act uses its target up (then each gets a new one)
    expected: dict[str, int]

    def path_for(self, w: World, caller: str) -> str:
        if "{id}" not in self.path:
            return self.path
        acts = self.fresh and self.expected[caller] < 400
        return self.path.format(id=w.make(self.target) if acts else w.shared[self.target])


ALLOWED = (COMMS, ADMIN, BOTH)


def route(method: str, path: str, body, target: str, success: int, *, fresh: bool = False) -> Route:
    """Anonymous 401; partner and coordinator 403; communications, admin and both roles `success`."""
    expected = {ANON: 401, PARTNER: 403, COORD: 403} | dict.fromkeys(ALLOWED, success)
    return Route(method, path, body, target, fresh, expected)


API_ROUTES = [
    route("GET", B, None, "draft", 200),
    route("GET", B + "?status=draft", None, "draft", 200),
    route("POST", B, new_bulletin, "draft", 201),
    route("GET", B + "/{id}", None, "draft", 200),
    route("PATCH", B + "/{id}", title, "draft", 200, fresh=True),
    route("DELETE", B + "/{id}", None, "draft", 204, fresh=True),
    route("POST", B + "/{id}/submit", None, "draft", 200, fresh=True),
    route("POST", B + "/{id}/approve", None, "in_review", 200, fresh=True),
    route("POST", B + "/{id}/send-back", reason, "in_review", 200, fresh=True),
    route("POST", B + "/{id}/corrections", correction, "published", 201, fresh=True),
    route("GET", B + "/{id}/revisions", None, "corrected", 200),
    route("POST", B + "/{id}/retract", reason, "published", 200, fresh=True),
    route("GET", R, None, "rumour new", 200),
    route("POST", R, new_rumour, "rumour new", 201),
    route("GET", R + "/{id}", None, "rumour new", 200),
    route("PATCH", R + "/{id}", seen_again, "rumour new", 200, fresh=True),
    route("POST", R + "/{id}/verdict", verdict, "rumour investigating", 200, fresh=True),
    route("POST", R + "/{id}/fact-check", None, "rumour resolved", 201, fresh=True),
]


def build_world(session, engine) -> World:
    org = make_partner(session, name="Сдружение „Алфа“")
    author = make_user(session, "communications", email="author@example.test")
    users = {
        PARTNER: make_user(session, "partner", organisation=org),
        COORD: make_user(session, "coordinator"),
        COMMS: make_user(session, "communications"),
        ADMIN: make_user(session, "admin"),
        BOTH: make_user(session, "coordinator", "communications"),
    }
    news = Newsroom(engine, author, make_user(session, "communications", email="reviewer@example.test"))
    w = World(news=news, users=users)
    w.shared = {r.target: w.make(r.target) for r in API_ROUTES}
    return w


def check_call(caller: str, r: Route, path: str, response: Any, before: dict, after: dict) -> list[str]:
    """What is wrong with one call's outcome (nothing, if it went as the table says)."""
    expected, got = r.expected[caller], response.status_code
    where = f"{caller:>26}  {r.method:6} {path}"
    problems = []
    if got != expected:
        problems.append(f"{where}: expected {expected}, got {got} {response.text[:150]!r}")
    if got in REFUSED or r.method == "GET":
        if changed := changes(before, after):
            problems.append(f"{where}: answered {got}, yet changed {changed[:3]}")
    elif after["audit_rows"] <= before["audit_rows"]:
        problems.append(f"{where}: a change that left no audit entry")
    if got in REFUSED and (SECRET in response.text or not response.json().get("detail")):
        problems.append(f"{where}: the refusal says nothing or shows the text {response.text[:150]!r}")
    if got == 401 and response.headers.get("www-authenticate") != "Bearer":
        problems.append(f"{where}: 401 without WWW-Authenticate: Bearer")
    return problems


def test_api_access_matrix(client, session, engine):
    w = build_world(session, engine)
    headers = {ANON: {}} | {caller: api_headers(client, user) for caller, user in w.users.items()}
    problems = []
    for caller in CALLERS:
        for r in API_ROUTES:
            path = r.path_for(w, caller)
            body = r.body() if r.body else None
            before = public_state(engine)
            response = client.request(r.method, path, json=body, headers=headers[caller])
            problems += check_call(caller, r, path, response, before, public_state(engine))
    assert not problems, "\n".join(problems)


def test_a_refusal_for_the_role_looks_the_same_for_an_id_that_does_not_exist(client, session, engine):
    """An outsider learns nothing from the id: the role is refused before any update is looked at."""
    w = build_world(session, engine)
    partner, coordinator = (api_headers(client, w.users[c]) for c in (PARTNER, COORD))
    for headers in (partner, coordinator):
        for path in (f"{B}/{w.shared['draft']}", f"{R}/{w.shared['rumour new']}"):
            existing = client.get(path, headers=headers)
            missing = client.get(path.rsplit("/", 1)[0] + "/999999", headers=headers)
            assert existing.status_code == missing.status_code == 403
            assert existing.json() == missing.json()


# --- what the public sees --------------------------------------------------------------------------------

PUBLIC_LISTS = (
    "/", "/?lang=en", "/fact-checks", "/fact-checks?lang=en", "/feeds/updates.atom", "/feeds/cap.atom",
    "/api/v1/public/updates", "/api/v1/public/updates?language=bg", "/api/v1/public/updates?language=en",
)  # fmt: skip


def marker(state: str) -> str:
    return f"Маркер-{state}-9Q"


def test_the_public_sees_only_published_updates_and_a_retraction_never_as_current(client, session, engine):
    comms = make_user(session, "communications")
    news = Newsroom(engine, comms, make_user(session, "communications"))
    ids = {
        state: news.bulletin(state, title=f"Съобщение {marker(state)}", body=f"Текст {marker(state)}")
        for state in ("draft", "in_review", "scheduled", "published", "retracted")
    }
    hidden = ("draft", "in_review", "scheduled")
    before = public_state(engine)

    for path in PUBLIC_LISTS:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:200])
        for state in hidden:
            assert marker(state) not in response.text, (path, state)
    home = client.get("/").text
    assert marker("published") in home and marker("retracted") not in home
    for path in ("/api/v1/public/updates", "/api/v1/public/updates?language=bg"):
        listed = client.get(path).json()
        assert [u["id"] for u in listed["items"]] == [ids["published"]] and listed["total"] == 1, path
    for state in hidden:
        for path in (f"/updates/{ids[state]}", f"/updates/{ids[state]}?lang=en", f"/updates/{ids[state]}/cap.xml"):
            response = client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert marker(state) not in response.text
        # The same answer as for an id that was never used: nothing tells that something waits there.
        waiting = client.get(f"/updates/{ids[state]}/cap.xml").text.replace(f"/updates/{ids[state]}/", "/updates/ID/")
        assert waiting == client.get("/updates/999999/cap.xml").text.replace("/updates/999999/", "/updates/ID/")
    for state in ("published", "retracted"):
        for path in (f"/updates/{ids[state]}", f"/updates/{ids[state]}/cap.xml"):
            response = client.get(path)
            assert response.status_code == 200 and marker(state) in response.text, path

    # The retracted update keeps its page, with the notice; its CAP message is a Cancel; the feed says so.
    retracted = client.get(f"/updates/{ids['retracted']}?lang=en").text
    assert "This update was retracted on" in retracted and "Авария е отстранена" in retracted
    assert "<msgType>Cancel</msgType>" in client.get(f"/updates/{ids['retracted']}/cap.xml").text
    titles = feed_titles(client.get("/feeds/updates.atom").content)
    retracted_title = gettext_in("bg")("Retracted: {title}").format(title=f"Съобщение {marker('retracted')}")
    assert sorted(titles) == sorted([retracted_title, f"Съобщение {marker('published')}"])

    # Nor does the static mirror hold anything unpublished.
    mirrored = [p for p in mirror_files() if p.is_file()]
    assert mirrored, "the mirror was not written"
    for path in mirrored:
        text = path.read_bytes().decode(errors="replace")
        for state in hidden:
            assert marker(state) not in text, path
            assert f"updates/{ids[state]}." not in path.as_posix() and f"updates/{ids[state]}/" not in path.as_posix()

    assert changes(before, public_state(engine)) == []


def feed_titles(feed: bytes) -> list[str]:
    """The titles of an Atom feed's entries."""
    root = ElementTree.fromstring(feed)  # noqa: S314 (the app's own feed)
    return [entry.findtext(f"{ATOM}title") for entry in root.iter(f"{ATOM}entry")]


def mirror_files() -> list[Path]:
    return list(mirror.root().rglob("*"))


def test_an_update_leaves_the_public_lists_when_retracted_and_comes_only_when_published(client, session, engine):
    comms = make_user(session, "communications")
    reviewer = make_user(session, "communications")
    news = Newsroom(engine, comms, reviewer)
    headers = api_headers(client, reviewer)
    bid = news.bulletin("in_review", title=f"Съобщение {marker('moving')}")

    def listed() -> list[int]:
        return [u["id"] for u in client.get("/api/v1/public/updates").json()["items"]]

    assert bid not in listed() and client.get(f"/updates/{bid}").status_code == 404
    assert client.post(f"{B}/{bid}/approve", headers=headers).status_code == 200
    assert listed() == [bid] and marker("moving") in client.get("/").text
    assert client.post(f"{B}/{bid}/retract", json={"reason": "Грешен адрес"}, headers=headers).status_code == 200
    assert listed() == [] and marker("moving") not in client.get("/").text
    assert client.get(f"/updates/{bid}").status_code == 200
    with news.session() as s:
        assert s.get(Bulletin, bid).status == "retracted"
