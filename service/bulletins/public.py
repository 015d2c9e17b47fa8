"""What the public reads: the home page, each update, the fact-checks, the Atom and CAP feeds and the JSON
list. Every surface is built here as bytes, once; the routes serve them with HTTP caching and the static
mirror writes the very same bytes to files.

Public pages are the same for everyone (no user, no cookie, no form), so proxies and CDNs may cache them;
their language comes from `?lang=` (Bulgarian by default), never from a cookie.
"""

import asyncio
import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response
from markupsafe import Markup
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from service.bulletins import atom, cap, markdown
from service.bulletins import service as bulletins
from service.bulletins.http_cache import Cached, Rendered, answer, key_of, pages
from service.bulletins.models import (
    CAP_CATEGORY_LABELS,
    CAP_SEVERITY_LABELS,
    CATEGORY_LABELS,
    CERTAINTY_LABELS,
    RESPONSE_TYPE_LABELS,
    URGENCY_LABELS,
    VERDICT_LABELS,
    Bulletin,
    BulletinStatus,
    PublishedUpdate,
    Rumour,
    RumourStatus,
)
from service.config import settings
from service.db import Id, request_session
from service.emergencies.models import KIND_LABELS, SEVERITY_LABELS, Emergency, EmergencyStatus
from service.i18n import format_date, format_datetime, gettext_in, normalise_language
from service.web import templates

HTML = "text/html; charset=utf-8"
JSON = "application/json"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
HOME_UPDATES = 30
FEED_ENTRIES = 50
# The paths PublicFastPath may answer from the cache (see service.main).
EXACT_PATHS = ("/", "/fact-checks", "/feeds/updates.atom", "/feeds/cap.atom", "/api/v1/public/updates")
PREFIXES = ("/updates/",)

router = APIRouter()


def absolute_url(path: str) -> str:
    return settings.base_url.rstrip("/") + path


def public_language(value: str | None) -> str:
    return normalise_language(value) or settings.default_language


def page_url(path: str, language: str) -> str:
    return path if language == settings.default_language else f"{path}?lang={language}"


def render_page(name: str, language: str, context: dict[str, Any]) -> bytes:
    """A public page: the same bytes for every reader of this language."""
    gettext = gettext_in(language)
    base = {
        "_": gettext,
        "lang": language,
        "other_lang": "en" if language == "bg" else "bg",
        "page_url": page_url,
        "settings": settings,
        "municipality": settings.municipality_name if language == "bg" else settings.municipality_name_en,
        "fmt_datetime": lambda value: format_datetime(value, language),
        "fmt_date": lambda value: format_date(value, language),
        "labels": {
            "category": CATEGORY_LABELS, "urgency": URGENCY_LABELS, "severity": CAP_SEVERITY_LABELS,
            "certainty": CERTAINTY_LABELS, "cap_category": CAP_CATEGORY_LABELS, "response_type": RESPONSE_TYPE_LABELS,
            "verdict": VERDICT_LABELS, "emergency_kind": KIND_LABELS, "emergency_severity": SEVERITY_LABELS,
        },
    }  # fmt: skip
    return templates.env.get_template(name).render({**base, **context}).encode()


def _last_change(session: Session) -> datetime:
    """When anything the public pages show last changed."""
    bulletin = session.exec(
        select(sa.func.max(sa.func.coalesce(Bulletin.retracted_at, Bulletin.corrected_at, Bulletin.published_at)))
    ).one()
    emergency = session.exec(
        select(sa.func.max(sa.func.coalesce(Emergency.closed_at, Emergency.stood_down_at, Emergency.declared_at)))
    ).one()
    rumour = session.exec(select(sa.func.max(Rumour.updated_at)).where(Rumour.status == RumourStatus.resolved)).one()
    return max((t for t in (bulletin, emergency, rumour) if t is not None), default=EPOCH)


def _summary(bulletin: Bulletin, length: int = 240) -> str:
    return _summary_of(bulletin.body, length)


@lru_cache(maxsize=1024)
def _summary_of(body: str, length: int) -> str:
    """Most of a home page's render is its summaries' Markdown: each text is parsed once."""
    text = " ".join(markdown.to_text(body).split())
    return text if len(text) <= length else text[: length - 1].rsplit(" ", 1)[0] + "…"


def _local_date(value: datetime) -> str:
    return value.astimezone(ZoneInfo(settings.timezone)).date().isoformat()


def _claim_reviews(items: list[tuple[Rumour, Bulletin]], language: str) -> Markup:
    """schema.org ClaimReview JSON-LD, safe inside a <script> element."""
    _ = gettext_in(language)
    name = settings.municipality_name if language == "bg" else settings.municipality_name_en
    author = {"@type": "Organization", "name": name, "url": absolute_url("/")}
    reviews = [
        {
            "@context": "https://schema.org",
            "@type": "ClaimReview",
            "url": absolute_url(f"/updates/{bulletin.id}"),
            "claimReviewed": rumour.wording,
            "datePublished": _local_date(bulletin.published_at or EPOCH),
            "author": author,
            "inLanguage": bulletin.language,
            "reviewRating": {
                "@type": "Rating",
                "alternateName": _(VERDICT_LABELS[rumour.verdict]),
                "ratingValue": {"false": 1, "misleading": 2, "unproven": 3, "true": 5}[rumour.verdict.value],
                "bestRating": 5,
                "worstRating": 1,
            },
            "itemReviewed": {
                "@type": "Claim",
                "datePublished": _local_date(rumour.first_seen),
                "appearance": [{"@type": "CreativeWork", "url": rumour.url}] if rumour.url else [],
            },
        }
        for rumour, bulletin in items
    ]
    text = json.dumps(reviews, ensure_ascii=False, indent=1)
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))  # noqa: S704


# --- the surfaces, as bytes ------------------------------------------------------------------------------


def home(session: Session, language: str) -> Rendered:
    updates, total = bulletins.published(session=session, language=language, limit=HOME_UPDATES)
    _other, other_total = bulletins.published(session=session, language="en" if language == "bg" else "bg", limit=1)
    emergencies = session.exec(
        select(Emergency).where(Emergency.status == EmergencyStatus.active).order_by(col(Emergency.declared_at).desc())
    ).all()
    checks = bulletins.fact_checks(session=session, language=language, limit=5)
    body = render_page(
        "public/home.html",
        language,
        {"updates": [(b, _summary(b)) for b in updates], "total": total, "other_total": other_total,
         "emergencies": emergencies, "fact_checks": checks, "canonical": absolute_url(page_url("/", language))},
    )  # fmt: skip
    return Rendered(body, HTML, _last_change(session))


def update_page(session: Session, bulletin_id: int, language: str) -> Rendered:
    bulletin = bulletins.public_bulletin(session=session, bulletin_id=bulletin_id)
    revisions = bulletins.revisions(session=session, bulletin_id=bulletin.id)
    emergency = session.get(Emergency, bulletin.emergency_id) if bulletin.emergency_id else None
    answered = session.exec(select(Rumour).where(Rumour.bulletin_id == bulletin.id, Rumour.verdict.is_not(None))).all()
    body = render_page(
        "public/update.html",
        language,
        {
            "bulletin": bulletin,
            "body_html": Markup(markdown.to_html(bulletin.body)),  # noqa: S704 (sanitised)
            "instruction_html": Markup(markdown.to_html(bulletin.instruction)),  # noqa: S704 (sanitised)
            "history": [(r, Markup(markdown.to_html(r.body))) for r in reversed(revisions)],  # noqa: S704 (sanitised)
            "emergency": emergency,
            "rumours": answered,
            "canonical": absolute_url(page_url(f"/updates/{bulletin.id}", language)),
            "claim_reviews": _claim_reviews([(r, bulletin) for r in answered], language) if answered else None,
        },
    )
    return Rendered(body, HTML, bulletin.changed_at or EPOCH)


def cap_message(session: Session, bulletin_id: int) -> Rendered:
    bulletin = bulletins.public_bulletin(session=session, bulletin_id=bulletin_id)
    revisions = bulletins.revisions(session=session, bulletin_id=bulletin.id)
    body = cap.build(bulletin, revisions, web_url=absolute_url(f"/updates/{bulletin.id}"))
    return Rendered(body, f"{cap.MEDIA_TYPE}; charset=utf-8", bulletin.changed_at or EPOCH)


def fact_checks_page(session: Session, language: str) -> Rendered:
    items = bulletins.fact_checks(session=session, language=language)
    body = render_page(
        "public/fact_checks.html",
        language,
        # The text shown is the reviewed update's (its corrections included), not the rumour log's draft.
        {
            "items": [(r, b, Markup(markdown.to_html(b.body))) for r, b in items],  # noqa: S704 (sanitised)
            "claim_reviews": _claim_reviews(items, language),
            "canonical": absolute_url(page_url("/fact-checks", language)),
        },
    )
    return Rendered(body, HTML, _last_change(session))


def updates_feed(session: Session) -> Rendered:
    entries = []
    for bulletin in bulletins.in_feed(session=session, limit=FEED_ENTRIES):
        _ = gettext_in(bulletin.language)
        retracted = bulletin.status == BulletinStatus.retracted
        title = _("Retracted: {title}").format(title=bulletin.title) if retracted else bulletin.title
        content = markdown.to_html(bulletin.body)
        if retracted:
            content = f"<p><strong>{_('This update was retracted')}</strong>: {_escape(bulletin.retraction_reason)}</p>"
        entries.append(
            atom.Entry(
                id=absolute_url(f"/updates/{bulletin.id}"), title=title, updated=bulletin.changed_at or EPOCH,
                published=bulletin.published_at, language=bulletin.language, summary=_summary(bulletin),
                content_html=content, categories=[bulletin.category.value],
                links=[atom.Link(absolute_url(f"/updates/{bulletin.id}"), type="text/html"),
                       atom.Link(absolute_url(f"/updates/{bulletin.id}/cap.xml"), rel="related", type=cap.MEDIA_TYPE)],
            )
        )  # fmt: skip
    body = atom.build(
        feed_id=absolute_url("/feeds/updates.atom"),
        title=_feed_title("Public updates"),
        self_url=absolute_url("/feeds/updates.atom"),
        alternate_url=absolute_url("/"),
        author=settings.municipality_name,
        entries=entries,
        language=settings.default_language,
    )
    return Rendered(body, f"{atom.MEDIA_TYPE}; charset=utf-8", _last_change(session))


def cap_feed(session: Session) -> Rendered:
    """The CAP index: one entry per update, for its current message (an Update after a correction, a
    Cancel after a retraction), linking to the message itself."""
    entries = []
    for bulletin in bulletins.in_feed(session=session, limit=FEED_ENTRIES):
        revisions = bulletins.revisions(session=session, bulletin_id=bulletin.id)
        if not revisions:
            continue
        ident, _sent, msg_type = cap.latest(bulletin, revisions)
        entries.append(
            atom.Entry(
                id=f"urn:cap:{cap.sender()}:{ident}", title=f"{msg_type}: {bulletin.title}",
                updated=bulletin.changed_at or EPOCH, published=bulletin.published_at, language=bulletin.language,
                summary=f"{bulletin.urgency.value} / {bulletin.severity.value} / {bulletin.certainty.value}: "
                f"{bulletin.area_desc}",
                links=[atom.Link(absolute_url(f"/updates/{bulletin.id}/cap.xml"), type=cap.MEDIA_TYPE),
                       atom.Link(absolute_url(f"/updates/{bulletin.id}"), rel="related", type="text/html")],
            )
        )  # fmt: skip
    body = atom.build(
        feed_id=absolute_url("/feeds/cap.atom"),
        title=_feed_title("CAP alerts"),
        self_url=absolute_url("/feeds/cap.atom"),
        alternate_url=absolute_url("/"),
        author=settings.municipality_name,
        entries=entries,
        language=settings.default_language,
    )
    return Rendered(body, f"{atom.MEDIA_TYPE}; charset=utf-8", _last_change(session))


def updates_json(session: Session, language: str | None, limit: int, offset: int) -> Rendered:
    items, total = bulletins.published(session=session, language=language, limit=limit, offset=offset)
    data = {
        "items": [public_update(b).model_dump(mode="json") for b in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Rendered(body, JSON, _last_change(session))


def public_update(bulletin: Bulletin) -> PublishedUpdate:
    return PublishedUpdate.model_validate(
        {**bulletin.model_dump(), "url": absolute_url(f"/updates/{bulletin.id}"),
         "cap_url": absolute_url(f"/updates/{bulletin.id}/cap.xml"), "body_html": markdown.to_html(bulletin.body),
         "instruction": markdown.to_text(bulletin.instruction),
         "instruction_html": markdown.to_html(bulletin.instruction)}
    )  # fmt: skip


def _feed_title(what: str) -> str:
    _ = gettext_in(settings.default_language)
    return f"{settings.municipality_name}: {_(what)}"


def _escape(text: str) -> str:
    return str(Markup.escape(text))


# --- routes ----------------------------------------------------------------------------------------------


async def serve_cached(request: Request, build: Any, *args: Any) -> Response:
    key = key_of(request.url.path, request.scope["query_string"])
    entry = pages.get(key) or await _render_once(request, key, build, *args)
    status, headers, body = answer(entry, dict(request.scope["headers"]), head=request.method == "HEAD")
    response = Response(body, status_code=status)
    response.raw_headers = headers  # the cached answer's exact headers (content-length included)
    return response


_rendering: dict[tuple[int, tuple[str, str]], asyncio.Task] = {}


async def _render_once(request: Request, key: tuple[str, str], build: Any, *args: Any) -> Cached:
    """One render of a page at a time. Under a surge, every request in flight when the copy runs out would
    otherwise render it again, together: while it is rendered the others answer with the copy that just ran
    out or, after a change cleared it, wait for the new one."""
    slot = (pages.generation, key)
    task = _rendering.get(slot)
    if task is None:
        task = _rendering[slot] = asyncio.ensure_future(_render(request, key, slot[0], build, *args))
        task.add_done_callback(lambda done: _forget(slot, done))
    elif (stale := pages.stale(key)) is not None:
        return stale
    return await asyncio.shield(task)  # a reader gone away does not stop the render the others wait for


async def _render(request: Request, key: tuple[str, str], generation: int, build: Any, *args: Any) -> Cached:
    async with request_session(request, write=False) as session:
        rendered = await run_in_threadpool(build, session, *args)
    return pages.put(key, rendered, generation)


def _forget(slot: tuple[int, tuple[str, str]], task: asyncio.Task) -> None:
    if _rendering.get(slot) is task:
        del _rendering[slot]
    if not task.cancelled():
        task.exception()  # its readers got the error (a 404); with none left, it is not logged as lost


LangQuery = Query(default=None, description="bg (default) or en")


@router.get("/", include_in_schema=False)
async def home_route(request: Request, lang: str | None = LangQuery) -> Response:
    return await serve_cached(request, home, public_language(lang))


@router.get("/updates/{bulletin_id}", include_in_schema=False)
async def update_route(request: Request, bulletin_id: Id, lang: str | None = LangQuery) -> Response:
    return await serve_cached(request, update_page, bulletin_id, public_language(lang))


@router.get("/updates/{bulletin_id}/cap.xml", include_in_schema=False)
async def cap_route(request: Request, bulletin_id: Id) -> Response:
    return await serve_cached(request, cap_message, bulletin_id)


@router.get("/fact-checks", include_in_schema=False)
async def fact_checks_route(request: Request, lang: str | None = LangQuery) -> Response:
    return await serve_cached(request, fact_checks_page, public_language(lang))


@router.get("/feeds/updates.atom", include_in_schema=False)
async def updates_feed_route(request: Request) -> Response:
    return await serve_cached(request, updates_feed)


@router.get("/feeds/cap.atom", include_in_schema=False)
async def cap_feed_route(request: Request) -> Response:
    return await serve_cached(request, cap_feed)


@router.get("/api/v1/public/updates", tags=["public"], response_model=None)
async def public_updates_route(
    request: Request,
    language: str | None = Query(default=None, pattern="^(bg|en)$", description="Only updates in this language."),
    limit: int = Query(default=50, ge=1, le=200),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> Response:
    """Published updates, the newest first (no login). Retracted updates are not listed as current."""
    return await serve_cached(request, updates_json, language, limit, offset)
