"""The public surfaces' HTTP caching (validators, Cache-Control, 304, HEAD, the in-process fast path) and
their weight on a phone's weak link."""

import gzip
import re
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from service.bulletins.http_cache import pages
from service.config import settings
from tests.bulletins.build import Officers, settle_mirror, staff

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def public_paths(update_id: int) -> list[str]:
    return [
        "/", "/?lang=en", f"/updates/{update_id}", f"/updates/{update_id}?lang=en", f"/updates/{update_id}/cap.xml",
        "/fact-checks", "/fact-checks?lang=en", "/feeds/updates.atom", "/feeds/cap.atom", "/api/v1/public/updates",
        "/api/v1/public/updates?language=bg&limit=5",
    ]  # fmt: skip


@pytest.fixture
def site(client, session) -> dict:
    """A public site with something on every surface: updates in both languages, a fact-check, an emergency."""
    officers = Officers(client, session)
    update = officers.published()
    officers.published(language="en", title="Water distribution at the town hall", body="From 10 am to 6 pm.")
    officers.fact_check()
    headers = staff(session, "coordinator")
    emergency = {"title": "Наводнение в кв. „Изток“", "kind": "flood", "area": "кв. „Изток“", "severity": "severe"}
    assert client.post("/api/v1/emergencies", json=emergency, headers=headers).status_code == 201
    settle_mirror()
    return {"officers": officers, "update": update, "paths": public_paths(update["id"])}


def test_public_responses_carry_validators_and_cache_control_and_no_cookie(client, site):
    """Every public response, compressed or not, has ETag, Last-Modified, a Cache-Control a shared cache
    may act on (max-age, stale-while-revalidate, stale-if-error), Vary: Accept-Encoding, and no cookie
    (asked by a visitor holding none, who would be given one on a page with a form)."""
    client.cookies.clear()
    for path in site["paths"]:
        for accept in (GZIP, IDENTITY):
            response = client.get(path, headers=accept)
            assert response.status_code == 200, path
            headers = response.headers
            assert re.fullmatch(r'"[0-9a-f]{32}(-gz)?"', headers["etag"]), (path, headers["etag"])
            assert parsedate_to_datetime(headers["last-modified"]) <= datetime.now().astimezone()
            directives = dict(
                [*part.strip().split("="), ""][:2] for part in headers["cache-control"].split(",")
            )  # fmt: skip
            assert "public" in directives and "private" not in directives and "no-store" not in directives
            assert int(directives["max-age"]) == settings.public_max_age_seconds > 0
            assert int(directives["stale-while-revalidate"]) > 0
            assert int(directives["stale-if-error"]) >= 3600
            assert tokens(headers["vary"]) == {"accept-encoding"}
            assert "set-cookie" not in headers, path
            assert int(headers["content-length"]) == len(response.content) or headers.get("content-encoding")
        assert client.get(path, headers=GZIP).content == client.get(path, headers=IDENTITY).content
    assert "set-cookie" in client.get("/login").headers  # a page with a form does set one
    big = client.get(f"/updates/{site['update']['id']}", headers=GZIP)
    assert big.headers["content-encoding"] == "gzip" and big.headers["etag"].endswith('-gz"')


def test_a_matching_if_none_match_gets_304_without_a_body(client, site):
    """The ETag a client holds (of the gzip or of the identity representation, alone, in a list or weak)
    gets 304 with no body; another ETag gets the page."""
    for path in site["paths"]:
        for accept in (GZIP, IDENTITY):
            first = client.get(path, headers=accept)
            etag = first.headers["etag"]
            for sent in (etag, f'"other", {etag}', f"W/{etag}"):
                again = client.get(path, headers={**accept, "If-None-Match": sent})
                assert again.status_code == 304, (path, accept, sent)
                assert again.content == b""
                assert again.headers["etag"] == etag
                assert "cache-control" in again.headers and "set-cookie" not in again.headers
            other = client.get(path, headers={**accept, "If-None-Match": '"0123456789abcdef0123456789abcdef"'})
            assert other.status_code == 200 and other.content == first.content


def test_if_modified_since_works_and_gives_way_to_if_none_match(client, site):
    """If-Modified-Since at or after Last-Modified gets 304, before it gets the page; a non-matching
    If-None-Match wins over a matching date."""
    for path in site["paths"]:
        first = client.get(path)
        stamp = first.headers["last-modified"]
        assert client.get(path, headers={"If-Modified-Since": stamp}).status_code == 304
        earlier = format_datetime(parsedate_to_datetime(stamp) - timedelta(seconds=1), usegmt=True)
        assert client.get(path, headers={"If-Modified-Since": earlier}).status_code == 200
        both = {"If-Modified-Since": stamp, "If-None-Match": '"0123456789abcdef0123456789abcdef"'}
        assert client.get(path, headers=both).status_code == 200
        assert client.get(path, headers={"If-Modified-Since": "not a date"}).status_code == 200


def test_publish_correction_and_retraction_change_the_etags(client, site):
    """A change the public can see changes the validators of the pages that show it: a new publication the
    home's (not an unrelated update's), a correction and a retraction the home's, the update's and its CAP
    message's. Without a change the ETag stays, even rendered afresh."""
    officers, bid = site["officers"], site["update"]["id"]
    watched = ["/", f"/updates/{bid}", f"/updates/{bid}/cap.xml", "/feeds/updates.atom", "/feeds/cap.atom"]

    def etags() -> dict[str, str]:
        return {path: client.get(path, headers=IDENTITY).headers["etag"] for path in watched}

    before = etags()
    pages.clear()
    assert etags() == before

    officers.published(title="Ново съобщение за водата")
    published = etags()
    assert published["/"] != before["/"] and published["/feeds/updates.atom"] != before["/feeds/updates.atom"]
    assert published[f"/updates/{bid}"] == before[f"/updates/{bid}"]
    assert published[f"/updates/{bid}/cap.xml"] == before[f"/updates/{bid}/cap.xml"]

    officers.correct(bid, "Мостът е отворен за пешеходци.")
    corrected = etags()
    assert all(corrected[path] != published[path] for path in watched), corrected

    officers.retract(bid)
    retracted = etags()
    assert all(retracted[path] != corrected[path] for path in watched), retracted
    assert client.get(f"/updates/{bid}", headers={"If-None-Match": corrected[f"/updates/{bid}"]}).status_code == 200


def test_last_modified_is_when_the_update_last_changed(client, site):
    """An update's Last-Modified is its publication time, then its correction's."""
    officers, bid = site["officers"], site["update"]["id"]

    def last_modified() -> datetime:
        return parsedate_to_datetime(client.get(f"/updates/{bid}").headers["last-modified"])

    assert last_modified() == datetime.fromisoformat(site["update"]["published_at"]).replace(microsecond=0)
    corrected = officers.correct(bid, "Поправен текст.")
    assert last_modified() == datetime.fromisoformat(corrected["corrected_at"]).replace(microsecond=0)


def test_head_answers_the_headers_of_get_without_a_body(client, site):
    """HEAD gives GET's status, validators, type and length, and no body; with a matching ETag, 304."""
    for path in site["paths"]:
        for accept in (GZIP, IDENTITY):
            got = client.get(path, headers=accept)
            head = client.head(path, headers=accept)
            assert head.status_code == 200 and head.content == b""
            for name in ("etag", "last-modified", "cache-control", "content-type", "content-length"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
            assert tokens(head.headers["vary"]) == tokens(got.headers["vary"]) == {"accept-encoding"}
            assert "set-cookie" not in head.headers
            assert client.head(path, headers={**accept, "If-None-Match": got.headers["etag"]}).status_code == 304


def tokens(header: str) -> set[str]:
    """A list header's tokens (Starlette's GZipMiddleware repeats `Accept-Encoding` on a large identity body)."""
    return {token.strip().lower() for token in header.split(",")}


class Statements:
    """Counts the SQL statements any engine runs while it is active."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args) -> None:
        self.count += 1

    def __enter__(self) -> "Statements":
        event.listen(Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(Engine, "before_cursor_execute", self)


def test_the_fast_path_answers_from_the_copy_with_the_same_bytes_and_headers(client, site):
    """The first request renders from the database; the next, within the copy's life, is answered without
    a single SQL statement, with byte-for-byte the same body and the same headers (GET and HEAD)."""
    for path in site["paths"]:
        for accept in (GZIP, IDENTITY):
            pages.clear()
            with Statements() as rendering:
                first = client.get(path, headers=accept)
            with Statements() as copied:
                second = client.get(path, headers=accept)
                head = client.head(path, headers=accept)
            assert rendering.count > 0 and copied.count == 0, (path, rendering.count, copied.count)
            assert second.status_code == 200 and second.content == first.content
            # Each answer carries its own request's id; every other header is the same.
            assert without_request_id(second.headers) == without_request_id(first.headers), path
            assert head.headers["etag"] == first.headers["etag"] and head.content == b""


def without_request_id(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers.multi_items() if name.lower() != "x-request-id"]


# --- weight ----------------------------------------------------------------------------------------------

LIMIT = 50_000  # bytes, uncompressed, a page and its stylesheet
TITLE = "Временно прекъсване на водоподаването в кв. „Тева“ и кв. „Изток“ поради авария на главен водопровод"
PARAGRAPH = (
    "Екипите на ВиК работят по отстраняването на аварията на ул. „Отец Паисий“. Водата ще бъде спряна "
    "от 9:00 до 18:00 ч. Цистерни с питейна вода са разположени пред училище „Христо Ботев“ и пред "
    "читалище „Светлина“. Моля, запасете се с вода и следете официалния сайт на общината за промени. "
)


class Subresources(HTMLParser):
    """What a browser would fetch to show the page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        if tag == "link" and values.get("rel") in ("stylesheet", "preload", "icon", "manifest"):
            self.found.append(values["href"])
        elif tag in ("script", "img", "iframe", "video", "audio", "source", "object", "embed") and values.get("src"):
            self.found.append(values["src"])


def weight(client, path: str) -> int:
    """The page's bytes plus those of every subresource it loads (only its stylesheet, as checked)."""
    page = client.get(path, headers=IDENTITY)
    assert page.status_code == 200
    parser = Subresources()
    parser.feed(page.text)
    assert parser.found == ["/static/css/public.css"], parser.found
    css = client.get("/static/css/public.css", headers=IDENTITY)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    return len(page.content) + len(css.content)


def test_public_pages_with_their_stylesheet_weigh_under_50_kb(client, session, monkeypatch):
    """With 30 updates on the home (long titles, long bodies), an emergency, five fact-checks, and an update
    of ~4,000 characters corrected once, each page with its stylesheet stays under 50 KB uncompressed."""
    monkeypatch.setattr(settings, "public_mirror", False)  # the mirror is not what is weighed here
    officers = Officers(client, session)
    for n in range(5):
        officers.fact_check(
            wording=f"Слух {n}: водата от чешмите в целия град е замърсена с нефтопродукти и не бива да се пие.",
            response=PARAGRAPH * 2, url=f"https://social.example/post/{n}",
        )  # fmt: skip
    for n in range(30 - 5 - 1):
        officers.published(title=f"{TITLE} ({n + 1})", body=PARAGRAPH * 5, instruction=PARAGRAPH)
    long_body = "\n\n".join([PARAGRAPH * 2] * 7)
    long = officers.published(title=TITLE, body=long_body, instruction=PARAGRAPH * 2)
    officers.correct(long["id"], long_body + "\n\nДопълнение: цистерна и при кметството.", reason="Нова цистерна.")
    client.post(
        "/api/v1/emergencies",
        json={"title": "Авария на водопровод", "kind": "other", "area": "кв. „Тева“", "severity": "moderate"},
        headers=staff(session, "coordinator"),
    )

    home = client.get("/", headers=IDENTITY).text
    assert home.count('class="update ') == 30
    assert len(long_body) >= 4000
    for path in ("/", f"/updates/{long['id']}", "/fact-checks", "/?lang=en"):
        assert weight(client, path) < LIMIT, (path, weight(client, path))
    assert len(gzip.compress(client.get("/", headers=IDENTITY).content)) < LIMIT // 4
