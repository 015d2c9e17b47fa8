"""The pages' Jinja2 environment, the render helper, and turning bad form input into messages per field."""

import json
import re
from typing import Annotated, Any
from urllib.parse import quote

from babel.numbers import NumberFormatError, parse_decimal
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from service.config import PROJECT_ROOT, settings
from service.i18n import (
    N_,
    babel_locale,
    format_date,
    format_datetime,
    format_number,
    gettext_for,
    language_of,
    parse_local_datetime,
    translations,
)

TEMPLATES_DIR = PROJECT_ROOT / "templates"
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, trim_blocks=True, lstrip_blocks=True)
)
# Readable JSON (Cyrillic as itself, not \\u escapes); autoescaping still applies to the result.
templates.env.filters["pretty_json"] = lambda value: json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True)

_MESSAGES_BY_TYPE = {
    "missing": N_("This field is required."),
    "string_too_short": N_("This field is required."),
    "string_too_long": N_("At most {max_length} characters."),
    "too_long": N_("Too many values."),
    "enum": N_("Choose one of the options."),
    "literal_error": N_("Choose one of the options."),
    "string_pattern_mismatch": N_("This value has characters that do not belong here."),
    "url_parsing": N_("Enter a web address starting with http:// or https://."),
    "url_scheme": N_("Enter a web address starting with http:// or https://."),
    "url_too_long": N_("At most {max_length} characters."),
    "int_parsing": N_("Enter a whole number."),
    "bool_parsing": N_("Choose yes or no."),
    "extra_forbidden": N_("This field cannot be changed here."),
}
_MESSAGES_BY_FIELD = {
    "email": N_("Enter a valid e-mail address."),
    "password": N_("At least 10 characters."),
}


def field_errors(error: ValidationError, gettext: Any) -> dict[str, str]:
    """One message per field, in the reader's language, for a form shown again."""
    messages: dict[str, str] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "__all__"
        if field in messages:
            continue
        ctx = item.get("ctx") or {}
        if item["type"] == "value_error" and field in _MESSAGES_BY_FIELD:
            message = gettext(_MESSAGES_BY_FIELD[field])
        elif item["type"] == "value_error" and "error" in ctx:
            message = gettext(str(ctx["error"]))
        elif item["type"] == "string_too_short" and field in _MESSAGES_BY_FIELD:
            message = gettext(_MESSAGES_BY_FIELD[field])
        else:
            message = gettext(_MESSAGES_BY_TYPE.get(item["type"], N_("This value is not valid.")))
        messages[field] = message.format(**ctx) if "{" in message else message
    return messages


def form_values(form: FormData, *, lists: tuple[str, ...] = (), booleans: tuple[str, ...] = ()) -> dict[str, Any]:
    """A form as a dict for a schema: blank optional text is absent, checkboxes are booleans."""
    values: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key == "csrf_token" or key in lists or key in booleans or not isinstance(value, str):
            continue
        if value.strip():
            values[key] = value
    for key in lists:
        values[key] = [v for v in form.getlist(key) if isinstance(v, str) and v]
    for key in booleans:
        values[key] = form.get(key) in ("on", "true", "1", "yes")
    return values


def parse_form(schema: type[BaseModel], values: dict[str, Any], gettext: Any) -> tuple[Any, dict[str, str]]:
    """The schema built from form values, or None and the messages per field."""
    try:
        return schema.model_validate(values), {}
    except ValidationError as error:
        return None, field_errors(error, gettext)


NOT_A_TIME = N_("Enter a date and time.")
NOT_A_NUMBER = N_("Enter a number, such as 12 or 12.5.")


async def read_form(request: Request) -> FormData:
    """The posted form, read in the event loop so that the route itself can run in the thread pool."""
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]


def parse_typed_form(
    schema: type[BaseModel],
    values: dict[str, Any],
    request: Request,
    *,
    times: tuple[str, ...] = (),
    quantities: tuple[str, ...] = (),
) -> tuple[Any, dict[str, str]]:
    """Like `parse_form`, reading quantities in the reader's number format (`1 250,5` in Bulgarian) and
    times as `datetime-local` in the configured time zone."""
    gettext = gettext_for(request)
    locale = babel_locale(language_of(request))
    data, errors = dict(values), {}
    for field in quantities:
        if isinstance(data.get(field), str):
            try:
                number = parse_decimal(re.sub(r"[\s\u00a0\u202f]", "", data[field]), locale=locale)
            except NumberFormatError:
                number = None
            if number is None or not number.is_finite():
                errors[field] = gettext(NOT_A_NUMBER)
                del data[field]
            else:
                data[field] = str(number)
    for field in times:
        if isinstance(data.get(field), str):
            try:
                data[field] = parse_local_datetime(data[field])
            except ValueError:
                errors[field] = gettext(NOT_A_TIME)
                del data[field]
    parsed, more = parse_form(schema, data, gettext)
    errors = {**more, **errors}
    return (None if errors else parsed), errors


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> HTMLResponse:
    """A page in the reader's language, with the user, the CSRF token and the formatting helpers."""
    language = language_of(request)
    gettext = translations(language).gettext
    base = {
        "_": gettext,
        "lang": language,
        "user": getattr(request.state, "user", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "settings": settings,
        "municipality": settings.municipality_name if language == "bg" else settings.municipality_name_en,
        "fmt_datetime": lambda value: format_datetime(value, language),
        "fmt_date": lambda value: format_date(value, language),
        "fmt_number": lambda value: format_number(value, language),
        "errors": {},
        "values": {},
    }
    return templates.TemplateResponse(request, name, {**base, **(context or {})}, status_code=status_code)


def csv_download(text: str, filename: str) -> Response:
    """A CSV file to save (UTF-8)."""
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def redirect(url: str) -> RedirectResponse:
    """After a successful form: see the result with GET (303)."""
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    """To the login page, coming back here afterwards (to a page, not to a form's POST address)."""
    if request.method != "GET":
        return RedirectResponse("/login", status_code=303)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def safe_next(value: str | None, default: str) -> str:
    """A local path to go on to after login; anything else (another site) becomes the default."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
