"""The Atom feeds (RFC 4287) and the fact-checks' schema.org ClaimReview JSON-LD, read by real parsers."""

import json
from datetime import date, datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import feedparser
from pyld import jsonld

from service.bulletins.models import VERDICT_LABELS, Verdict
from service.config import settings
from service.i18n import gettext_in
from tests.bulletins.build import Officers, backdate

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"


def feed(client, path: str) -> feedparser.FeedParserDict:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def by_id(parsed: feedparser.FeedParserDict) -> dict[str, feedparser.FeedParserDict]:
    ids = [e.id for e in parsed.entries]
    assert len(ids) == len(set(ids)), "entry ids repeat"
    return {e.id: e for e in parsed.entries}


def page_url(bulletin_id: int) -> str:
    return f"{settings.base_url}/updates/{bulletin_id}"


def updated(entry: feedparser.FeedParserDict) -> datetime:
    return datetime.fromisoformat(entry.updated)


def test_update_entries_keep_their_id_across_a_correction_and_their_updated_time_moves_forward(client, session, engine):
    """Both feeds parse without a bozo flag; in updates.atom an update keeps its entry id when corrected
    and when retracted, while its `updated` time (and the feed's) moves forward."""
    officers = Officers(client, session)
    first = officers.published(title="Спиране на водата в кв. „Мошино“")["id"]
    second = officers.published(language="en", title="Bus line 3 diverted", body="Line 3 goes via Kladnishka St.")
    second = second["id"]
    backdate(engine, first, hours=2)
    backdate(engine, second, hours=1)

    before = feed(client, "/feeds/updates.atom")
    feed(client, "/feeds/cap.atom")
    entries = by_id(before)
    assert set(entries) == {page_url(first), page_url(second)}
    assert [e.id for e in before.entries] == [page_url(second), page_url(first)]  # the most recently changed first
    assert entries[page_url(first)].link == page_url(first)
    assert entries[page_url(second)].content[0].language == "en"

    officers.correct(first, "Водата ще бъде спряна **до 18 ч.**", title="Спиране на водата до 18 ч.")
    corrected = feed(client, "/feeds/updates.atom")
    feed(client, "/feeds/cap.atom")
    entry = by_id(corrected)[page_url(first)]
    assert entry.title == "Спиране на водата до 18 ч."
    assert "до 18 ч." in entry.content[0].value
    assert updated(entry) > updated(entries[page_url(first)])
    assert datetime.fromisoformat(entry.published) == datetime.fromisoformat(entries[page_url(first)].published)
    assert datetime.fromisoformat(corrected.feed.updated) > datetime.fromisoformat(before.feed.updated)
    assert corrected.entries[0].id == page_url(first)

    officers.retract(second, reason="Линията не е отклонена.")
    retracted = by_id(feed(client, "/feeds/updates.atom"))
    assert set(retracted) == {page_url(first), page_url(second)}
    assert updated(retracted[page_url(second)]) > updated(entries[page_url(second)])


def _message(client, url: str) -> ET.Element:
    response = client.get(urlsplit(url).path)
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)  # noqa: S314 (the app's own message)


def test_each_cap_feed_entry_links_to_the_message_it_names(client, session):
    """Every cap.atom entry links to `/updates/{id}/cap.xml`, which answers the very message the entry's id
    names: an Alert, an Update after a correction, a Cancel after a retraction."""
    officers = Officers(client, session)
    alert = officers.published()["id"]
    corrected = officers.published(title="Евакуация на ул. „Отец Паисий“")["id"]
    officers.correct(corrected, "Евакуацията обхваща и ул. „Търговска“.")
    cancelled = officers.published(language="en", title="Shelter at the sports hall")["id"]
    officers.retract(cancelled)

    parsed = feed(client, "/feeds/cap.atom")
    assert len(parsed.entries) == 3
    kinds = {}
    for entry in parsed.entries:
        cap_links = [link for link in entry.links if link.get("type") == "application/cap+xml"]
        assert len(cap_links) == 1
        bulletin_id = int(urlsplit(cap_links[0].href).path.split("/")[2])
        assert cap_links[0].href == f"{page_url(bulletin_id)}/cap.xml"
        message = _message(client, cap_links[0].href)
        sender, identifier = message.findtext(f"{CAP}sender"), message.findtext(f"{CAP}identifier")
        assert entry.id == f"urn:cap:{sender}:{identifier}"
        msg_type = message.findtext(f"{CAP}msgType")
        assert entry.title.startswith(f"{msg_type}: ")
        assert any(link.href == page_url(bulletin_id) for link in entry.links)
        kinds[bulletin_id] = msg_type
    assert kinds == {alert: "Alert", corrected: "Update", cancelled: "Cancel"}


def test_a_retracted_update_appears_as_retracted_in_both_feeds(client, session):
    """After a retraction the update's entry says so (title and content carry the notice and the reason,
    not the withdrawn text) and the CAP index points at its Cancel message."""
    officers = Officers(client, session)
    body = "Раздаване на вода пред кметството в 10 ч."
    bid = officers.published(title="Раздаване на вода", body=body)["id"]
    officers.retract(bid, reason="Раздаването е отменено.")

    entry = by_id(feed(client, "/feeds/updates.atom"))[page_url(bid)]
    _ = gettext_in("bg")
    assert entry.title == _("Retracted: {title}").format(title="Раздаване на вода")
    assert "Раздаването е отменено." in entry.content[0].value
    assert _("This update was retracted") in entry.content[0].value
    assert body not in entry.content[0].value

    (cap_entry,) = feed(client, "/feeds/cap.atom").entries
    assert cap_entry.title.startswith("Cancel: ")
    assert _message(client, f"{page_url(bid)}/cap.xml").findtext(f"{CAP}msgType") == "Cancel"


def test_drafts_updates_in_review_and_scheduled_ones_never_appear(client, session):
    """Only published (and retracted) updates are in the feeds; a draft, one in review, a scheduled one and
    one sent back to its author are in neither, nor do their pages or CAP messages answer."""
    officers = Officers(client, session)
    shown = officers.published(title="Видимо съобщение")["id"]
    hidden = {
        officers.draft(title="Чернова-МАРКЕР")["id"],
        officers.in_review(title="Преглед-МАРКЕР")["id"],
        officers.scheduled(title="Насрочено-МАРКЕР")["id"],
    }
    back = officers.in_review(title="Върнато-МАРКЕР")["id"]
    response = client.post(
        f"/api/v1/bulletins/{back}/send-back", json={"reason": "Липсва час."}, headers=officers.approver
    )
    assert response.status_code == 200 and response.json()["status"] == "draft"
    hidden.add(back)

    for path in ("/feeds/updates.atom", "/feeds/cap.atom"):
        parsed = feed(client, path)
        assert len(parsed.entries) == 1
        assert "МАРКЕР" not in client.get(path).text
    assert set(by_id(feed(client, "/feeds/updates.atom"))) == {page_url(shown)}
    for bid in hidden:
        assert client.get(f"/updates/{bid}").status_code == 404
        assert client.get(f"/updates/{bid}/cap.xml").status_code == 404


# --- ClaimReview JSON-LD ---------------------------------------------------------------------------------

# schema.org's context, as https://schema.org serves it, maps its terms onto "http://schema.org/" and types
# `url` as an IRI and the dates as schema:Date. No network is reachable in the tests, so this local stand-in
# (the same term definitions for the terms the pages use) is what the document loader hands to pyld.
SCHEMA = "http://schema.org/"
SCHEMA_ORG_CONTEXT = {
    "@context": {
        "@vocab": SCHEMA,
        "schema": SCHEMA,
        "url": {"@id": "schema:url", "@type": "@id"},
        "datePublished": {"@id": "schema:datePublished", "@type": "schema:Date"},
    }
}
CONTEXT_URLS = {"https://schema.org", "https://schema.org/", "http://schema.org", "http://schema.org/"}


def schema_org_only(url: str, options: dict | None = None) -> dict:
    """pyld's document loader: the schema.org context from memory; any other URL is an error."""
    assert url in CONTEXT_URLS, f"the JSON-LD asked for {url}"
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url,
            "document": SCHEMA_ORG_CONTEXT}  # fmt: skip


class LdJson(HTMLParser):
    """Collects the text of every `<script type="application/ld+json">`."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._inside = tag == "script" and dict(attrs).get("type") == "application/ld+json"
        if self._inside:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.scripts[-1] += data


def claim_reviews(html: str) -> list[dict]:
    """The page's ClaimReview nodes, expanded by pyld to full schema.org IRIs."""
    parser = LdJson()
    parser.feed(html)
    assert len(parser.scripts) == 1, parser.scripts
    expanded = jsonld.expand(json.loads(parser.scripts[0]), {"documentLoader": schema_org_only})
    return [node for node in expanded if f"{SCHEMA}ClaimReview" in node.get("@type", [])]


def value(node: dict, name: str) -> object:
    (item,) = node[f"{SCHEMA}{name}"]
    return item.get("@value", item.get("@id", item))


def check_review(node: dict, *, rumour: dict, update: dict, language: str) -> None:
    assert value(node, "claimReviewed") == rumour["wording"]
    rating = value(node, "reviewRating")
    assert value(rating, "alternateName") == gettext_in(language)(VERDICT_LABELS[Verdict(rumour["verdict"])])
    assert value(node, "url") == page_url(update["id"])
    author = value(node, "author")
    assert value(author, "name") == (settings.municipality_name if language == "bg" else settings.municipality_name_en)
    assert f"{SCHEMA}Organization" in author["@type"]
    # The municipality's own date: just after midnight in Sofia it is still yesterday in UTC.
    published = datetime.fromisoformat(update["published_at"]).astimezone(ZoneInfo(settings.timezone)).date()
    assert date.fromisoformat(value(node, "datePublished")) == published
    claim = value(node, "itemReviewed")
    assert f"{SCHEMA}Claim" in claim["@type"]
    assert value(value(claim, "appearance"), "url") == rumour["url"]


def test_fact_checks_carry_claim_review_json_ld_that_pyld_reads(client, session):
    """`/fact-checks` (in each language) and the answering update's page carry ClaimReview JSON-LD with
    claimReviewed, reviewRating.alternateName, url, author and datePublished, even for a claim whose words
    would close a <script> element."""
    officers = Officers(client, session)
    tricky = "Водата е отровена </script><script>alert('x')</script> & „не пийте“ <!-- -->"
    false_rumour, false_update = officers.fact_check(wording=tricky, verdict="false")
    misleading, misleading_update = officers.fact_check(
        wording="Мостът ще бъде взривен утре.", verdict="misleading", url="https://chat.example/g/7"
    )
    english, english_update = officers.fact_check(
        wording="The shelters are full.", verdict="unproven", language="en", response="Places remain at hall 2.",
        url="https://social.example/en/3",
    )  # fmt: skip

    page = client.get("/fact-checks")
    assert page.status_code == 200
    assert "</script><script>alert" not in page.text
    reviews = {value(node, "url"): node for node in claim_reviews(page.text)}
    assert set(reviews) == {page_url(false_update["id"]), page_url(misleading_update["id"])}
    check_review(reviews[page_url(false_update["id"])], rumour=false_rumour, update=false_update, language="bg")
    check_review(reviews[page_url(misleading_update["id"])], rumour=misleading, update=misleading_update, language="bg")

    (node,) = claim_reviews(client.get("/fact-checks?lang=en").text)
    check_review(node, rumour=english, update=english_update, language="en")

    (node,) = claim_reviews(client.get(f"/updates/{false_update['id']}").text)
    check_review(node, rumour=false_rumour, update=false_update, language="bg")
