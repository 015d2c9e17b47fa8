"""Business errors: each carries its HTTP status and a message a person can act on."""

from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class Label(str):
    """A message parameter that is itself a msgid (a unit's name, say): translated with the message."""


class DomainError(Exception):
    """A refusal by the rules; `message` may be a gettext msgid, formatted with `params`."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, **params: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.params = params

    def text(self, gettext: Any = None) -> str:
        """The message in the reader's language (its `Label` parameters translated too)."""
        translate = gettext or (lambda text: text)
        params = {k: translate(v) if isinstance(v, Label) else v for k, v in self.params.items()}
        template = translate(self.message)
        return template.format(**params) if params else template


class NotFound(DomainError):
    status_code = 404


class Forbidden(DomainError):
    status_code = 403


class NotAuthenticated(DomainError):
    status_code = 401


class Conflict(DomainError):
    status_code = 409


class TooManyAttempts(DomainError):
    status_code = 429

    def __init__(self, message: str, *, retry_after: int, **params: Any) -> None:
        super().__init__(message, **params)
        self.retry_after = retry_after


class Invalid(DomainError):
    """Input that passed parsing but not the rules; `field` names where it belongs."""

    status_code = 422


class InvalidFields(Invalid):
    """Several fields wrong at once: `fields` maps each field's path (`variables.start_date`) to its message."""

    def __init__(self, fields: dict[str, str], **params: Any) -> None:
        super().__init__(next(iter(fields.values())), field=next(iter(fields)), **params)
        self.fields = fields

    def texts(self, gettext: Any = None) -> dict[str, str]:
        translate = gettext or (lambda text: text)
        return {name: translate(message) for name, message in self.fields.items()}


def domain_error_json(request: Request, exc: DomainError) -> JSONResponse:
    """Renders a DomainError for the API: `{"detail": ...}`, field-level like FastAPI's on 422."""
    from service.i18n import gettext_for

    message = exc.text(gettext_for(request))
    body: dict[str, Any] = {"detail": message}
    if isinstance(exc, InvalidFields):
        body["detail"] = [
            {"loc": ["body", *name.split(".")], "msg": text, "type": "value_error"}
            for name, text in exc.texts(gettext_for(request)).items()
        ]
    elif exc.field:
        body["detail"] = [{"loc": ["body", exc.field], "msg": message, "type": "value_error"}]
    extra = getattr(exc, "extra", None)
    if extra:
        body.update(extra)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
    if isinstance(exc, NotAuthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every API error's body: a message, or on 422 a message per field (some errors add a key, as `remaining`)."""

    detail: str | list[FieldError]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring these error statuses with the body they answer."""
    return {code: {"model": ErrorBody, "description": HTTPStatus(code).phrase} for code in codes}


# What a route behind a login may answer besides its success: a body that is not JSON, no or a dead token, a
# role or organisation that may not, no such object, a state that does not allow it, a body over the size
# limit, invalid input.
API_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422)
