"""Translations (gettext catalogues read with babel) and the locale's formats for dates and numbers."""

import io
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import Request

from service.config import settings

LANGUAGES = ("bg", "en")
LANGUAGE_COOKIE = "accord_lang"
LOCALE_DIR = Path(__file__).parent / "locale"


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown."""
    return message


@cache
def translations(language: str) -> NullTranslations:
    """The catalogue for `language`, compiled in memory from its .po file (English is the source)."""
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if language == "en" or not po_path.exists():
        return NullTranslations()
    with po_path.open("rb") as po:
        catalog = read_po(po, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def normalise_language(value: str | None) -> str | None:
    """`value` if it names a supported language, else None."""
    if not value:
        return None
    value = value.strip().lower()[:2]
    return value if value in LANGUAGES else None


def language_of(request: Request) -> str:
    """The reader's language: the remembered choice, then the API client's Accept-Language, then the default."""
    chosen = normalise_language(request.cookies.get(LANGUAGE_COOKIE))
    if chosen:
        return chosen
    if request.url.path.startswith("/api/"):
        accept = request.headers.get("accept-language", "")
        for part in accept.split(","):
            found = normalise_language(part.split(";")[0])
            if found:
                return found
    return settings.default_language


def gettext_for(request: Request) -> Callable[[str], str]:
    """The gettext function in the reader's language."""
    return translations(language_of(request)).gettext


def gettext_in(language: str) -> Callable[[str], str]:
    """The gettext function for `language` (for e-mails and jobs, which have no request)."""
    return translations(normalise_language(language) or settings.default_language).gettext


def _local(value: datetime) -> datetime:
    return value.astimezone(ZoneInfo(settings.timezone))


def format_datetime(value: datetime | None, language: str) -> str:
    """`25.11.2026 г., 14:30 ч.` in Bulgarian, `25 Nov 2026, 14:30` in English, in local time."""
    if value is None:
        return ""
    local = _local(value)
    if language == "bg":
        return f"{local:%d.%m.%Y} г., {local:%H:%M} ч."
    return babel_dates.format_datetime(local, "d MMM yyyy, HH:mm", locale="en_GB")


def format_date(value: date | datetime | None, language: str) -> str:
    """`25.11.2026 г.` in Bulgarian, `25 Nov 2026` in English."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = _local(value).date()
    if language == "bg":
        return f"{value:%d.%m.%Y} г."
    return babel_dates.format_date(value, "d MMM yyyy", locale="en_GB")


def format_number(value: float | int | None, language: str) -> str:
    """`1 250,5` in Bulgarian, `1,250.5` in English."""
    if value is None:
        return ""
    return babel_numbers.format_decimal(value, locale="bg_BG" if language == "bg" else "en_GB")
