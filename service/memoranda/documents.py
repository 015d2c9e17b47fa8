"""Memorandum documents: the template per kind and language, the variables each kind declares, and their rendering
(sandboxed Jinja2, then the safe PDF renderer, both inside a render worker with a time limit).

A kind's declaration is `templates/memoranda/{kind}.toml`; both languages of a kind share it. A document sees the
system context the service builds (`SYSTEM_NAMES`) and the kind's declared variables, each at the top level.
"""

import base64
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import segno
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from email_validator import EmailNotValidError, validate_email
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError, meta, nodes
from jinja2 import pass_context as jinja_pass_context
from jinja2.exceptions import UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from service import pdf
from service.config import PROJECT_ROOT, settings
from service.errors import Invalid, NotFound
from service.i18n import N_, babel_locale, format_date

KINDS = (
    "logistics_support",
    "fundraising_campaign",
    "public_awareness",
    "countering_disinformation",
    "public_consultation",
)
LANGUAGES = ("bg", "en")
TEMPLATE_DIR = PROJECT_ROOT / "templates" / "memoranda"
LAYOUT_FILES = ("memorandum.css",)  # hashed into every version besides the templates a document extends
PLACEHOLDER_COAT_OF_ARMS = "memoranda/coat_of_arms.svg"  # relative to templates/, the PDF's base URL
BLANK_DATE = "………………"

# The context the service provides to every document; a declaration may not use these names.
SYSTEM_NAMES = frozenset({"memorandum", "municipality", "parties", "language"})
MEMORANDUM_FIELDS = (
    "code", "verify_url", "qr_svg_data_uri", "issued_on", "valid_from", "valid_until", "signing_deadline", "draft",
    "title",
)  # fmt: skip
MUNICIPALITY_FIELDS = ("name", "eik", "address", "representative", "representative_title", "coat_of_arms_url")
PARTY_FIELDS = ("name", "registration_number", "address", "representative_name", "representative_title", "email")

VARIABLE_TYPES = ("text", "multiline", "date", "integer", "decimal", "email", "choice")
SPEC_KEYS = {
    "name", "type", "required", "label_bg", "label_en", "help_bg", "help_en", "default", "options", "min", "max",
    "max_length", "pattern", "not_before",
}  # fmt: skip
TEXT_MAX_LENGTH = 500
MULTILINE_MAX_LENGTH = 5000
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")

REQUIRED = N_("Required.")
UNKNOWN = N_("Not a variable of this memorandum's template.")
NOT_TEXT = N_("Must be text.")
TOO_LONG = N_("Too long for this field.")
ONE_LINE = N_("Must be a single line.")
BAD_FORMAT = N_("Not in the expected format; see the field's help.")
NOT_DATE = N_("Must be a date (YYYY-MM-DD or DD.MM.YYYY).")
NOT_INTEGER = N_("Must be a whole number.")
NOT_DECIMAL = N_("Must be a number, with a decimal point or comma.")
TOO_SMALL = N_("Smaller than this field allows; see the field's help.")
TOO_LARGE = N_("Larger than this field allows; see the field's help.")
NOT_EMAIL = N_("Must be an e-mail address.")
NOT_OPTION = N_("Must be one of the offered options.")
TOO_EARLY = N_("Must not be earlier than the date it follows.")


class UnknownTemplate(NotFound):
    """A kind or language there is no memorandum template for."""


class MissingVariable(Invalid):
    """A document needs a value that the context does not give; `field` names it."""

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class Choice:
    """One option of a `choice` variable: the value stored, and its label in each language."""

    value: str
    label_bg: str
    label_en: str

    def label(self, language: str) -> str:
        return self.label_bg if language == "bg" else self.label_en


@dataclass(frozen=True)
class VariableSpec:
    """One variable a kind declares: what the form asks for, and what `validate_variables` accepts."""

    name: str
    type: str
    required: bool
    label_bg: str
    label_en: str
    help_bg: str = ""
    help_en: str = ""
    default: Any = None
    options: tuple[Choice, ...] = ()
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    max_length: int | None = None
    pattern: str | None = None
    not_before: str | None = None  # for a date: the name of a date variable it may not precede

    def label(self, language: str) -> str:
        return self.label_bg if language == "bg" else self.label_en

    def help(self, language: str) -> str:
        return self.help_bg if language == "bg" else self.help_en


# Declarations and sources.


def declaration(kind: str, *, template_dir: Path = TEMPLATE_DIR) -> list[VariableSpec]:
    """The variables `kind` declares, in the order of its declaration file; ValueError if that file is malformed."""
    _check_kind(kind)
    path = template_dir / f"{kind}.toml"
    stat = path.stat()
    return list(_parsed_declaration(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=64)
def _parsed_declaration(path: Path, _mtime_ns: int, _size: int) -> tuple[VariableSpec, ...]:
    """Parsed once per version of the file (every create, preview and issue asks for it)."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    unknown_keys = set(data) - {"variables"}
    if unknown_keys:
        raise ValueError(f"{path.name}: unknown top-level keys {sorted(unknown_keys)}; only [[variables]] tables")
    specs = [_spec(path.name, entry) for entry in data.get("variables", [])]
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path.name}: {', '.join(duplicates)} declared more than once")
    for spec in specs:
        if spec.not_before and spec.not_before not in names:
            raise ValueError(f"{path.name}: `{spec.name}` follows `{spec.not_before}`, which is not declared")
    return tuple(specs)


def template_source(kind: str, language: str, *, template_dir: Path = TEMPLATE_DIR) -> str:
    """The Jinja2 source of the document for `kind` in `language`."""
    return _document_path(kind, language, template_dir).read_text(encoding="utf-8")


def template_version(kind: str, language: str, *, template_dir: Path = TEMPLATE_DIR) -> str:
    """SHA-256 (hex) of everything that makes the document's layout and wording: its source, every template it extends
    or includes (so `_base.html`), and `memorandum.css`; each hashed as its name, its length and its bytes, in that
    order. Any change to any of them gives a new version. The declaration (.toml) is not part of it."""
    digest = hashlib.sha256()
    for name in (_document_name(kind, language), *_referenced_templates(kind, language, template_dir), *LAYOUT_FILES):
        content = (template_dir / name).read_bytes()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


# Validating filled variables.


def validate_variables(
    kind: str, values: Mapping[str, object], *, template_dir: Path = TEMPLATE_DIR
) -> tuple[dict[str, Any], dict[str, str]]:
    """The cleaned values of every declared variable (typed; None for an optional one left blank) and the errors
    by field name (gettext msgids). Unknown names, missing required values and values of the wrong type are errors."""
    specs = declaration(kind, template_dir=template_dir)
    declared = {spec.name for spec in specs}
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {name: UNKNOWN for name in values if name not in declared}
    for spec in specs:
        raw = values.get(spec.name)
        if _blank(raw):
            raw = spec.default
        if _blank(raw):
            clean[spec.name] = None
            if spec.required:
                errors[spec.name] = REQUIRED
            continue
        try:
            clean[spec.name] = _clean(spec, raw)
        except _Rejected as rejected:
            clean[spec.name] = None
            errors[spec.name] = rejected.message
    for spec in specs:
        earlier = clean.get(spec.not_before) if spec.not_before else None
        if earlier is not None and clean[spec.name] is not None and clean[spec.name] < earlier:
            errors[spec.name] = TOO_EARLY
    return clean, errors


def variables_json(values: Mapping[str, object]) -> bytes:
    """The filled variables as the JSON embedded in the PDF: sorted keys, dates as ISO, decimals as strings."""

    def encode(value: object) -> object:
        if isinstance(value, date | datetime):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(f"Cannot put a {type(value).__name__} in variables.json")

    return json.dumps(dict(values), default=encode, ensure_ascii=False, sort_keys=True, indent=2).encode()


# Checking declarations against templates.


def check_declarations(template_dir: Path = TEMPLATE_DIR) -> list[str]:
    """What disagrees between each kind's declaration and its two documents (with the templates they extend): names
    a document uses that are neither declared nor system names, names declared that a document never uses, and
    malformed or missing files. Empty when all is well; run at start-up and in the tests."""
    problems: list[str] = []
    for kind in KINDS:
        try:
            specs = declaration(kind, template_dir=template_dir)
        except (OSError, ValueError, tomllib.TOMLDecodeError) as error:
            problems.append(f"{kind}.toml: {error}")
            continue
        declared = {spec.name for spec in specs}
        problems += [f"{kind}.toml declares `{name}`, a name the service provides" for name in declared & SYSTEM_NAMES]
        for language in LANGUAGES:
            document = _document_name(kind, language)
            try:
                used = _used_names(template_dir, document)
            except (TemplateNotFound, TemplateSyntaxError, ValueError) as error:
                problems.append(f"{document}: {type(error).__name__}: {error}")
                continue
            problems += [
                f"{document} uses `{name}`, which {kind}.toml does not declare"
                for name in sorted(used - declared - SYSTEM_NAMES)
            ]
            problems += [
                f"{kind}.toml declares `{name}`, which {document} does not use" for name in sorted(declared - used)
            ]
    return problems


# Rendering.


def render_html(
    kind: str,
    language: str,
    *,
    context: Mapping[str, Any],
    template_dir: Path = TEMPLATE_DIR,
    timeout_seconds: float | None = None,
) -> str:
    """The document's HTML for `context`, rendered in a render worker within the time limit.

    Raises MissingVariable (422, naming the field) when the context lacks a value the document uses."""
    _check_kind(kind, language)
    return pdf.run_isolated(_html_here, kind, language, dict(context), template_dir, timeout_seconds=timeout_seconds)


def render_pdf(
    kind: str,
    language: str,
    *,
    context: Mapping[str, Any],
    variables_json: bytes,
    template_dir: Path = TEMPLATE_DIR,
    timeout_seconds: float | None = None,
) -> bytes:
    """The document as PDF/A-3b with `variables_json` attached as variables.json; template and layout together
    run in one render worker within one time limit (raises RenderTimeout past it)."""
    _check_kind(kind, language)
    return pdf.run_isolated(
        _pdf_here, kind, language, dict(context), variables_json, template_dir, timeout_seconds=timeout_seconds
    )


def qr_data_uri(url: str) -> str:
    """A QR code of `url` as an SVG `data:` URI, for the footer of every page."""
    return segno.make(url, error="m").svg_data_uri(border=0, dark="#000")


def coat_of_arms_url() -> str:
    """The municipality's coat of arms for the page header: the configured file as a `data:` URI (the PDF renderer
    loads nothing outside templates/), or the placeholder below templates/."""
    path = settings.municipality_coat_of_arms
    if path is None:
        return PLACEHOLDER_COAT_OF_ARMS
    media_type = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        path.suffix.lower()
    )
    if media_type is None:
        raise ValueError(f"The coat of arms {path} must be an SVG, PNG or JPEG file")
    return f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def municipality_context(language: str) -> dict[str, Any]:
    """The `municipality` entry of the system context, from the settings, in `language`."""
    english = language == "en"
    return {
        "name": settings.municipality_name_en if english else settings.municipality_name,
        "eik": settings.municipality_eik,
        "address": settings.municipality_address_en if english else settings.municipality_address,
        "representative": settings.municipality_representative_en if english else settings.municipality_representative,
        "representative_title": (
            settings.municipality_representative_title_en if english else settings.municipality_representative_title
        ),
        "coat_of_arms_url": coat_of_arms_url(),
    }


def format_long_date(value: date | datetime | None, language: str) -> str:
    """`31.12.2027 г.` in Bulgarian, `31 December 2027` in English: how a date reads in a memorandum."""
    if value is None:
        return ""
    if language == "bg":
        return format_date(value, "bg")
    if isinstance(value, datetime):
        value = value.date()
    return babel_dates.format_date(value, "d MMMM yyyy", locale="en_GB")


def format_money(value: Decimal | int | None, language: str) -> str:
    """`1 250,00 €` in Bulgarian, `€1,250.00` in English (Bulgaria's currency is the euro since 2026)."""
    if value is None:
        return ""
    return babel_numbers.format_currency(value, "EUR", locale=babel_locale(language))


# What runs inside the render worker.


def _html_here(kind: str, language: str, context: dict[str, Any], template_dir: Path) -> str:
    memorandum = context.get("memorandum")
    if isinstance(memorandum, dict) and memorandum.get("verify_url") and not memorandum.get("qr_svg_data_uri"):
        # Drawn here, in the render worker: segno is pure Python, and in the web process it held the GIL.
        context = {**context, "memorandum": {**memorandum, "qr_svg_data_uri": qr_data_uri(memorandum["verify_url"])}}
    environment = _environment(template_dir)
    name = _document_name(kind, language)
    missing = sorted(_used_names(template_dir, name) - context.keys())
    if missing:
        raise MissingVariable(
            N_("The document needs “{name}”, which was not given."), field=missing[0], name=missing[0]
        )
    try:
        return environment.get_template(name).render(context)
    except UndefinedError as error:
        where = _undefined_name(str(error))
        raise MissingVariable(
            N_("The document needs “{name}”, which was not given."), field=where, name=where
        ) from None


def _pdf_here(kind: str, language: str, context: dict[str, Any], variables: bytes, template_dir: Path) -> bytes:
    html = _html_here(kind, language, context, template_dir)
    attachment = pdf.Attachment(
        filename="variables.json",
        content=variables,
        description="The variables this memorandum was filled with",
        media_type="application/json",
        relationship="Data",
    )
    return pdf.html_to_pdf(html, attachments=[attachment])


# Helpers.


class _Rejected(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


@cache
def _environment(template_dir: Path) -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(template_dir),
        undefined=StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        date=_date_filter,
        money=_money_filter,
        number=_number_filter,
        lines=_lines,
        paragraphs=_paragraphs,
    )
    return environment


@jinja_pass_context
def _date_filter(context: Context, value: date | datetime | None) -> str:
    # A date not yet known (a draft's date of issue) is a dotted blank, as on a printed form.
    return BLANK_DATE if value is None else format_long_date(value, context.get("language", "bg"))


@jinja_pass_context
def _money_filter(context: Context, value: Decimal | int | None) -> str:
    return format_money(value, context.get("language", "bg"))


@jinja_pass_context
def _number_filter(context: Context, value: Decimal | int | None) -> str:
    if value is None:
        return ""
    return babel_numbers.format_decimal(value, locale=babel_locale(context.get("language", "bg")))


def _lines(value: str | None) -> list[str]:
    """The non-blank lines of a multiline value, for a list in the document."""
    return [line.strip() for line in (value or "").splitlines() if line.strip()]


def _paragraphs(value: str | None) -> Markup:
    """A multiline value with its line breaks kept (each line escaped)."""
    return Markup("<br>").join(escape(line) for line in _lines(value))


def _check_kind(kind: str, language: str | None = None) -> None:
    if kind not in KINDS:
        raise UnknownTemplate(N_("There is no memorandum template “{kind}”."), field="template", kind=kind)
    if language is not None and language not in LANGUAGES:
        raise UnknownTemplate(N_("Memoranda are written in Bulgarian or English."), field="language")


def _document_name(kind: str, language: str) -> str:
    _check_kind(kind, language)
    return f"{kind}.{language}.html"


def _document_path(kind: str, language: str, template_dir: Path) -> Path:
    return template_dir / _document_name(kind, language)


@dataclass(frozen=True)
class _Analysis:
    referenced: tuple[str, ...]  # the templates it extends, includes or imports
    reads: frozenset[str]  # the context names it reads (jinja2.meta's "undeclared variables")
    assigns: frozenset[str]  # the names it sets itself


def _referenced_templates(kind: str, language: str, template_dir: Path) -> list[str]:
    return [name for name, _analysis in _template_chain(template_dir, _document_name(kind, language))[1:]]


def _template_chain(template_dir: Path, name: str) -> list[tuple[str, _Analysis]]:
    """`name` and every template it extends, includes or imports, in order of discovery, each with its analysis."""
    environment = _environment(template_dir)
    chain: list[tuple[str, _Analysis]] = []
    pending = [name]
    while pending:
        current = pending.pop(0)
        if any(current == seen for seen, _analysis in chain):
            continue
        source, _filename, _uptodate = environment.loader.get_source(environment, current)
        analysis = _analyse(template_dir, current, source)
        chain.append((current, analysis))
        pending += analysis.referenced
    return chain


@lru_cache(maxsize=256)
def _analyse(template_dir: Path, name: str, source: str) -> _Analysis:
    # Remembered by source: parsing and analysing a document and its base costs ~20 ms, 5 % of a whole render.
    ast = _environment(template_dir).parse(source, name)
    referenced = tuple(meta.find_referenced_templates(ast))
    if None in referenced:
        raise ValueError(f"{name} names a template by an expression; name it literally")
    assigns: set[str] = set()
    for node in ast.find_all((nodes.Assign, nodes.AssignBlock)):
        target = node.target
        assigns |= {target.name} if isinstance(target, nodes.Name) else {n.name for n in target.find_all(nodes.Name)}
    return _Analysis(referenced, frozenset(meta.find_undeclared_variables(ast)), frozenset(assigns))


def _used_names(template_dir: Path, name: str) -> set[str]:
    """The context names a document reads, from it and the templates it extends, less those they assign themselves
    (a top-level `{% set %}` in the base is read by blocks, which jinja2.meta counts as undeclared)."""
    chain = _template_chain(template_dir, name)
    reads = set().union(*(analysis.reads for _name, analysis in chain))
    return reads - set().union(*(analysis.assigns for _name, analysis in chain))


def _undefined_name(message: str) -> str:
    """The variable or attribute a Jinja2 UndefinedError names (`'x' is undefined`, `... has no attribute 'x'`)."""
    found = re.search(r"'([^']+)' is undefined", message) or re.search(r"has no attribute '([^']+)'", message)
    return found.group(1) if found else message


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _spec(filename: str, entry: dict) -> VariableSpec:
    where = f"{filename}: variable `{entry.get('name', '?')}`"
    unknown = set(entry) - SPEC_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("name", "type", "label_bg", "label_en"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ValueError(f"{where}: `{key}` is required")
    if not NAME_PATTERN.match(entry["name"]):
        raise ValueError(f"{where}: a name is lower-case letters, digits and underscores")
    if entry["type"] not in VARIABLE_TYPES:
        raise ValueError(f"{where}: type must be one of {', '.join(VARIABLE_TYPES)}")
    if not isinstance(entry.get("required"), bool):
        raise ValueError(f"{where}: `required` must be true or false")
    options = tuple(
        Choice(str(option["value"]), option["label_bg"], option["label_en"]) for option in entry.get("options", [])
    )
    if entry["type"] == "choice" and not options:
        raise ValueError(f"{where}: a choice needs options (value, label_bg, label_en)")
    spec = VariableSpec(
        name=entry["name"],
        type=entry["type"],
        required=entry["required"],
        label_bg=entry["label_bg"],
        label_en=entry["label_en"],
        help_bg=entry.get("help_bg", ""),
        help_en=entry.get("help_en", ""),
        options=options,
        minimum=Decimal(str(entry["min"])) if "min" in entry else None,
        maximum=Decimal(str(entry["max"])) if "max" in entry else None,
        max_length=entry.get("max_length"),
        pattern=entry.get("pattern"),
        not_before=entry.get("not_before"),
    )
    if "default" in entry:
        try:
            default = _clean(spec, entry["default"])
        except _Rejected as rejected:
            raise ValueError(f"{where}: the default is invalid: {rejected.message}") from None
        spec = replace(spec, default=default)
    return spec


def _clean(spec: VariableSpec, raw: object) -> Any:
    """`raw` as the spec's type, or _Rejected with the message for the form."""
    cleaner = {
        "text": _clean_text,
        "multiline": _clean_text,
        "date": _clean_date,
        "integer": _clean_integer,
        "decimal": _clean_decimal,
        "email": _clean_email,
        "choice": _clean_choice,
    }[spec.type]
    value = cleaner(spec, raw)
    if spec.type in ("integer", "decimal"):
        if spec.minimum is not None and value < spec.minimum:
            raise _Rejected(TOO_SMALL)
        if spec.maximum is not None and value > spec.maximum:
            raise _Rejected(TOO_LARGE)
    return value


def _clean_text(spec: VariableSpec, raw: object) -> str:
    if not isinstance(raw, str):
        raise _Rejected(NOT_TEXT)
    value = raw.strip()
    if spec.type == "multiline":
        value = "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n"))
    elif "\n" in value or "\r" in value:
        raise _Rejected(ONE_LINE)
    limit = spec.max_length or (MULTILINE_MAX_LENGTH if spec.type == "multiline" else TEXT_MAX_LENGTH)
    if len(value) > limit:
        raise _Rejected(TOO_LONG)
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        raise _Rejected(BAD_FORMAT)
    return value


def _clean_date(spec: VariableSpec, raw: object) -> date:
    if isinstance(raw, datetime):
        raise _Rejected(NOT_DATE)  # a moment is not a calendar date: which zone's day would it be?
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str):
        text = raw.strip().removesuffix("г.").strip()
        for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
            try:
                return datetime.strptime(text, pattern).date()
            except ValueError:
                continue
    raise _Rejected(NOT_DATE)


def _clean_integer(spec: VariableSpec, raw: object) -> int:
    if isinstance(raw, bool):
        raise _Rejected(NOT_INTEGER)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[+-]?\d{1,15}", raw.strip().replace(" ", "")):
        return int(raw.strip().replace(" ", ""))
    raise _Rejected(NOT_INTEGER)


def _clean_decimal(spec: VariableSpec, raw: object) -> Decimal:
    if isinstance(raw, bool):
        raise _Rejected(NOT_DECIMAL)
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int | float):
        value = Decimal(str(raw))
    elif isinstance(raw, str) and re.fullmatch(r"[+-]?\d{1,15}([.,]\d{1,6})?", raw.strip().replace(" ", "")):
        value = Decimal(raw.strip().replace(" ", "").replace(",", "."))
    else:
        raise _Rejected(NOT_DECIMAL)
    try:
        if not value.is_finite():
            raise _Rejected(NOT_DECIMAL)
    except InvalidOperation:
        raise _Rejected(NOT_DECIMAL) from None
    return value


def _clean_email(spec: VariableSpec, raw: object) -> str:
    if not isinstance(raw, str):
        raise _Rejected(NOT_EMAIL)
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise _Rejected(NOT_EMAIL) from None


def _clean_choice(spec: VariableSpec, raw: object) -> str:
    value = raw.strip() if isinstance(raw, str) else raw
    if value not in {option.value for option in spec.options}:
        raise _Rejected(NOT_OPTION)
    return value


# Sample data: realistic, invented (the registration numbers only have valid check digits). For the tests, the demo
# data and the benchmark.

SAMPLE_CODE = "K7Q2M4XHNRBT3WZP"

_ORGANISATIONS = {
    "water": {
        "name": "„Минерална вода Струма“ ЕООД",
        "registration_number": "113003225",
        "address": "Промишлена зона, гр. Примерно",
        "representative_name": "Николай Георгиев",
        "representative_title": {"bg": "управител", "en": "Manager"},
        "email": "manager@struma-water.example",
    },
    "transport": {
        "name": "„Транс Логистик Примерно“ ООД",
        "registration_number": "175041154",
        "address": "ул. „Индустриална“ 45, гр. Примерно",
        "representative_name": "Васил Тодоров",
        "representative_title": {"bg": "управител", "en": "Managing Director"},
        "email": "ops@translogistic.example",
    },
    "red_cross": {
        "name": "Български червен кръст – Областен съвет Примерно",
        "registration_number": "203987129",
        "address": "бул. „Христо Ботев“ 3, гр. Примерно",
        "representative_name": "Десислава Маринова",
        "representative_title": {"bg": "секретар на областния съвет", "en": "Secretary of the Regional Council"},
        "email": "sekretar@redcross-primerno.example",
    },
    "volunteers": {
        "name": "Сдружение „Доброволци за Примерно“",
        "registration_number": "201004516",
        "address": "ул. „Възраждане“ 12, гр. Примерно",
        "representative_name": "Иван Стоянов",
        "representative_title": {"bg": "председател на управителния съвет", "en": "Chair of the Board"},
        "email": "office@dobrovolci-primerno.example",
    },
    "radio": {
        "name": "Радио „Примерно FM“ ЕООД",
        "registration_number": "202123459",
        "address": "ул. „Радомир“ 20, гр. Примерно",
        "representative_name": "Калина Янева",
        "representative_title": {"bg": "управител и главен редактор", "en": "Manager and Editor-in-Chief"},
        "email": "news@primerno-fm.example",
    },
    "fact_checkers": {
        "name": "Фондация „Факти и медийна грамотност“",
        "registration_number": "206112346",
        "address": "ул. „Шипка“ 34, ет. 2, гр. София",
        "representative_name": "Анна Костова",
        "representative_title": {"bg": "изпълнителен директор", "en": "Executive Director"},
        "email": "proverka@fakti-gramotnost.example",
    },
    "chitalishte": {
        "name": "Народно читалище „Просвета – 1905“",
        "registration_number": "204801339",
        "address": "пл. „Кракра“ 1, гр. Примерно",
        "representative_name": "Радка Илиева",
        "representative_title": {"bg": "председател на настоятелството", "en": "Chair of the Board of Trustees"},
        "email": "prosveta1905@chitalishte.example",
    },
}

_SAMPLE_PARTIES = {
    "logistics_support": ("water", "transport"),
    "fundraising_campaign": ("red_cross", "volunteers"),
    "public_awareness": ("radio", "chitalishte"),
    "countering_disinformation": ("fact_checkers", "radio"),
    "public_consultation": ("chitalishte",),
}

_SAMPLE_TITLES = {
    "logistics_support": {
        "bg": "Доставка на вода и транспорт при бедствия – 2026 г.",
        "en": "Water supply and transport in disasters – 2026",
    },
    "fundraising_campaign": {
        "bg": "Дарителска кампания „Заедно след наводнението“",
        "en": "Donation campaign “Together after the flood”",
    },
    "public_awareness": {
        "bg": "Кампания „Готови при наводнение“",
        "en": "Campaign “Ready for floods”",
    },
    "countering_disinformation": {
        "bg": "Проверка на факти по време на кризи",
        "en": "Fact-checking during crises",
    },
    "public_consultation": {
        "bg": "Обществена консултация за наредбата за защита при бедствия",
        "en": "Public consultation on the disaster protection ordinance",
    },
}

_COMMON_SAMPLE = {
    "bg": {
        "place_of_signing": "гр. Примерно",
        "municipality_contact": "Георги Иванов, секретар на общинския кризисен щаб, тел. 076 600 100",
        "termination_notice_days": 30,
    },
    "en": {
        "place_of_signing": "Primerno",
        "municipality_contact": "Georgi Ivanov, Secretary of the Municipal Crisis Staff, tel. +359 76 600 100",
        "termination_notice_days": 30,
    },
}

_SAMPLE_VARIABLES: dict[str, dict[str, dict[str, Any]]] = {
    "logistics_support": {
        "bg": {
            "goods_and_services": "Бутилирана минерална вода – до 20 000 л на денонощие\n"
            "Превоз на хуманитарни товари с товарни автомобили\nВременно съхранение на дарения в склад",
            "delivery_points": "Пункт за временно настаняване – СУ „Христо Ботев“, ул. „Граничар“ 2, гр. Примерно\n"
            "Кметство с. Долно село, ул. „Първа“ 1\nСклад на Общината, ул. „Индустриална“ 7, гр. Примерно",
            "response_hours": 6,
            "storage_facilities": "Склад 2 000 м², ул. „Индустриална“ 45, гр. Примерно – сух склад и хладилна камера",
            "transport_capacity": "12 товарни автомобила, от които 4 с ремаркета, и 2 бордови автомобила до 3,5 т",
            "cost_arrangement": "fuel_reimbursed",
        },
        "en": {
            "goods_and_services": "Bottled mineral water – up to 20,000 l a day\n"
            "Carriage of humanitarian cargo by lorry\nTemporary storage of donations in a warehouse",
            "delivery_points": "Temporary shelter – Hristo Botev School, 2 Granichar St, Primerno\n"
            "Dolno Selo village hall, 1 Parva St\nMunicipal warehouse, 7 Industrialna St, Primerno",
            "response_hours": 6,
            "storage_facilities": "Warehouse of 2,000 m², 45 Industrialna St, Primerno – dry store and cold room",
            "transport_capacity": "12 lorries, 4 of them with trailers, and 2 flatbed vans up to 3.5 t",
            "cost_arrangement": "fuel_reimbursed",
        },
    },
    "fundraising_campaign": {
        "bg": {
            "campaign_purpose": "Ремонт на домовете на семействата, пострадали от наводнението в с. Долно село\n"
            "Закупуване на отоплителни уреди за пострадалите възрастни хора",
            "target_amount": Decimal("50000.00"),
            "campaign_start": date(2026, 3, 20),
            "campaign_end": date(2026, 6, 30),
            "account_holder": "Български червен кръст – Областен съвет Примерно",
            "bank_name": "„Първа примерна банка“ АД",
            "iban": "BG80 BNBG 9661 1020 3456 78",
            "bic": "BNBGBGSD",
            "payment_reference": "Дарение – наводнение Примерно",
            "reporting_frequency": "monthly",
            "report_url": "www.primerno.bg/darenia",
            "donor_names_published": "with_consent",
        },
        "en": {
            "campaign_purpose": "Repairing the homes of families affected by the flood in Dolno Selo\n"
            "Buying heaters for affected older people",
            "target_amount": Decimal("50000.00"),
            "campaign_start": date(2026, 3, 20),
            "campaign_end": date(2026, 6, 30),
            "account_holder": "Bulgarian Red Cross – Primerno Regional Council",
            "bank_name": "First Example Bank AD",
            "iban": "BG80 BNBG 9661 1020 3456 78",
            "bic": "BNBGBGSD",
            "payment_reference": "Donation – Primerno flood",
            "reporting_frequency": "monthly",
            "report_url": "www.primerno.bg/donations",
            "donor_names_published": "with_consent",
        },
    },
    "public_awareness": {
        "bg": {
            "campaign_topic": "Готови при наводнение: сигнали, евакуация, раница за бедствия",
            "target_groups": "Жители на заливаемите квартали „Изток“ и „Река“\nВъзрастни хора, живеещи сами\n"
            "Родители на ученици",
            "key_messages": "При сигнал за евакуация тръгнете веднага и следвайте указанията на щаба.\n"
            "Пригответе раница за бедствия: вода, храна за 3 дни, лекарства, документи, фенерче.\n"
            "Не преминавайте през залети пътища – 30 см вода могат да отнесат автомобил.\n"
            "Официалната информация е само от общинския кризисен щаб и телефон 112.",
            "channels": "Ефирни съобщения по Радио „Примерно FM“ в 7:30 и 17:30 ч.\n"
            "Информационни срещи в читалище „Просвета – 1905“\nСтраниците на страните в социалните мрежи",
            "materials": "Листовка „Какво да направим при наводнение“ – 5 000 бр. (Общината)\n"
            "Радиоклип, 30 секунди (Радио „Примерно FM“)",
            "campaign_start": date(2026, 4, 1),
            "campaign_end": date(2026, 10, 31),
            "approval_hours": 24,
            "urgent_relay_minutes": 30,
        },
        "en": {
            "campaign_topic": "Ready for floods: warnings, evacuation, emergency kit",
            "target_groups": "Residents of the flood-prone Iztok and Reka districts\nOlder people living alone\n"
            "Parents of schoolchildren",
            "key_messages": "When told to evacuate, leave at once and follow the crisis staff's instructions.\n"
            "Prepare an emergency kit: water, food for 3 days, medicines, documents, a torch.\n"
            "Do not drive through flooded roads – 30 cm of water can sweep a car away.\n"
            "Official information comes only from the municipal crisis staff and the 112 number.",
            "channels": "On-air announcements on Radio Primerno FM at 7:30 and 17:30\n"
            "Information meetings at the Prosveta 1905 community centre\nThe parties' social media pages",
            "materials": "Leaflet “What to do in a flood” – 5,000 copies (the Municipality)\n"
            "Radio spot, 30 seconds (Radio Primerno FM)",
            "campaign_start": date(2026, 4, 1),
            "campaign_end": date(2026, 10, 31),
            "approval_hours": 24,
            "urgent_relay_minutes": 30,
        },
    },
    "countering_disinformation": {
        "bg": {
            "monitored_topics": "Качество на питейната вода след наводнението\nЕвакуация и временно настаняване\n"
            "Помощи и дарения за пострадалите",
            "monitored_channels": "Публични групи и страници във Facebook за гр. Примерно\n"
            "Публични канали в Telegram и Viber със съобщения за общината\nМестни новинарски сайтове",
            "response_hours": 24,
            "methodology": "efcsn",
            "reporting_frequency": "monthly",
            "publication_url": "www.fakti-gramotnost.bg/primerno",
        },
        "en": {
            "monitored_topics": "Drinking water quality after the flood\nEvacuation and temporary shelter\n"
            "Aid and donations for those affected",
            "monitored_channels": "Public Facebook groups and pages about Primerno\n"
            "Public Telegram and Viber channels with news about the municipality\nLocal news websites",
            "response_hours": 24,
            "methodology": "efcsn",
            "reporting_frequency": "monthly",
            "publication_url": "www.fakti-gramotnost.bg/primerno",
        },
    },
    "public_consultation": {
        "bg": {
            "consultation_subject": "Проект на Наредба за изменение и допълнение на Наредбата за защита при "
            "бедствия на територията на Община Примерно: ред за ползване на общински сгради като пунктове за "
            "временно настаняване и задължения на собствениците на имоти в заливаемите зони",
            "draft_act_title": "Наредба за изменение и допълнение на Наредбата за защита при бедствия на "
            "територията на Община Примерно",
            "consultation_start": date(2026, 4, 1),
            "consultation_end": date(2026, 5, 4),
            "channels": "По електронна поща на konsultacii@primerno.bg\n"
            "Писмено в Центъра за услуги и информация на Общината, пл. „Свобода“ 1\n"
            "Устно или писмено в читалище „Просвета – 1905“, всеки делник от 10:00 до 17:00 ч.",
            "public_meeting": "14.04.2026 г., 18:00 ч., голямата зала на читалище „Просвета – 1905“",
            "summary_days": 14,
        },
        "en": {
            "consultation_subject": "Draft ordinance amending the Primerno Municipality Disaster Protection "
            "Ordinance: the use of municipal buildings as temporary shelters, and the duties of property owners in "
            "flood zones",
            "draft_act_title": "Ordinance amending the Primerno Municipality Disaster Protection Ordinance",
            "consultation_start": date(2026, 4, 1),
            "consultation_end": date(2026, 5, 4),
            "channels": "By e-mail to konsultacii@primerno.bg\n"
            "In writing at the Municipality's service centre, 1 Svoboda Square\n"
            "In person or in writing at the Prosveta 1905 community centre, weekdays 10:00–17:00",
            "public_meeting": "14 April 2026, 18:00, main hall of the Prosveta 1905 community centre",
            "summary_days": 14,
        },
    },
}


def sample_variables(kind: str, language: str) -> dict[str, Any]:
    """Realistic values of every variable `kind` declares, in `language`, as `validate_variables` returns them."""
    _check_kind(kind, language)
    return {**_COMMON_SAMPLE[language], **_SAMPLE_VARIABLES[kind][language]}


def sample_context(kind: str, language: str, *, draft: bool = False) -> dict[str, Any]:
    """A complete context for `kind` in `language`: the system context with sample parties, and sample variables."""
    verify_url = f"{settings.base_url.rstrip('/')}/verify/{SAMPLE_CODE}"
    memorandum = {
        "code": SAMPLE_CODE,
        "verify_url": verify_url,
        "qr_svg_data_uri": qr_data_uri(verify_url),
        "issued_on": None if draft else date(2026, 3, 2),
        "valid_from": date(2026, 3, 16),
        "valid_until": date(2027, 12, 31),
        "signing_deadline": date(2026, 3, 16),
        "draft": draft,
        "title": _SAMPLE_TITLES[kind][language],
    }
    parties = [
        {**_ORGANISATIONS[key], "representative_title": _ORGANISATIONS[key]["representative_title"][language]}
        for key in _SAMPLE_PARTIES[kind]
    ]
    return {
        "memorandum": memorandum,
        "municipality": municipality_context(language),
        "parties": parties,
        "language": language,
        **sample_variables(kind, language),
    }
