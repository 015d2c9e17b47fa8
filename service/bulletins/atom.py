"""Atom feeds (RFC 4287): the public updates, and the index of their CAP messages."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MEDIA_TYPE = "application/atom+xml"


@dataclass
class Link:
    href: str
    rel: str = "alternate"
    type: str | None = None


@dataclass
class Entry:
    id: str
    title: str
    updated: datetime
    links: list[Link]
    published: datetime | None = None
    language: str | None = None
    summary: str | None = None
    content_html: str | None = None
    categories: list[str] = field(default_factory=list)


def atom_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    # Unqualified names under a root that declares the Atom namespace as the default: the serialisation does
    # not depend on ElementTree's process-wide prefix registry.
    element = ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        element.text = text
    return element


def build(
    *, feed_id: str, title: str, self_url: str, alternate_url: str, author: str, entries: list[Entry],
    language: str | None = None, updated: datetime | None = None,
) -> bytes:  # fmt: skip
    """A complete feed; `updated` defaults to its newest entry's (a fixed date for an empty feed)."""
    feed = ET.Element("feed", {"xmlns": NS, **({XML_LANG: language} if language else {})})
    _sub(feed, "id", feed_id)
    _sub(feed, "title", title)
    newest = max((e.updated for e in entries), default=None) or updated or datetime(2026, 1, 1, tzinfo=UTC)
    _sub(feed, "updated", atom_time(newest))
    _sub(feed, "link", rel="self", href=self_url, type=MEDIA_TYPE)
    _sub(feed, "link", rel="alternate", href=alternate_url, type="text/html")
    _sub(_sub(feed, "author"), "name", author)
    for item in entries:
        entry = _sub(feed, "entry")
        if item.language:
            entry.set(XML_LANG, item.language)
        _sub(entry, "id", item.id)
        _sub(entry, "title", item.title)
        _sub(entry, "updated", atom_time(item.updated))
        if item.published:
            _sub(entry, "published", atom_time(item.published))
        for link in item.links:
            _sub(entry, "link", rel=link.rel, href=link.href, type=link.type)
        for term in item.categories:
            _sub(entry, "category", term=term)
        if item.summary:
            _sub(entry, "summary", item.summary)
        if item.content_html is not None:
            _sub(entry, "content", item.content_html, type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
