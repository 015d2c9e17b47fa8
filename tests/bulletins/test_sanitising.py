"""Markdown from officers is sanitised: no script, event handler, `javascript:` link, frame or inline style
reaches a public page, a feed, the public JSON or a CAP message, and titles are text, never markup."""

import json
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

import feedparser

from tests.bulletins.build import Officers

# Each line is markup CommonMark passes through as raw HTML, so it is nh3 that must stop it. The words
# "ВИДИМО-n" are harmless text that must survive, proving the text was rendered and not merely dropped.
HOSTILE = """Безопасен текст ВИДИМО-1.

<script>alert('s1')</script>

<img src=x onerror=alert(2)>

<a href="javascript:alert('s3')">връзка ВИДИМО-2</a> и <a href=" JaVaScRiPt:alert('s4')">друга</a>

<iframe src="https://evil.example/frame" onload="alert('s5')"></iframe>

<p style="color:red" onclick="alert('s6')">оцветен ВИДИМО-3</p>

<div onmouseover="alert('s7')">над</div>

<style>body{display:none}</style>

<a href="https://example.org/info" onclick="alert('s8')" style="color:red">добра ВИДИМО-4</a>
"""
MARKERS = ("ВИДИМО-1", "ВИДИМО-2", "ВИДИМО-3", "ВИДИМО-4")
# None of these may appear anywhere in what is served (case ignored).
FORBIDDEN = ("<script>", "alert(", "onerror", "onclick", "onmouseover", "onload", "<iframe", "<img", "<style",
             "style=", "javascript:")  # fmt: skip
DANGEROUS_TAGS = {"script", "iframe", "img", "style", "object", "embed", "svg", "frame", "frameset", "math", "base"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data"}


class Audit(HTMLParser):
    """Everything in an HTML document that could run code or restyle the page, and every h1's markup."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.h1: list[list] = []  # each h1's contents: child tags and text, in order
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in DANGEROUS_TAGS and not (tag == "script" and values.get("type") == "application/ld+json"):
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            squeezed = "".join((value or "").split()).lower()
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag} {name}=")
            elif name in URL_ATTRIBUTES and squeezed.startswith(("javascript:", "vbscript:", "data:text/html")):
                self.problems.append(f"{tag} {name}={value}")
        if self._in_h1:
            self.h1[-1].append(("tag", tag))
        if tag == "h1":
            self._in_h1 = True
            self.h1.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1[-1].append(("text", data))


def audited(html: str, where: str) -> Audit:
    audit = Audit()
    audit.feed(html)
    audit.close()
    assert audit.problems == [], f"{where}: {audit.problems}"
    lowered = html.lower()
    found = [word for word in FORBIDDEN if word in lowered]
    assert not found, f"{where} serves {found}"
    return audit


def fetched(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, f"{path}: {response.status_code}"
    return response.text


def check_cap(client, bulletin_id: int) -> str:
    """The CAP message's raw bytes and every parsed text and attribute are free of markup; its text."""
    raw = client.get(f"/updates/{bulletin_id}/cap.xml").content
    assert not [w for w in FORBIDDEN if w.encode() in raw.lower()], raw
    root = ET.fromstring(raw)  # noqa: S314 (the app's own message)
    texts = [e.text or "" for e in root.iter()] + [v for e in root.iter() for v in e.attrib.values()]
    text = "\n".join(texts)
    assert not [w for w in FORBIDDEN if w in text.lower()], text
    assert "<" not in "".join(
        t for e in root.iter() if e.tag.endswith(("description", "instruction")) for t in [e.text]
    )
    return text


def test_hostile_markdown_never_reaches_a_public_surface(client, session):
    """An update's body and instruction, its correction and a fact-check's response, all hostile: the update
    and fact-check pages (both languages), the home, both Atom feeds (their entries' HTML parsed), the public
    JSON's body_html and the CAP messages (bytes and parsed text) carry none of it, and keep its text."""
    officers = Officers(client, session)
    bid = officers.published(title="Внимание: наводнение", body=HOSTILE, instruction=HOSTILE)["id"]
    first_page = fetched(client, f"/updates/{bid}")
    for marker in MARKERS:
        assert marker in first_page
    audited(first_page, "update page before the correction")
    assert '<a href="https://example.org/info"' in first_page  # a harmless link stays a link
    assert "ВИДИМО-1" in check_cap(client, bid)

    corrected = HOSTILE.replace("ВИДИМО", "ПОПРАВЕНО")
    officers.correct(bid, corrected, instruction=corrected, reason="Уточнение")
    _rumour, answer = officers.fact_check(response=HOSTILE.replace("ВИДИМО", "ОТГОВОР"))
    fid = answer["id"]

    pages = {
        "update": f"/updates/{bid}", "update en": f"/updates/{bid}?lang=en", "home": "/", "home en": "/?lang=en",
        "fact-checks": "/fact-checks", "fact-check update": f"/updates/{fid}",
    }  # fmt: skip
    served = {name: audited(fetched(client, path), name) for name, path in pages.items()}
    update_page = fetched(client, f"/updates/{bid}")
    for marker in ("ПОПРАВЕНО-1", "ПОПРАВЕНО-4", "ВИДИМО-1", "ВИДИМО-4"):  # the earlier text stays in the history
        assert marker in update_page
    assert "ОТГОВОР-1" in fetched(client, "/fact-checks") and "ОТГОВОР-4" in fetched(client, "/fact-checks")
    assert "ПОПРАВЕНО-1" in fetched(client, "/") and "ОТГОВОР-1" in fetched(client, "/")
    assert served["update"].h1 == [[("text", "Внимание: наводнение")]]

    for path in ("/feeds/updates.atom", "/feeds/cap.atom"):
        raw = fetched(client, path)
        assert not [w for w in FORBIDDEN if w in raw.lower()], path
    # feedparser cleans HTML itself by default; switched off, it shows exactly what the feed serves.
    entries = feedparser.parse(client.get("/feeds/updates.atom").content, sanitize_html=False).entries
    assert len(entries) == 2
    for entry in entries:
        html = entry.content[0].value
        audited(html, f"atom entry {entry.id}")
        audited(entry.summary, f"atom summary {entry.id}")
    contents = {entry.id.rsplit("/", 1)[1]: entry.content[0].value for entry in entries}
    assert "ПОПРАВЕНО-3" in contents[str(bid)] and "ОТГОВОР-3" in contents[str(fid)]

    items = json.loads(fetched(client, "/api/v1/public/updates"))["items"]
    assert {item["id"] for item in items} == {bid, fid}
    for item in items:
        audited(item["body_html"], f"body_html of {item['id']}")
        assert "-2" in item["body_html"]

    assert "ПОПРАВЕНО-4" in check_cap(client, bid)
    assert "ОТГОВОР-4" in check_cap(client, fid)


def test_a_title_with_markup_is_shown_as_text(client, session):
    """A title typed with `<b>` (and a would-be script) is escaped by the templates: the page's h1, its
    <title>, the home and the fact-checks list show the characters, not an element."""
    officers = Officers(client, session)
    title = "<b>Удебелено</b> <script>x()</script> заглавие"
    bid = officers.published(title=title)["id"]
    officers.fact_check(wording="Слух <i>наклонен</i> текст", response="Отговор.")

    page = fetched(client, f"/updates/{bid}")
    audit = Audit()
    audit.feed(page)
    assert audit.h1 == [[("text", title)]]
    assert audit.problems == []
    assert "<b>Удебелено" not in page and "&lt;b&gt;Удебелено&lt;/b&gt;" in page
    assert "<title>&lt;b&gt;Удебелено&lt;/b&gt;" in page
    home = fetched(client, "/")
    assert "&lt;b&gt;Удебелено&lt;/b&gt; &lt;script&gt;x()&lt;/script&gt;" in home and "<b>Удебелено" not in home
    facts = fetched(client, "/fact-checks")
    assert "<i>наклонен" not in facts and "&lt;i&gt;наклонен&lt;/i&gt;" in facts
    (entry,) = [
        e for e in feedparser.parse(client.get("/feeds/updates.atom").content).entries if e.id.endswith(f"/{bid}")
    ]
    assert entry.title_detail.type == "text/plain"


def test_plain_text_fields_are_escaped_wherever_they_are_shown(client, session):
    """A correction's reason and a retraction's reason are plain text: the page and the feed's entry HTML
    show their characters and never an element."""
    officers = Officers(client, session)
    corrected = officers.published(title="Поправено съобщение")["id"]
    officers.correct(corrected, "Нов текст.", reason="<b>Причина</b> с <img src=x onerror=alert(1)>")
    retracted = officers.published(title="Оттеглено съобщение")["id"]
    officers.retract(retracted, reason="<a href='javascript:alert(2)'>Причина</a> за оттегляне")

    page = fetched(client, f"/updates/{corrected}")
    checker = Audit()
    checker.feed(page)
    assert checker.problems == [] and "&lt;b&gt;Причина&lt;/b&gt; с &lt;img src=x onerror=alert(1)&gt;" in page
    page = fetched(client, f"/updates/{retracted}")
    checker = Audit()
    checker.feed(page)
    assert checker.problems == [] and "&lt;a href=&#39;javascript:alert(2)&#39;&gt;Причина&lt;/a&gt;" in page
    entries = feedparser.parse(client.get("/feeds/updates.atom").content, sanitize_html=False).entries
    (entry,) = [e for e in entries if e.id.endswith(f"/{retracted}")]
    checker = Audit()
    checker.feed(entry.content[0].value)
    assert checker.problems == [] and "Причина" in entry.content[0].value


def test_markup_that_markdown_leaves_as_text_is_shown_escaped(client, session):
    """What CommonMark does not take for HTML or a link (a tag with a quote in a bare attribute, a Markdown
    link to `javascript:`) stays visible text: escaped on the pages, in the feed and the JSON, never an
    element or a link, and never an element of the CAP message."""
    officers = Officers(client, session)
    body = "Текст <svg onload=alert('s1')> и [връзка](javascript:alert(2)) и <javascript:alert(3)>"
    bid = officers.published(body=body)["id"]

    page = fetched(client, f"/updates/{bid}")
    assert "&lt;svg onload=alert('s1')&gt;" in page
    htmls = {"page": page, "home": fetched(client, "/")}
    htmls["json"] = json.loads(fetched(client, "/api/v1/public/updates"))["items"][0]["body_html"]
    htmls["atom"] = feedparser.parse(client.get("/feeds/updates.atom").content, sanitize_html=False).entries[0]
    htmls["atom"] = htmls["atom"].content[0].value
    for where, html in htmls.items():
        checker = Audit()
        checker.feed(html)
        assert checker.problems == [], where
        assert "<svg" not in html and 'href="javascript' not in html.lower(), where
    raw = client.get(f"/updates/{bid}/cap.xml").content
    assert b"<svg" not in raw
    root = ET.fromstring(raw)  # noqa: S314 (the app's own message)
    assert {e.tag.split("}")[0] for e in root.iter()} == {"{urn:oasis:names:tc:emergency:cap:1.2"}
