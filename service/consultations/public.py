"""The public decisions archive: `/decisions` (searchable, filtered by emergency and year), its CSV and
Atom feed, and the attachments of the submissions their organisations made public.

Built as bytes and served like the other public surfaces (`service.bulletins.public`): the same for every
reader, in Bulgarian or with `?lang=en`, with ETag, Last-Modified and `304`. Only published decisions appear,
and of the submissions only those their organisations agreed to publish.

The CSV has one row per organisation in a decision — every organisation that voted or made its submission
public — so votes and positions sit side by side; a decision with neither has one row without an
organisation. Headers are English and votes and positions are codes (`for`, `support`…): it is for machines.
"""

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response
from markupsafe import Markup
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from service.bulletins import atom, markdown
from service.bulletins.http_cache import Rendered, cache_control
from service.bulletins.public import (
    EPOCH,
    HTML,
    LangQuery,
    absolute_url,
    page_url,
    public_language,
    render_page,
    serve_cached,
)
from service.config import settings
from service.consultations import service
from service.consultations.models import (
    POSITION_LABELS,
    VOTE_LABELS,
    Consultation,
    Decision,
    Submission,
    Vote,
)
from service.db import Id, request_session
from service.emergencies.models import Emergency
from service.errors import NotFound
from service.i18n import N_, gettext_in
from service.partners.models import Organisation

PAGE_SIZE = 20
FEED_ENTRIES = 50
CSV_LIMIT = 10_000
MAX_QUERY = 200
# The paths PublicFastPath may answer from the cache (see service.main). Not the CSV: its route adds the
# file name to save it under, which the fast path's copy does not carry; nor attachments, served from files.
EXACT_PATHS = ("/decisions", "/feeds/decisions.atom")
NO_SUCH_ATTACHMENT = N_("There is no such attachment.")

router = APIRouter()


@dataclass(frozen=True)
class Filters:
    """What a reader searched and filtered by; unusable values are dropped, so any query gives a page."""

    q: str = ""
    emergency_id: int | None = None
    year: int | None = None

    @classmethod
    def parse(cls, q: str | None, emergency: str | None, year: str | None) -> "Filters":
        return cls(
            q=(q or "").strip()[:MAX_QUERY],
            emergency_id=_whole(emergency, 1, 2**31 - 1),
            year=_whole(year, 1900, 2200),
        )

    def query(self, **extra: Any) -> dict[str, Any]:
        """The filters as query parameters (only those set), with `extra`."""
        values = {"q": self.q, "emergency": self.emergency_id, "year": self.year, **extra}
        return {k: v for k, v in values.items() if v not in (None, "", 0)}


def _whole(value: str | None, low: int, high: int) -> int | None:
    text = (value or "").strip()
    if not text.isdigit() or len(text) > 10 or not low <= int(text) <= high:
        return None
    return int(text)


def _link(path: str, language: str, **query: Any) -> str:
    if language != settings.default_language:
        query["lang"] = language
    return f"{path}?{urlencode(query)}" if query else path


# --- reading what is published ---------------------------------------------------------------------------


@dataclass
class PublishedDecision:
    decision: Decision
    consultation: Consultation
    emergency: Emergency | None
    votes: list[tuple[Organisation, Vote]]
    tally: dict[str, int]
    submissions: list[tuple[Organisation, Submission]]


def _organisations(session: Session, ids: set[int]) -> dict[int, Organisation]:
    if not ids:
        return {}
    return {o.id: o for o in session.exec(select(Organisation).where(col(Organisation.id).in_(ids)))}


def org_name(organisation: Organisation, language: str) -> str:
    """The organisation's name in this language: its English name when it has one, else its own."""
    return organisation.name_en if language == "en" and organisation.name_en else organisation.name


def _details(session: Session, rows: list[tuple[Decision, Consultation]], language: str) -> list[PublishedDecision]:
    """Each decision with its votes and public submissions, organisations by name."""
    votes = {d.id: service.votes_of(session=session, decision_id=d.id) for d, _c in rows}
    shown = {c.id: service.public_submissions(session=session, consultation_id=c.id) for _d, c in rows}
    organisations = _organisations(
        session,
        {v.organisation_id for vs in votes.values() for v in vs}
        | {s.organisation_id for ss in shown.values() for s in ss},
    )
    emergency_ids = {c.emergency_id for _d, c in rows if c.emergency_id is not None}
    emergencies = (
        {e.id: e for e in session.exec(select(Emergency).where(col(Emergency.id).in_(emergency_ids)))}
        if emergency_ids
        else {}
    )

    def by_name(pair: tuple[Organisation, Any]) -> str:
        return org_name(pair[0], language).casefold()

    return [
        PublishedDecision(
            decision=d,
            consultation=c,
            emergency=emergencies.get(c.emergency_id) if c.emergency_id is not None else None,
            votes=sorted(((organisations[v.organisation_id], v.vote) for v in votes[d.id]), key=by_name),
            tally=service.vote_tally(votes[d.id]),
            submissions=[(organisations[s.organisation_id], s) for s in shown[c.id]],
        )
        for d, c in rows
    ]


def _last_change(session: Session) -> datetime:
    return session.exec(select(sa.func.max(Decision.published_at))).one() or EPOCH


def _emergencies_with_decisions(session: Session) -> list[Emergency]:
    published = (
        select(Consultation.emergency_id)
        .join(Decision, col(Decision.consultation_id) == Consultation.id)
        .where(col(Decision.published_at).is_not(None))
    )
    return list(
        session.exec(
            select(Emergency).where(col(Emergency.id).in_(published)).order_by(col(Emergency.declared_at).desc())
        )
    )


def _years_with_decisions(session: Session) -> list[int]:
    dates = session.exec(select(Decision.decided_on).where(col(Decision.published_at).is_not(None)).distinct())
    return sorted({d.year for d in dates}, reverse=True)


def _attachment_path(decision: Decision, submission: Submission) -> str:
    return f"/decisions/{decision.id}/submissions/{submission.id}/attachment"


def _anchor(decision: Decision) -> str:
    return f"decision-{decision.id}"


# --- the surfaces, as bytes ------------------------------------------------------------------------------


def decisions_page(session: Session, language: str, filters: Filters, offset: int) -> Rendered:
    rows, total = service.published_decisions(
        session=session, q=filters.q, emergency_id=filters.emergency_id, year=filters.year,
        limit=PAGE_SIZE, offset=offset,
    )  # fmt: skip
    items = [
        (item, Markup(markdown.to_html(item.decision.text)))  # noqa: S704 (sanitised)
        for item in _details(session, rows, language)
    ]
    previous = _link("/decisions", language, **filters.query(offset=max(offset - PAGE_SIZE, 0))) if offset else None
    following = (
        _link("/decisions", language, **filters.query(offset=offset + PAGE_SIZE))
        if offset + PAGE_SIZE < total
        else None
    )
    body = render_page(
        "public/decisions.html",
        language,
        {"items": items, "total": total, "offset": offset, "shown_to": offset + len(items), "filters": filters,
         "emergencies": _emergencies_with_decisions(session), "years": _years_with_decisions(session),
         "previous": previous, "following": following, "org_name": lambda o: org_name(o, language),
         "position_labels": POSITION_LABELS, "vote_labels": VOTE_LABELS, "votes": list(Vote),
         "attachment_url": _attachment_path, "anchor": _anchor,
         "csv_url": _link("/decisions.csv", settings.default_language, **filters.query()),
         "other_language_url": _link("/decisions", "en" if language == "bg" else "bg", **filters.query()),
         "canonical": absolute_url(page_url("/decisions", language))},
    )  # fmt: skip
    return Rendered(body, HTML, _last_change(session))


CSV_COLUMNS = (
    "Decision ID", "Decided on", "Published at", "Emergency", "Consultation", "Question", "Decision",
    "Organisation", "Organisation (English)", "Vote", "Public position", "Public comments", "Attachment", "URL",
)  # fmt: skip


def _cell(value: object) -> str:
    """A cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_rows(item: PublishedDecision) -> list[list[object]]:
    d, c = item.decision, item.consultation
    published = d.published_at.replace(microsecond=0).isoformat() if d.published_at else ""
    emergency = item.emergency.title if item.emergency else ""
    common = [d.id, d.decided_on.isoformat(), published, emergency, c.title, c.question, markdown.to_text(d.text)]
    url = absolute_url(f"/decisions#{_anchor(d)}")
    votes = {o.id: vote for o, vote in item.votes}
    submissions = {o.id: s for o, s in item.submissions}
    organisations = {o.id: o for o, _v in item.votes} | {o.id: o for o, _s in item.submissions}
    if not organisations:
        return [[*common, "", "", "", "", "", "", url]]
    rows = []
    for organisation in sorted(organisations.values(), key=lambda o: (o.name.casefold(), o.id)):
        vote, submission = votes.get(organisation.id), submissions.get(organisation.id)
        attachment = (
            absolute_url(_attachment_path(d, submission))
            if submission is not None and submission.attachment_sha256
            else ""
        )
        rows.append(
            [*common, organisation.name, organisation.name_en or "", vote.value if vote else "",
             submission.position.value if submission else "", submission.comments if submission else "",
             attachment, url]
        )  # fmt: skip
    return rows


def decisions_csv(session: Session, filters: Filters) -> Rendered:
    rows, _total = service.published_decisions(
        session=session, q=filters.q, emergency_id=filters.emergency_id, year=filters.year, limit=CSV_LIMIT
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in _details(session, rows, settings.default_language):
        writer.writerows([_cell(value) for value in row] for row in _csv_rows(item))
    return Rendered(out.getvalue().encode(), "text/csv; charset=utf-8", _last_change(session))


def decisions_feed(session: Session) -> Rendered:
    language = settings.default_language
    _ = gettext_in(language)
    rows, _total = service.published_decisions(session=session, limit=FEED_ENTRIES)
    entries = []
    for item in _details(session, rows, language):
        d = item.decision
        votes = "".join(
            f"<li>{_escape(org_name(o, language))}: {_escape(_(VOTE_LABELS[v]))}</li>" for o, v in item.votes
        )
        tally = ", ".join(f"{_(VOTE_LABELS[v])}: {item.tally[v.value]}" for v in Vote)
        positions = "".join(
            f"<li>{_escape(org_name(o, language))}: {_escape(_(POSITION_LABELS[s.position]))}"
            + (f"<br>{_escape(s.comments)}" if s.comments else "")
            + "</li>"
            for o, s in item.submissions
        )
        content = (
            markdown.to_html(d.text)
            + (f"<h3>{_escape(_('Votes'))}</h3><ul>{votes}</ul>" if votes else "")
            + f"<p>{_escape(tally)}</p>"
            + (f"<h3>{_escape(_('Public submissions'))}</h3><ul>{positions}</ul>" if positions else "")
        )
        link = absolute_url(f"/decisions#{_anchor(d)}")
        entries.append(
            atom.Entry(
                id=link, title=item.consultation.title, updated=d.published_at or EPOCH, published=d.published_at,
                language=language, summary=item.consultation.question, content_html=content,
                categories=[f"emergency-{item.emergency.id}"] if item.emergency else [],
                links=[atom.Link(link, type="text/html")],
            )
        )  # fmt: skip
    body = atom.build(
        feed_id=absolute_url("/feeds/decisions.atom"),
        title=f"{settings.municipality_name}: {_('Decisions')}",
        self_url=absolute_url("/feeds/decisions.atom"),
        alternate_url=absolute_url("/decisions"),
        author=settings.municipality_name,
        entries=entries,
        language=language,
        updated=_last_change(session),
    )
    return Rendered(body, f"{atom.MEDIA_TYPE}; charset=utf-8", _last_change(session))


def _escape(text: str) -> str:
    return str(Markup.escape(text))


def public_attachment(*, session: Session, decision_id: int, submission_id: int) -> Submission:
    """A submission's attachment, if the decision is published and the organisation made the submission public."""
    decision = session.get(Decision, decision_id)
    submission = session.get(Submission, submission_id)
    if (
        decision is None
        or decision.published_at is None
        or submission is None
        or submission.consultation_id != decision.consultation_id
        or not submission.public
        or submission.attachment_sha256 is None
    ):
        raise NotFound(NO_SUCH_ATTACHMENT)
    return submission


# --- routes ----------------------------------------------------------------------------------------------


@router.get("/decisions", include_in_schema=False)
async def decisions_route(
    request: Request,
    lang: str | None = LangQuery,
    q: str | None = Query(default=None, description="Words in the title, question or decision."),
    emergency: str | None = Query(default=None, description="An emergency's id."),
    year: str | None = Query(default=None, description="The year the decision was taken."),
    offset: str | None = Query(default=None),
) -> Response:
    """Published decisions, the newest first. Values that mean nothing are ignored, never an error page."""
    start = _whole(offset, 0, 1_000_000) or 0
    return await serve_cached(request, decisions_page, public_language(lang), Filters.parse(q, emergency, year), start)


@router.get("/decisions.csv", include_in_schema=False)
async def decisions_csv_route(
    request: Request, q: str | None = None, emergency: str | None = None, year: str | None = None
) -> Response:
    response = await serve_cached(request, decisions_csv, Filters.parse(q, emergency, year))
    response.raw_headers.append((b"content-disposition", b'attachment; filename="decisions.csv"'))
    return response


@router.get("/feeds/decisions.atom", include_in_schema=False)
async def decisions_feed_route(request: Request) -> Response:
    return await serve_cached(request, decisions_feed)


@router.get("/decisions/{decision_id}/submissions/{submission_id}/attachment", include_in_schema=False)
async def attachment_route(request: Request, decision_id: Id, submission_id: Id) -> Response:
    """The PDF attached to a public submission of a published decision; anything else is 404."""
    async with request_session(request, write=False) as session:
        submission = await run_in_threadpool(
            public_attachment, session=session, decision_id=decision_id, submission_id=submission_id
        )
    etag = f'"{submission.attachment_sha256}"'  # stored by its SHA-256: the name is the content
    headers = {"ETag": etag, "Cache-Control": cache_control()}
    if etag in (request.headers.get("if-none-match") or ""):
        return Response(status_code=304, headers=headers)
    data = await run_in_threadpool(service.attachment_bytes, submission)
    name = submission.attachment_name or "attachment.pdf"
    headers["Content-Disposition"] = f"attachment; filename=\"{_ascii(name)}\"; filename*=UTF-8''{quote(name)}"
    return Response(data, media_type="application/pdf", headers=headers)


def _ascii(name: str) -> str:
    return "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in name)
