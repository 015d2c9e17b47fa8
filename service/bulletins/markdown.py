"""Markdown to a small, safe HTML allow-list (for pages and feeds) and to plain text (for CAP messages).

Officers may paste anything, so the Markdown is rendered with raw HTML allowed and everything is then
sanitised by nh3 (Ammonia): scripts and styles go with their content, event handlers, inline styles and
`javascript:` links never come through.
"""

import html
import re
from functools import cache

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {"p", "br", "strong", "em", "b", "i", "ul", "ol", "li", "a", "h2", "h3", "h4", "blockquote", "code", "pre", "hr",
     "table", "thead", "tbody", "tr", "th", "td"}
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# What Markdown left as literal text but reads like markup (`<svg onload=...>` with a quote inside): plain-text
# readers such as CAP clients sometimes show text as HTML, so it does not go out in plain text either.
_TAG_LIKE = re.compile(r"</?[A-Za-z!][^<>]*>")


@cache
def _markdown() -> MarkdownIt:
    # Headings in a body sit below the page's own h1.
    return MarkdownIt("commonmark", {"html": True, "linkify": False, "breaks": True}).enable("table")


def to_html(text: str) -> str:
    """The sanitised HTML of a Markdown text."""
    rendered = _markdown().render(text or "")
    return nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()


def to_text(text: str) -> str:
    """The plain text of a Markdown text: what a CAP `description` or a feed summary carries."""
    rendered = _markdown().render(text or "")
    rendered = rendered.replace("</p>", "</p>\n").replace("<br />", "\n").replace("</li>", "</li>\n")
    bare = _TAG_LIKE.sub("", html.unescape(nh3.clean(rendered, tags=set(), strip_comments=True)))
    lines = [line.strip() for line in bare.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
