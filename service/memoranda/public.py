"""The public verification of memoranda, without a login: by the code printed on every page (where the QR
code leads), by a PDF's SHA-256, or by uploading the PDF. Each answer is a page, or JSON for
`Accept: application/json`.

An answer by code or hash carries no one's session, token or name, so a proxy may keep it for a minute: a
widely shared document can be checked by many people at once without each check reaching the database.
"""

import hashlib
import logging
import re
from datetime import date, datetime
from io import BytesIO
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from service import limits, pdf
from service.config import settings
from service.db import SessionDep, request_session
from service.errors import TooManyAttempts
from service.i18n import N_, format_date, format_datetime, format_number, language_of, normalise_language, translations
from service.memoranda import archive, service
from service.memoranda.models import AWAITING_SIGNATURES, KIND_LABELS, Memorandum, MemorandumStatus
from service.web import redirect, render

router = APIRouter(include_in_schema=False)  # no CSRF check: nothing here changes anything

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_KEY_LENGTH = 100
# A verification code is 16 base32 characters; in a PDF's text it follows `/verify/` or stands alone.
CODE_IN_LINK = re.compile(r"/verify/([A-Z2-7]{16})(?![A-Za-z0-9])")
CODE_ALONE = re.compile(r"(?<![A-Za-z0-9])([A-Z2-7]{16})(?![A-Za-z0-9])")
CODES_TRIED = 5
PAGES_READ = 3
TEXT_SECONDS = 10.0
CACHE_ANSWER = "public, max-age=60"
CACHE_UNKNOWN = "public, max-age=10"  # a memorandum issued a moment ago is soon found
CACHE_FORM = "public, max-age=300"

TOO_LARGE = N_("The file is larger than 25 MB. The memoranda are much smaller: check that it is the right file.")
NO_FILE = N_("Choose the PDF file to check.")
NOT_PDF = N_("This is not a PDF file. The memoranda are PDF documents.")
NO_KEY = N_("Type the verification code printed at the foot of every page.")


# --- what the public sees of a memorandum --------------------------------------------------------

log = logging.getLogger("accord.memoranda")


def _local_date(value: datetime | None) -> date | None:
    return value.astimezone(ZoneInfo(settings.timezone)).date() if value else None


def _status(memorandum: Memorandum, today: date) -> tuple[str, bool]:
    """The status as the public reads it today, and whether the memorandum is in force.

    One in force whose last day has passed is expired even before the nightly job marks it."""
    if memorandum.status == MemorandumStatus.active:
        if today > memorandum.valid_until:
            return MemorandumStatus.expired.value, False
        return MemorandumStatus.active.value, memorandum.valid_from <= today
    return memorandum.status.value, False


def public_view(session: Session, memorandum: Memorandum, matched: str) -> dict[str, Any]:
    """Everything the verification shows, as plain values (the JSON answer, and the page's data)."""
    parties = service.parties_of(session=session, memorandum=memorandum)
    successor = None
    if memorandum.status == MemorandumStatus.superseded:
        successor_id = service.superseded_by(session=session, memoranda=[memorandum]).get(memorandum.id)
        renewal = session.get(Memorandum, successor_id) if successor_id else None
        successor = renewal.verification_code if renewal and renewal.status != MemorandumStatus.draft else None
    status, in_force = _status(memorandum, service.today())
    return {
        "genuine": True,
        "matched": matched,
        "code": memorandum.verification_code,
        "template": memorandum.template,
        "language": memorandum.language.value,
        "status": status,
        "in_force": in_force,
        "valid_from": memorandum.valid_from,
        "valid_until": memorandum.valid_until,
        "issued_on": _local_date(memorandum.issued_at),
        "signed_on": _local_date(memorandum.activated_at),
        "ended_on": _local_date(memorandum.ended_at),
        "superseded_by": successor,
        "sha256": memorandum.sha256,
        "signed_sha256": memorandum.signed_sha256,
        "parties": [
            {
                "name": p.name,
                "registration_number": p.registration_number,
                "signed": p.signed_at is not None,
                "signed_on": _local_date(p.signed_at),
                "declined": p.declined_at is not None,
            }
            for p in parties
        ],
        "verify_url": service.verify_url(memorandum.verification_code),
    }


def status_text(view: dict[str, Any], gettext: Any, fmt_date: Any) -> str:
    """The status in words: in force, expired, terminated, superseded by …, awaiting signatures, …"""
    status = view["status"]
    if status == "active":
        if view["in_force"]:
            return gettext(N_("In force until {date}")).format(date=fmt_date(view["valid_until"]))
        return gettext(N_("Signed by every party; in force from {date}")).format(date=fmt_date(view["valid_from"]))
    if status in AWAITING_SIGNATURES:
        signed = sum(1 for p in view["parties"] if p["signed"])
        return gettext(N_("Not yet in force: awaiting signatures ({signed} of {count} parties have signed)")).format(
            signed=signed, count=len(view["parties"])
        )
    if status == "expired":
        return gettext(N_("Expired: it was in force until {date}")).format(date=fmt_date(view["valid_until"]))
    if status == "terminated":
        return gettext(N_("Terminated on {date}: no longer in force")).format(date=fmt_date(view["ended_on"]))
    if status == "superseded":
        if view["superseded_by"]:
            return gettext(N_("Superseded by memorandum {code}: no longer in force")).format(code=view["superseded_by"])
        return gettext(N_("Superseded by a newer memorandum: no longer in force"))
    if status == "declined":
        return gettext(N_("Never in force: a party declined to sign it"))
    return gettext(N_("Never in force: the municipality cancelled it before it was signed"))


# --- answering -----------------------------------------------------------------------------------


def reader_language(request: Request) -> str:
    """`?lang=` (which a cache keeps apart by its URL), else the remembered choice, else the default."""
    return normalise_language(request.query_params.get("lang")) or language_of(request)


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """A verification page in the reader's language; it shows no user and no form token, so it may be shared."""
    language = reader_language(request)
    gettext = translations(language).gettext
    return render(
        request,
        name,
        {
            "_": gettext,
            "lang": language,
            "user": None,
            "municipality": settings.municipality_name if language == "bg" else settings.municipality_name_en,
            "fmt_date": lambda value: format_date(value, language),
            "fmt_datetime": lambda value: format_datetime(value, language),
            "fmt_number": lambda value: format_number(value, language),
            **context,
        },
        status_code,
    )


def _json(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    encoded = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in body.items()}
    if "parties" in encoded:
        encoded["parties"] = [
            {k: (v.isoformat() if isinstance(v, date) else v) for k, v in party.items()} for party in encoded["parties"]
        ]
    return JSONResponse(encoded, status_code=status_code)


def _cacheable(request: Request, response: Response, cache_control: str) -> Response:
    """Marks a GET answer as shareable for a while, with an ETag; answers 304 when the client has it already."""
    # Weak: the same page compressed or not is the same answer.
    etag = f'W/"{hashlib.sha256(response.body).hexdigest()[:32]}"'
    headers = {"Cache-Control": cache_control, "ETag": etag, "Vary": "Accept, Cookie"}
    sent = [tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")]
    if etag.removeprefix("W/") in sent:
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response


def _answer(
    request: Request, view: dict[str, Any] | None, *, uploaded: bool = False, carries: dict | None = None
) -> Response:
    """The answer for a memorandum found (`view`) or not; `carries`: what a non-genuine file claims to be."""
    if wants_json(request):
        if view is not None:
            return _json(view)
        return _json({"genuine": False, **(carries or {})}, 404)
    if view is None:
        return _page(request, "public/verify_unknown.html", {"uploaded": uploaded, "carries": carries}, 404)
    language = reader_language(request)
    gettext = translations(language).gettext
    words = status_text(view, gettext, lambda value: format_date(value, language))
    kind = view["template"]
    title = gettext(KIND_LABELS[kind])
    return _page(
        request, "public/verify_result.html", {"view": view, "words": words, "title": title, "uploaded": uploaded}
    )


def normalise_key(key: str) -> str:
    """A code as people type it (spaces, dashes, lower case) or a SHA-256, as the lookup takes it."""
    key = re.sub(r"[\s\-]", "", key)
    return key.lower() if archive.SHA256.match(key.lower()) else key.upper()


def matched_file(memorandum: Memorandum, key: str) -> str:
    if key == memorandum.sha256:
        return "issued"
    if key == memorandum.signed_sha256:
        return "signed"
    return "code"


# --- the routes ----------------------------------------------------------------------------------


@router.get("/verify", response_class=HTMLResponse)
def verify_form(request: Request, key: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """The form: type the code (or a SHA-256), or upload the PDF. A typed code goes on to its answer."""
    if key is not None:
        normalised = normalise_key(key)
        if normalised:
            lang = normalise_language(request.query_params.get("lang"))
            return redirect(f"/verify/{quote(normalised, safe='')}" + (f"?lang={lang}" if lang else ""))
        gettext = translations(reader_language(request)).gettext
        return _page(request, "public/verify.html", {"errors": {"key": gettext(NO_KEY)}}, 422)
    return _cacheable(request, _page(request, "public/verify.html", {}), CACHE_FORM)


@router.get("/verify/{key}", response_class=HTMLResponse)
def verify_key(request: Request, key: str, session: SessionDep) -> Response:
    """Whether a verification code or a PDF's SHA-256 belongs to a memorandum issued here, and its status."""
    normalised = normalise_key(key) if len(key) <= MAX_KEY_LENGTH else ""
    memorandum = service.lookup(session=session, key=normalised) if normalised else None
    if memorandum is None:
        return _cacheable(request, _answer(request, None), CACHE_UNKNOWN)
    view = public_view(session, memorandum, matched_file(memorandum, normalised))
    return _cacheable(request, _answer(request, view), CACHE_ANSWER)


def codes_in_pdf(data: bytes) -> list[str]:
    """Verification codes printed in a PDF's first pages (run in a render worker: a hostile file's text
    extraction is bounded in time and memory there). Anything unreadable gives no codes."""
    from pypdf import PdfReader

    found: list[str] = []
    try:
        reader = PdfReader(BytesIO(data))
        for index in range(min(len(reader.pages), PAGES_READ)):
            text = reader.pages[index].extract_text() or ""
            for code in [*CODE_IN_LINK.findall(text), *CODE_ALONE.findall(text)]:
                if code not in found:
                    found.append(code)
    except Exception:  # a broken or hostile file simply carries no code we can read
        log.info("No text could be read from an uploaded PDF", exc_info=True)
    return found[:CODES_TRIED]


def _refused(request: Request, message: str, status_code: int, **params: Any) -> Response:
    text = translations(reader_language(request)).gettext(message)
    text = text.format(**params) if params else text
    if wants_json(request):
        return _json({"genuine": False, "detail": text}, status_code)
    return _page(request, "public/verify.html", {"errors": {"file": text}}, status_code)


def _found(session: Session, digest: str) -> dict[str, Any] | None:
    memorandum = service.lookup(session=session, key=digest)
    return public_view(session, memorandum, matched_file(memorandum, digest)) if memorandum else None


def _claimed(session: Session, codes: list[str]) -> dict[str, str] | None:
    """What a file that is not genuine claims to be: the first code it carries of a memorandum issued here."""
    for code in codes:
        if service.lookup(session=session, key=code) is not None:
            return {"carries_code": code, "verify_url": service.verify_url(code)}
    return None


def _codes_bounded(data: bytes) -> list[str]:
    try:
        return pdf.run_isolated(codes_in_pdf, data, timeout_seconds=TEXT_SECONDS)
    except (pdf.RenderTimeout, pdf.RenderFailed):
        return []


@router.post("/verify", response_class=HTMLResponse)
async def verify_upload(request: Request) -> Response:
    """Whether an uploaded PDF is, byte for byte, the issued or the signed PDF of a memorandum."""
    try:  # anyone may upload: past so many uploads from one address, the next waits (checked before reading)
        limits.count_request(request, "public_write")
    except TooManyAttempts as error:
        refused = _refused(request, error.message, 429, seconds=error.retry_after)
        refused.headers["Retry-After"] = str(error.retry_after)
        return refused
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 64 * 1024:
        return _refused(request, TOO_LARGE, 413)
    form = await request.form(max_files=1, max_fields=5)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _refused(request, NO_FILE, 422)
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return _refused(request, TOO_LARGE, 413)
    if not data.startswith(b"%PDF-"):
        return _refused(request, NOT_PDF, 422)
    digest = archive.sha256_hex(data)
    async with request_session(request, write=False) as reader:
        view = await run_in_threadpool(_found, reader, digest)
    carries = None
    if view is None:
        codes = await run_in_threadpool(_codes_bounded, data)  # no session held meanwhile
        if codes:
            async with request_session(request, write=False) as reader:
                carries = await run_in_threadpool(_claimed, reader, codes)
    response = _answer(request, view, uploaded=True, carries=carries)
    response.headers["Cache-Control"] = "no-store"
    return response
