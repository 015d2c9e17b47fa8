"""The public decisions archive: the page, its CSV and Atom feed, and public submissions' attachments.

Only published decisions and the submissions their organisations agreed to publish may reach the public;
the votes shown, tallied and exported are those recorded.
"""

import csv
import hashlib
import html
import io
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import feedparser
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, expect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.config import settings
from service.consultations import public, service
from service.consultations.models import Decision, DecisionVote, Position, Vote
from service.partners.models import Organisation
from tests.consultations.build import Built, Stakeholder, decided, make_emergency
from tests.factories import make_user
from tests.test_browser import PHONE, has_no_horizontal_overflow, in_database

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
ONE_VOTER = (Stakeholder(Position.support, public=True, vote=Vote.for_),)


@pytest.fixture(autouse=True)
def attachments_dir(tmp_path: Path) -> Iterator[Path]:
    """Attachments go to the test's own folder, never the project's data directory."""
    kept = settings.attachments_dir
    settings.attachments_dir = tmp_path / "attachments"
    yield settings.attachments_dir
    settings.attachments_dir = kept


def get_page(client, **params) -> str:
    response = client.get("/decisions", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def shown_ids(page: str) -> set[int]:
    return {int(n) for n in re.findall(r'<li class="decision" id="decision-(\d+)">', page)}


def section(page: str, decision_id: int) -> str:
    """The part of the page about one decision."""
    start = page.index(f'<li class="decision" id="decision-{decision_id}">')
    end = page.find('<li class="decision" id=', start + 1)
    return page[start : end if end != -1 else len(page)]


def recorded_votes(engine: Engine, decision_id: int) -> dict[int, Vote]:
    """The votes as the database holds them (read afresh)."""
    with Session(engine) as session:
        rows = session.exec(select(DecisionVote).where(DecisionVote.decision_id == decision_id)).all()
        return {v.organisation_id: v.vote for v in rows}


def names(engine: Engine, ids: set[int]) -> dict[int, Organisation]:
    with Session(engine) as session:
        return {o.id: o for o in session.exec(select(Organisation).where(Organisation.id.in_(ids))).all()}


def read_csv(client, **params) -> list[dict[str, str]]:
    response = client.get("/decisions.csv", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert rows == [] or list(rows[0]) == list(public.CSV_COLUMNS)
    return rows


def read_feed(client) -> feedparser.FeedParserDict:
    response = client.get("/feeds/decisions.atom")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


@pytest.fixture
def archive(session: Session) -> tuple[Built, Built]:
    """A published decision with every kind of stakeholder, and a recorded one that is not published."""
    shown = decided(session, title="Мерки за подкрепа на малкия бизнес")
    hidden = decided(
        session, title="Поверително решение за паркингите", question="Да се затворят ли паркингите в центъра?",
        text="Паркингите остават затворени до края на месеца.", publish=False,
    )  # fmt: skip
    return shown, hidden


def test_page_shows_published_decisions_and_public_submissions_only(client, archive, engine):
    shown, hidden = archive
    page = get_page(client)
    assert shown_ids(page) == {shown.decision.id}
    part = section(page, shown.decision.id)
    assert "Мерки за подкрепа на малкия бизнес" in part
    assert shown.consultation.question in part
    assert "<strong>приема</strong>" in part  # the decision's Markdown, rendered
    assert shown.public_comments() and shown.private_comments()
    for comment in shown.public_comments():
        assert html.escape(comment) in part
    for comment in shown.private_comments() + hidden.public_comments() + hidden.private_comments():
        assert comment not in page
        assert html.escape(comment) not in page
    assert "Поверително решение" not in page and "паркинг" not in page.casefold()
    # Every voter is named; an organisation that neither voted nor published its submission is not.
    organisations = names(engine, {o.id for o in shown.organisations})
    for organisation_id in shown.votes:
        assert organisations[organisation_id].name in part
    silent = [o for o in shown.organisations if o.id not in shown.votes and not shown.submissions[o.id].public]
    assert silent and all(o.name not in page for o in silent)
    # Attachments: linked for the public submission, never for the private one.
    for submission in shown.submissions.values():
        link = public._attachment_path(shown.decision, submission)
        assert (link in page) == (submission.public and submission.attachment_sha256 is not None)
    # A public page: no cookie, no form that posts.
    assert "set-cookie" not in client.get("/decisions").headers
    assert 'method="post"' not in page.lower()


def test_tally_and_votes_on_the_page_equal_the_recorded_votes(client, archive, engine):
    shown, _hidden = archive
    votes = recorded_votes(engine, shown.decision.id)
    assert votes == shown.votes and len(votes) == 4
    part = section(get_page(client), shown.decision.id)
    counts = Counter(v.value for v in votes.values())
    for vote in Vote:
        tally = re.search(rf'<li class="tally-{vote.value}">[^<]*<strong>(\d+)</strong>', part)
        assert tally is not None and int(tally[1]) == counts[vote.value], vote
    rows = re.findall(r'<tr class="vote-(\w+)"><td>([^<]*)</td>', part)
    organisations = names(engine, set(votes))
    assert sorted((html.unescape(name), vote) for vote, name in rows) == sorted(
        (organisations[org_id].name, vote.value) for org_id, vote in votes.items()
    )


def test_english_page_names_organisations_in_english_where_they_have_it(client, archive):
    shown, _hidden = archive
    with_english = next(o for o in shown.organisations if o.name_en)
    english = get_page(client, lang="en")
    assert '<html lang="en">' in english and "Red Cross Test" in english and ">For<" in english
    assert with_english.name not in english
    bulgarian = get_page(client)
    assert '<html lang="bg">' in bulgarian and with_english.name in bulgarian and "Red Cross Test" not in bulgarian
    assert 'href="/decisions?lang=en"' in bulgarian and 'href="/decisions"' in english


def test_search_finds_a_cyrillic_word_in_any_case(client, session):
    business = decided(session, title="Мерки за Подкрепа на Малкия бизнес", stakeholders=ONE_VOTER)
    water = decided(
        session, title="Ремонт на ВОДОПРОВОДА", question="Да се ремонтира ли водопроводът в кв. Изток?",
        text="Ремонтът започва през **пролетта**.", stakeholders=ONE_VOTER,
    )  # fmt: skip
    assert shown_ids(get_page(client, q="подкрепа")) == {business.decision.id}
    assert shown_ids(get_page(client, q="ПОДКРЕПА")) == {business.decision.id}
    assert shown_ids(get_page(client, q="  малкия БИЗНЕС ")) == {business.decision.id}
    assert shown_ids(get_page(client, q="водопровода")) == {water.decision.id}  # title in capitals
    assert shown_ids(get_page(client, q="Пролетта")) == {water.decision.id}  # in the decision's text
    missing = get_page(client, q="земетресение")
    assert shown_ids(missing) == set()
    assert 'value="земетресение"' in missing
    assert shown_ids(get_page(client, q="")) == {business.decision.id, water.decision.id}
    rows = read_csv(client, q="подкрепа")
    assert {int(r["Decision ID"]) for r in rows} == {business.decision.id}


def test_filters_by_emergency_and_year(client, session):
    coordinator = make_user(session, "coordinator")
    flood = make_emergency(session, coordinator, "Наводнение по река Струма")
    storm = make_emergency(session, coordinator, "Снежна буря в Граово")
    quiet = make_emergency(session, coordinator, "Горски пожар без решения")
    a = decided(session, emergency=flood, decided_on=date(2025, 3, 10), stakeholders=ONE_VOTER)
    b = decided(session, emergency=storm, decided_on=date(2026, 1, 20), stakeholders=ONE_VOTER)
    c = decided(session, decided_on=date(2024, 12, 31), stakeholders=ONE_VOTER)
    decided(session, emergency=quiet, decided_on=date(2023, 5, 5), stakeholders=ONE_VOTER, publish=False)

    page = get_page(client)
    assert shown_ids(page) == {a.decision.id, b.decision.id, c.decision.id}
    assert re.findall(r'<li class="decision" id="decision-(\d+)">', page) == [
        str(b.decision.id),
        str(a.decision.id),
        str(c.decision.id),
    ]  # the newest decision first
    offered = set(re.findall(r'<option value="(\d+)"', page))
    assert offered == {str(flood.id), str(storm.id), "2026", "2025", "2024"}  # not the quiet emergency, not 2023
    assert shown_ids(get_page(client, emergency=flood.id)) == {a.decision.id}
    assert shown_ids(get_page(client, emergency=storm.id)) == {b.decision.id}
    assert shown_ids(get_page(client, emergency=quiet.id)) == set()
    assert shown_ids(get_page(client, year=2025)) == {a.decision.id}
    assert shown_ids(get_page(client, year=2024)) == {c.decision.id}
    assert shown_ids(get_page(client, year=2023)) == set()
    assert shown_ids(get_page(client, emergency=storm.id, year=2025)) == set()
    selected = get_page(client, emergency=flood.id, year=2025)
    assert f'<option value="{flood.id}" selected>' in selected and '<option value="2025" selected>' in selected
    # The form sends empty values for "all"; they are no filter.
    assert len(shown_ids(get_page(client, q="", emergency="", year=""))) == 3
    assert {int(r["Decision ID"]) for r in read_csv(client, year=2026)} == {b.decision.id}
    assert {r["Emergency"] for r in read_csv(client, emergency=flood.id)} == {flood.title}


def test_pages_link_to_each_other(client, session, monkeypatch):
    monkeypatch.setattr(public, "PAGE_SIZE", 2)  # three decisions make two pages
    built = [decided(session, decided_on=date(2026, 1, day), stakeholders=ONE_VOTER) for day in (1, 2, 3)]
    first = get_page(client, year=2026)
    assert shown_ids(first) == {built[2].decision.id, built[1].decision.id}
    assert 'href="/decisions?year=2026&amp;offset=2" rel="next"' in first and 'rel="prev"' not in first
    second = get_page(client, year=2026, offset=2)
    assert shown_ids(second) == {built[0].decision.id}
    assert 'href="/decisions?year=2026" rel="prev"' in second and 'rel="next"' not in second


def test_feed_parses_with_stable_ids_and_only_what_is_public(client, archive, session):
    shown, hidden = archive
    first = read_feed(client)
    assert len(first.entries) == 1
    entry = first.entries[0]
    assert entry.id == f"{settings.base_url}/decisions#decision-{shown.decision.id}"
    assert entry.title == shown.consultation.title
    published = shown.decision.published_at.replace(microsecond=0)
    assert entry.updated == published.isoformat().replace("+00:00", "Z")
    assert entry.published == entry.updated
    raw = client.get("/feeds/decisions.atom").text
    content = entry.content[0].value
    assert shown.public_comments() and all(html.escape(c) in content for c in shown.public_comments())
    for comment in shown.private_comments() + hidden.public_comments():
        assert comment not in raw and comment not in content
    assert "Поверително решение" not in raw
    later = decided(session, title="Временни мерки за транспорта", stakeholders=ONE_VOTER)
    second = read_feed(client)
    ids = [e.id for e in second.entries]
    assert len(ids) == len(set(ids)) == 2
    assert entry.id in ids and f"{settings.base_url}/decisions#decision-{later.decision.id}" in ids
    again = next(e for e in second.entries if e.id == entry.id)
    assert again.updated == entry.updated and again.title == entry.title


def test_csv_rows_equal_the_recorded_votes_and_carry_only_public_submissions(client, archive, engine):
    shown, hidden = archive
    rows = read_csv(client)
    assert {int(r["Decision ID"]) for r in rows} == {shown.decision.id}
    organisations = names(engine, {o.id for o in shown.organisations})
    by_name = {o.name: o.id for o in organisations.values()}
    exported = {by_name[r["Organisation"]]: Vote(r["Vote"]) for r in rows if r["Vote"]}
    assert exported == recorded_votes(engine, shown.decision.id)
    text = "\n".join(",".join(r.values()) for r in rows)
    for comment in shown.public_comments():
        assert comment in text
    for comment in shown.private_comments() + hidden.public_comments() + hidden.private_comments():
        assert comment not in text
    for row in rows:
        submission = shown.submissions.get(by_name[row["Organisation"]])
        shown_position = submission.position.value if submission is not None and submission.public else ""
        assert row["Public position"] == shown_position
    assert all(r["Consultation"] == shown.consultation.title and r["Decided on"] for r in rows)


def test_page_has_an_etag_and_answers_304_until_a_decision_is_published(client, session, archive):
    response = client.get("/decisions")
    etag = response.headers["etag"]
    assert response.headers["cache-control"].startswith("public, max-age=")
    assert response.headers["last-modified"]
    unchanged = client.get("/decisions", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    english = client.get("/decisions", params={"lang": "en"})
    assert english.headers["etag"] != etag
    decided(session, title="Ново решение за училищата", stakeholders=ONE_VOTER)
    changed = client.get("/decisions", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and "Ново решение за училищата" in changed.text
    for path in ("/decisions.csv", "/feeds/decisions.atom"):
        first = client.get(path)
        assert client.get(path, headers={"If-None-Match": first.headers["etag"]}).status_code == 304


HOSTILE = (
    "<script>alert('x')</script>", "' OR 1=1 --", "'; DROP TABLE decision; --", "%", "_", "%_%", "\\", "\\%",
    "\"><img src=x onerror=alert(1)>", "а" * 500,
)  # fmt: skip


def test_a_hostile_query_is_harmless(client, session):
    built = decided(session, stakeholders=ONE_VOTER)
    for query in HOSTILE:
        page = get_page(client, q=query, emergency="1 OR 1=1", year="2026; --", offset="-5")
        assert "<script>alert" not in page and "<img src=x" not in page
        assert shown_ids(page) == set(), query  # no wildcard, no injected condition matches everything
        assert client.get("/decisions.csv", params={"q": query}).status_code == 200
    assert shown_ids(get_page(client)) == {built.decision.id}  # and the archive is still there


def test_attachment_of_a_public_submission_only(client, session, archive):
    shown, hidden = archive
    public_one = next(s for s in shown.submissions.values() if s.public and s.attachment_sha256)
    private_one = next(s for s in shown.submissions.values() if not s.public and s.attachment_sha256)
    response = client.get(public._attachment_path(shown.decision, public_one))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert hashlib.sha256(response.content).hexdigest() == public_one.attachment_sha256
    assert response.content.startswith(b"%PDF-")
    again = client.get(
        public._attachment_path(shown.decision, public_one), headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    refused = [
        public._attachment_path(shown.decision, private_one),  # not made public
        f"/decisions/{hidden.decision.id}/submissions/{public_one.id}/attachment",  # another decision's
        f"/decisions/{shown.decision.id}/submissions/999999/attachment",
        f"/decisions/999999/submissions/{public_one.id}/attachment",
    ]
    hidden_public = next(s for s in hidden.submissions.values() if s.public and s.attachment_sha256)
    refused.append(public._attachment_path(hidden.decision, hidden_public))  # the decision is not published
    no_file = next(s for s in shown.submissions.values() if s.public and not s.attachment_sha256)
    refused.append(public._attachment_path(shown.decision, no_file))
    for path in refused:
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert not answer.content.startswith(b"%PDF-")


def test_decision_is_public_only_once_published(client, session, engine):
    """The same decision is absent everywhere until published, then present everywhere."""
    built = decided(session, title="Решение за детските градини", stakeholders=ONE_VOTER, publish=False)
    assert shown_ids(get_page(client)) == set()
    assert read_csv(client) == [] and read_feed(client).entries == []
    service.publish_decision(session=session, actor=built.coordinator, consultation=built.consultation)
    assert shown_ids(get_page(client)) == {built.decision.id}
    assert [int(r["Decision ID"]) for r in read_csv(client)] == [built.decision.id]
    assert len(read_feed(client).entries) == 1
    with Session(engine) as fresh:
        assert fresh.get(Decision, built.decision.id).published_at is not None


@pytest.mark.browser
def test_archive_is_accessible_and_filters_without_javascript(browser: Browser, live_server) -> None:
    """axe-core finds nothing serious in either language; the search form works with JavaScript off;
    on a phone nothing scrolls sideways."""

    def build(session: Session) -> tuple[int, int]:
        flood = make_emergency(session, make_user(session, "coordinator"), "Наводнение по река Струма")
        found = decided(session, title="Мерки за Подкрепа на Малкия бизнес", emergency=flood)
        other = decided(session, title="Ремонт на водопровода", decided_on=date(2025, 6, 1), stakeholders=ONE_VOTER)
        return found.decision.id, other.decision.id

    found, other = in_database(live_server.database_url, build)
    context = browser.new_context(java_script_enabled=False, viewport={"width": PHONE[0], "height": PHONE[1]})
    try:
        reader = context.new_page()
        reader.goto(live_server.url + "/")
        reader.locator("header nav a[href='/decisions']").click()
        expect(reader.locator("main ol.decisions > li")).to_have_count(2)
        assert has_no_horizontal_overflow(reader)
        reader.locator("#decisions-q").fill("подкрепа")
        reader.locator("main form button[type=submit]").click()
        expect(reader.locator("main ol.decisions > li")).to_have_count(1)
        expect(reader.locator(f"#decision-{found}")).to_be_visible()
        reader.goto(live_server.url + "/decisions?lang=en")
        reader.locator("#decisions-year").select_option("2025")
        reader.locator("main form button[type=submit]").click()
        expect(reader.locator("html")).to_have_attribute("lang", "en")
        expect(reader.locator("main ol.decisions > li")).to_have_count(1)
        expect(reader.locator(f"#decision-{other}")).to_be_visible()
    finally:
        context.close()
    page = browser.new_page()
    try:
        axe = Axe()
        problems = {}
        for path in ("/decisions", "/decisions?lang=en"):
            page.goto(live_server.url + path)
            violations = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}}).response
            blocking = [v for v in violations["violations"] if v["impact"] in ("serious", "critical")]
            if blocking:
                problems[path] = [(v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in blocking]
        assert not problems, problems
    finally:
        page.close()
