"""Malformed, out-of-range and hostile input to the routes of public updates and the rumour log.

A refusal is a clear 4xx that names the field (`detail[].loc` on 422) and changes nothing: no update,
revision or rumour row, no audit entry. Hostile text that is otherwise valid is kept exactly as typed and
comes out harmless on the public page, in the feed and in the CAP message.
"""

import re
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.bulletins.state import VERDICT, Newsroom, bulletin_body, changes, iso, public_state, rumour_body
from tests.factories import api_headers, make_user

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SQL = "Robert'); DROP TABLE bulletin; --"
NAIVE = "2099-01-01T10:00:00"  # no offset: which time zone would it be?
BIG = 10**400  # a 400-digit number
B, R = "/api/v1/bulletins", "/api/v1/rumours"
ATOM = "{http://www.w3.org/2005/Atom}"
CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
SQUARE = "42.6 23.0 42.7 23.0 42.7 23.1 42.6 23.0"  # spaces where the commas belong


def error_at(response: Any, *loc: Any) -> str | None:
    """The message an API 422 gives at `loc` (e.g. "body", "title") or below it, or None."""
    detail = response.json().get("detail")
    if isinstance(detail, list):
        for item in detail:
            if tuple(item.get("loc", ()))[: len(loc)] == loc:
                return item.get("msg") or "(no message)"
    return None


def harmful_markup(text: str) -> list[str]:
    """Markup that would run or restyle something: script or img elements, event handlers, `javascript:`
    links, inline styles."""
    patterns = (
        r"<script",
        r"<img",
        r"<[^>]*\son\w+\s*=",
        r"""(href|src)\s*=\s*["']?\s*javascript:""",
        r"<[^>]*\sstyle\s*=",
    )
    return [found.group(0) for p in patterns for found in re.finditer(p, text, re.IGNORECASE)]


@pytest.fixture
def api(client, session, engine):
    author = make_user(session, "communications")
    reviewer = make_user(session, "communications")
    news = Newsroom(engine, author, reviewer)

    class Api:
        writer = api_headers(client, author)
        checker = api_headers(client, reviewer)

        def __init__(self) -> None:
            self.news, self.client, self.engine = news, client, engine
            self.problems: list[str] = []

        def refuses(self, method: str, path: str, body: Any, status: int, *loc: Any, headers: dict | None = None):
            """Expects `status` (naming `loc` on 422) and nothing changed; notes what went otherwise."""
            before = public_state(engine)
            if isinstance(body, str | bytes):
                response = client.request(
                    method, path, content=body, headers={**self.writer, "Content-Type": "application/json"}
                )
            else:
                response = client.request(method, path, json=body, headers=headers or self.writer)
            where = f"{method} {path} {str(body)[:120]}"
            if response.status_code != status:
                self.problems.append(f"{where}: expected {status}, got {response.status_code} {response.text[:200]}")
            elif loc and not error_at(response, *loc):
                self.problems.append(f"{where}: the error does not name {loc}: {response.text[:200]}")
            elif not response.json().get("detail"):
                self.problems.append(f"{where}: a refusal that says nothing")
            if changed := changes(before, public_state(engine)):
                self.problems.append(f"{where}: refused, yet changed {changed[:2]}")

        def check(self) -> None:
            assert not self.problems, "\n".join(self.problems)

    return Api()


# --- public updates --------------------------------------------------------------------------------------


def test_bad_new_updates(api):
    good = bulletin_body()
    api.refuses("POST", B, '{"title": "Спиране на водата", ', 422, "body")  # cut short
    api.refuses("POST", B, "not json at all", 422, "body")
    api.refuses("POST", B, b"\xff\xfe\x00", 400)  # not even UTF-8
    api.refuses("POST", B, [good], 422, "body")
    api.refuses("POST", B, "null", 422, "body")
    for name in ("title", "body", "area_desc"):
        api.refuses("POST", B, {k: v for k, v in good.items() if k != name}, 422, "body", name)
    for body, field in [
        # wrong types
        ({**good, "title": 12345}, "title"),
        ({**good, "body": ["Текст"]}, "body"),
        ({**good, "area_desc": {"name": "Перник"}}, "area_desc"),
        ({**good, "emergency_id": "първото"}, "emergency_id"),
        ({**good, "effective": "утре"}, "effective"),
        ({**good, "effective": 1_700_000_000_000_000}, "effective"),
        ({**good, "polygon": 5}, "polygon"),
        # blank or too long
        ({**good, "title": "   "}, "title"),
        ({**good, "title": "ab"}, "title"),
        ({**good, "title": "я" * 201}, "title"),
        ({**good, "body": ""}, "body"),
        ({**good, "body": " \n\t "}, "body"),
        ({**good, "body": "я" * 20_001}, "body"),
        ({**good, "area_desc": "я" * 301}, "area_desc"),
        ({**good, "instruction": "я" * 5001}, "instruction"),
        # unknown values of the code lists (CAP spells its own, with capitals)
        ({**good, "language": "de"}, "language"),
        ({**good, "language": "BG"}, "language"),
        ({**good, "category": "rumour"}, "category"),
        ({**good, "urgency": "immediate"}, "urgency"),
        ({**good, "severity": "Catastrophic"}, "severity"),
        ({**good, "certainty": "Certain"}, "certainty"),
        ({**good, "cap_category": "Weather"}, "cap_category"),
        ({**good, "response_type": "Panic"}, "response_type"),
        # fields the caller does not set
        ({**good, "status": "published"}, "status"),
        ({**good, "revision": 3}, "revision"),
        ({**good, "created_by_id": 1}, "created_by_id"),
        ({**good, "approved_by_id": 1}, "approved_by_id"),
        ({**good, "published_at": iso(-60)}, "published_at"),
        # ids that name nothing
        ({**good, "emergency_id": 999_999}, "emergency_id"),
        ({**good, "emergency_id": 0}, "emergency_id"),
        ({**good, "emergency_id": -1}, "emergency_id"),
        ({**good, "emergency_id": 10**30}, "emergency_id"),
        ({**good, "emergency_id": BIG}, "emergency_id"),
        ({**good, "emergency_id": 1.5}, "emergency_id"),
        # times
        ({**good, "effective": NAIVE}, "effective"),
        ({**good, "expires": "2099-01-01"}, "expires"),
        ({**good, "publish_at": NAIVE}, "publish_at"),
        ({**good, "effective": iso(7200), "expires": iso(3600)}, "expires"),
        ({**good, "effective": "2099-01-01T10:00:00+02:00", "expires": "2099-01-01T08:00:00Z"}, "expires"),
        # CAP polygons: closed rings of at least four WGS 84 points
        ({**good, "polygon": "42.6,23.0 42.7,23.0 42.6,23.0"}, "polygon"),
        ({**good, "polygon": "42.6,23.0 42.7,23.0 42.7,23.1 42.65,23.05"}, "polygon"),
        ({**good, "polygon": "91,23.0 42.7,23.0 42.7,23.1 91,23.0"}, "polygon"),
        ({**good, "polygon": "42.6,181 42.7,23.0 42.7,23.1 42.6,181"}, "polygon"),
        ({**good, "polygon": SQUARE}, "polygon"),
        ({**good, "polygon": "<polygon/>"}, "polygon"),
    ]:
        api.refuses("POST", B, body, 422, "body", field)
    api.refuses("POST", f"{B}?status=published", {**good, "extra": 1}, 422, "body", "extra")
    api.check()


def test_bad_changes_to_a_draft(api):
    draft = api.news.bulletin("draft", effective="2099-01-01T10:00:00+02:00")
    path = f"{B}/{draft}"
    for body, field in [
        ({"title": None}, "title"),
        ({"body": None}, "body"),
        ({"area_desc": None}, "area_desc"),
        ({"category": None}, "category"),
        ({"urgency": None}, "urgency"),
        ({"title": "я" * 201}, "title"),
        ({"status": "in_review"}, "status"),
        ({"revision": 2}, "revision"),
        ({"emergency_id": 999_999}, "emergency_id"),
        ({"expires": "2099-01-01T09:00:00+02:00"}, "expires"),  # before the stored `effective`
        ({"expires": "2099-01-01T08:00:00Z"}, "expires"),  # the same moment: expires when it takes effect
        ({"effective": "2099-01-01T10:00:00+02:00", "expires": "2098-12-31T10:00:00+02:00"}, "expires"),
        ({"polygon": "42.6,23.0 42.7,23.0 42.7,23.1"}, "polygon"),
        ({"effective": NAIVE}, "effective"),
    ]:
        api.refuses("PATCH", path, body, 422, "body", field)
    api.refuses("PATCH", path, "{title: 'x'}", 422, "body")
    api.check()


def test_bad_reviews_corrections_and_retractions(api):
    in_review = api.news.bulletin("in_review")
    approve = f"{B}/{in_review}/approve"
    for body, field in [
        ({"publish_at": iso(-3600)}, "publish_at"),  # already passed
        ({"publish_at": "2000-01-01T00:00:00+00:00"}, "publish_at"),
        ({"publish_at": NAIVE}, "publish_at"),
        ({"publish_at": "скоро"}, "publish_at"),
        ({"publish_at": BIG}, "publish_at"),
        ({"publish_at": iso(3600), "approved_by_id": 1}, "approved_by_id"),
    ]:
        api.refuses("POST", approve, body, 422, "body", field, headers=api.checker)
    send_back = f"{B}/{in_review}/send-back"
    for body, field in [({}, "reason"), ({"reason": "не"}, "reason"), ({"reason": "я" * 501}, "reason")]:
        api.refuses("POST", send_back, body, 422, "body", field, headers=api.checker)
    api.refuses("POST", send_back, None, 422, "body", headers=api.checker)

    published = api.news.bulletin("published")
    corrections = f"{B}/{published}/corrections"
    fix = {"body": "Поправен текст", "reason": "Грешен час"}
    for body, field in [
        ({"reason": "Грешен час"}, "body"),
        ({"body": "Поправен текст"}, "reason"),
        ({**fix, "reason": "  "}, "reason"),
        ({**fix, "body": "я" * 20_001}, "body"),
        ({**fix, "title": "я" * 201}, "title"),
        ({**fix, "revision": 7}, "revision"),
        ({**fix, "status": "draft"}, "status"),
    ]:
        api.refuses("POST", corrections, body, 422, "body", field)
    retract = f"{B}/{published}/retract"
    for body, field in [({}, "reason"), ({"reason": 42}, "reason"), ({"reason": "ok", "now": True}, "now")]:
        api.refuses("POST", retract, body, 422, "body", field)
    api.check()


def test_ids_that_name_nothing_or_are_not_ids(api):
    draft = api.news.bulletin("draft")
    for bad in ("0", "-1", "abc", "1.5", "1e3", "99999999999999999999", f"{draft}%20OR%201=1", f"{draft};DROP"):
        for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/submit")]:
            api.refuses(method, f"{B}/{bad}{suffix}", {"title": "Ново заглавие"}, 422, "path", "bulletin_id")
        api.refuses("GET", f"{R}/{bad}", None, 422, "path", "rumour_id")
    for method, suffix in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/submit"), ("GET", "/revisions")]:
        api.refuses(method, f"{B}/999999{suffix}", {"title": "Ново заглавие"}, 404)
    for path in (f"{B}/..%2F..%2Fusers", f"{B}/%2e%2e/%2e%2e/users", f"{B}/{draft}/..%2F..%2Faudit"):
        response = api.client.get(path, headers=api.writer)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert "email" not in response.text  # never some other route's answer
    for path in ("/updates/abc", "/updates/0", "/updates/1%2F..%2F..%2Fetc%2Fpasswd", "/updates/99999999999999999999"):
        response = api.client.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
        assert "root:" not in response.text
    api.refuses("POST", f"{R}/999999/verdict", VERDICT, 404)
    api.refuses("POST", f"{R}/999999/fact-check", None, 404)
    api.check()


def test_bad_query_parameters(api, client):
    for path, loc in [
        (f"{B}?status=live", ("query", "status")),
        (f"{B}?emergency_id=abc", ("query", "emergency_id")),
        (f"{B}?limit=0", ("query", "limit")),
        (f"{B}?limit=100000", ("query", "limit")),
        (f"{B}?offset=-1", ("query", "offset")),
        (f"{R}?status=closed", ("query", "status")),
    ]:
        response = client.get(path, headers=api.writer)
        assert response.status_code == 422 and error_at(response, *loc), (path, response.text)
    for path, name in [
        ("/api/v1/public/updates?language=de", "language"),
        ("/api/v1/public/updates?limit=100000", "limit"),
        ("/api/v1/public/updates?offset=-5", "offset"),
        (f"/api/v1/public/updates?limit={BIG}", "limit"),
    ]:
        response = client.get(path)
        assert response.status_code == 422 and error_at(response, "query", name), (path, response.text)


def test_hostile_text_is_kept_as_typed_and_comes_out_harmless(api, client):
    hostile = {
        "title": f"{SQL} {SCRIPT}",
        "body": f'{SCRIPT}\n\n[връзка](javascript:alert(1)) {IMG}\n\n<p style="color:red" onclick="x()">текст</p>',
        "area_desc": f"{IMG} ' OR 1=1 --",
        "instruction": f"{SCRIPT} Останете вкъщи.",
    }
    created = client.post(B, json=bulletin_body(**hostile), headers=api.writer)
    assert created.status_code == 201, created.text
    bid = created.json()["id"]
    stored = client.get(f"{B}/{bid}", headers=api.writer).json()
    assert {k: stored[k] for k in hostile} == {k: v.strip() for k, v in hostile.items()}

    assert client.post(f"{B}/{bid}/submit", headers=api.writer).status_code == 200
    assert client.post(f"{B}/{bid}/approve", headers=api.checker).status_code == 200
    for path in (f"/updates/{bid}", f"/updates/{bid}?lang=en", "/", "/fact-checks"):
        assert harmful_markup(client.get(path).text) == [], path
    feed = ElementTree.fromstring(client.get("/feeds/updates.atom").content)  # noqa: S314 (the app's own feed)
    [content] = [e.text for e in feed.iter(f"{ATOM}content")]  # the entry's HTML, as a reader renders it
    assert "текст" in content and harmful_markup(content) == []
    alert = ElementTree.fromstring(client.get(f"/updates/{bid}/cap.xml").content)  # noqa: S314 (the app's own)
    for name in ("description", "instruction"):  # plain text from the Markdown: no markup at all
        [text] = [e.text for e in alert.iter(f"{CAP}{name}")]
        assert text and not re.search(r"<\w", text), (name, text)
    page = client.get(f"/updates/{bid}").text
    assert "Robert&#39;); DROP TABLE bulletin; --" in page or "Robert'); DROP TABLE bulletin; --" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the title, shown as text
    listed = client.get("/api/v1/public/updates").json()["items"]
    assert [u["title"] for u in listed] == [hostile["title"]]
    assert "<script" not in listed[0]["body_html"] and "onclick" not in listed[0]["body_html"]
    # Every table is still there.
    assert client.get(B, headers=api.writer).json()["total"] == 1


# --- rumours ---------------------------------------------------------------------------------------------


def test_bad_rumours(api):
    good = rumour_body()
    api.refuses("POST", R, '{"wording": ', 422, "body")
    for name in ("wording", "channel"):
        api.refuses("POST", R, {k: v for k, v in good.items() if k != name}, 422, "body", name)
    for body, field in [
        ({**good, "wording": "ab"}, "wording"),
        ({**good, "wording": "я" * 5001}, "wording"),
        ({**good, "wording": 42}, "wording"),
        ({**good, "summary": "я" * 501}, "summary"),
        ({**good, "channel": ""}, "channel"),
        ({**good, "channel": "я" * 201}, "channel"),
        ({**good, "language": "ru"}, "language"),
        ({**good, "url": "ftp://example.test/x"}, "url"),
        ({**good, "url": "javascript:alert(1)"}, "url"),
        ({**good, "url": "примерен сайт"}, "url"),
        ({**good, "url": "https://example.test/a b"}, "url"),
        ({**good, "url": "https://example.test/" + "a" * 1000}, "url"),
        ({**good, "report_count": 0}, "report_count"),
        ({**good, "report_count": -3}, "report_count"),
        ({**good, "report_count": 1_000_001}, "report_count"),
        ({**good, "report_count": BIG}, "report_count"),
        ({**good, "report_count": 2.5}, "report_count"),
        ({**good, "report_count": "много"}, "report_count"),
        ({**good, "risk": "critical"}, "risk"),
        ({**good, "risk": "High"}, "risk"),
        ({**good, "first_seen": NAIVE}, "first_seen"),
        ({**good, "first_seen": iso(-3600), "last_seen": iso(-7200)}, "last_seen"),
        ({**good, "status": "resolved"}, "status"),
        ({**good, "verdict": "false"}, "verdict"),
        ({**good, "bulletin_id": 1}, "bulletin_id"),
    ]:
        api.refuses("POST", R, body, 422, "body", field)

    rumour = api.news.rumour("new", first_seen=iso(-7200), last_seen=iso(-3600))
    path = f"{R}/{rumour}"
    for body, status, field in [
        ({"wording": None}, 422, "wording"),
        ({"channel": None}, 422, "channel"),
        ({"report_count": None}, 422, "report_count"),
        ({"report_count": 0}, 422, "report_count"),
        ({"last_seen": iso(-10_800)}, 422, "last_seen"),  # before the stored first_seen
        ({"first_seen": iso(-1800)}, 422, "last_seen"),  # after the stored last_seen
        ({"url": "mailto:x@example.test"}, 422, "url"),
        ({"bulletin_id": 999_999}, 422, "bulletin_id"),
        ({"bulletin_id": 0}, 422, "bulletin_id"),
        ({"status": "closed"}, 422, "status"),
        ({"verdict": "false"}, 422, "verdict"),
    ]:
        api.refuses("PATCH", path, body, status, "body", field)
    # The status machine: a verdict resolves a rumour, not a PATCH.
    api.refuses("PATCH", path, {"status": "resolved"}, 409)

    verdict = f"{path}/verdict"
    for body, field in [
        ({**VERDICT, "verdict": "fake"}, "verdict"),
        ({**VERDICT, "verdict": "False"}, "verdict"),
        ({**VERDICT, "verdict": None}, "verdict"),
        ({k: v for k, v in VERDICT.items() if k != "verdict"}, "verdict"),
        ({**VERDICT, "evidence": ""}, "evidence"),
        ({k: v for k, v in VERDICT.items() if k != "response"}, "response"),
        ({**VERDICT, "response": "я" * 20_001}, "response"),
        ({**VERDICT, "bulletin_id": 999_999}, "bulletin_id"),
        ({**VERDICT, "status": "resolved"}, "status"),
    ]:
        api.refuses("POST", verdict, body, 422, "body", field)
    # No fact-check without a verdict.
    api.refuses("POST", f"{path}/fact-check", None, 409)
    api.check()


def test_hostile_rumour_text_is_kept_as_typed(api, client):
    wording = f"{SQL} {SCRIPT} {IMG}"
    created = client.post(R, json=rumour_body(wording=wording, summary=SCRIPT, channel=SQL), headers=api.writer)
    assert created.status_code == 201, created.text
    got = client.get(f"{R}/{created.json()['id']}", headers=api.writer).json()
    assert (got["wording"], got["summary"], got["channel"]) == (wording, SCRIPT, SQL)
    assert client.get(R, headers=api.writer).json()["total"] == 1
