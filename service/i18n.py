"""Translations (gettext catalogues read with babel) and the locale's formats for dates and numbers."""

import io
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
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


# The languages by name, as forms offer them.
LANGUAGE_LABELS = {"bg": N_("Bulgarian"), "en": N_("English")}


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


@cache
def babel_locale(language: str) -> Locale:
    """The babel locale of `language`, parsed once (a string costs a parse on every call; pages format thousands)."""
    return Locale.parse("bg_BG" if language == "bg" else "en_GB")


def format_number(value: float | int | None, language: str) -> str:
    """`1 250,5` in Bulgarian, `1,250.5` in English."""
    if value is None:
        return ""
    return _formatted_number(value, language)


@lru_cache(maxsize=4096)
def _formatted_number(value: float | int, language: str) -> str:
    # Remembered: babel takes ~10 µs a number, and a coverage board shows thousands, mostly the same few.
    return babel_numbers.format_decimal(value, locale=babel_locale(language))


def parse_local_datetime(value: str) -> datetime | None:
    """A form's `datetime-local` value (`2026-11-25T14:30`), read in the configured time zone, as aware UTC.

    Blank is None; anything else that is not a date and time raises ValueError. A time that the clock skips
    when summer time starts is read with the winter offset; one it repeats in autumn, as its first (summer)
    occurrence. A value that carries its own offset keeps it.
    """
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(settings.timezone))
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as error:  # OverflowError: year 1 or 9999 shifted out of range
        raise ValueError(f"Not a date and time: {value!r}") from error


def local_input_value(value: datetime | None) -> str:
    """An aware datetime as a `datetime-local` input's value in the configured time zone (to the minute)."""
    return "" if value is None else f"{_local(value):%Y-%m-%dT%H:%M}"
