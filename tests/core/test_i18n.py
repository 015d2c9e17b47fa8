"""Translations and the locale's formats: every message has its Bulgarian, and pages follow the reader's language.

After adding or changing a message, refresh the template and merge it into the catalogue (from the project root):
    .venv/bin/pybabel extract -F service/locale/babel.cfg -k N_ -o service/locale/messages.pot service templates
    .venv/bin/pybabel update -i service/locale/messages.pot -d service/locale -l bg
then translate the new (and any fuzzy) entries in service/locale/bg/LC_MESSAGES/messages.po.
"""

import string
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.pofile import read_po

from service.i18n import LOCALE_DIR, format_date, format_datetime, format_number, gettext_in, translations
from tests.factories import make_user, page_login

PROJECT = Path(__file__).resolve().parents[2]
SOURCES = ("service", "templates")
EXTRACT = (
    "`.venv/bin/pybabel extract -F service/locale/babel.cfg -k N_ -o service/locale/messages.pot service templates`"
    " then `.venv/bin/pybabel update -i service/locale/messages.pot -d service/locale -l bg`"
)
NO_BREAK_SPACES = ("\u00a0", "\u202f")  # NO-BREAK SPACE, NARROW NO-BREAK SPACE


@cache
def extracted() -> dict[str, list[str]]:
    """Every msgid in service/ and templates/ with where it is used, found as the extract command finds them."""
    with (LOCALE_DIR / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, **parse_keywords(["N_"])}
    found: dict[str, list[str]] = {}
    for source in SOURCES:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            PROJECT / source, method_map, options_map, keywords=keywords
        ):
            msgid = message[0] if isinstance(message, tuple) else message
            found.setdefault(msgid, []).append(f"{source}/{filename}:{lineno}")
    return found


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale="bg" if path.suffix == ".po" else None)


def placeholders(text: str) -> set[str]:
    """The `{name}` fields str.format fills in `text`."""
    return {field for _literal, field, _spec, _conversion in string.Formatter().parse(text) if field is not None}


def test_extraction_finds_the_messages_of_python_and_templates():
    found = extracted()
    # One of each way a message is marked: N_ in Python, _ in Python, _ in a template.
    assert "Wrong e-mail or password." in found
    assert "Partners due for re-verification: {count}" in found
    assert "For municipal crisis staff and representatives of partner organisations." in found
    assert "Pending verification" in found  # a label dict, shown with `_(text)` in the templates
    assert len(found) > 100


def test_every_message_has_a_bulgarian_translation_with_the_same_placeholders():
    catalog = read_catalog(LOCALE_DIR / "bg" / "LC_MESSAGES" / "messages.po")
    missing, mismatched = [], []
    for msgid, where in sorted(extracted().items()):
        entry = catalog.get(msgid)
        # babel skips fuzzy entries when it compiles the catalogue, so they would show in English.
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(f"{msgid!r} ({', '.join(where)})")
        elif placeholders(entry.string) != placeholders(msgid):
            mismatched.append(f"{msgid!r} -> {entry.string!r}")
    assert not missing, (
        f"No Bulgarian translation (or only a fuzzy one) for {len(missing)} messages; run {EXTRACT} and translate:\n"
        + "\n".join(missing)
    )
    assert not mismatched, "The translation's {placeholders} differ from the msgid's:\n" + "\n".join(mismatched)


def test_the_running_app_reads_the_catalogue():
    catalog = read_catalog(LOCALE_DIR / "bg" / "LC_MESSAGES" / "messages.po")
    bg = translations("bg")
    wrong = [m.id for m in catalog if m.id and bg.gettext(m.id) != m.string]
    assert not wrong, f"translations('bg') does not give the .po's translation of: {wrong}"
    assert gettext_in("bg")("Log in") == "Вход"
    assert gettext_in("en")("Log in") == "Log in"
    assert gettext_in("xx")("Log out") == "Изход", "an unknown language falls back to the default, Bulgarian"


def test_the_committed_template_is_up_to_date():
    template = {m.id for m in read_catalog(LOCALE_DIR / "messages.pot") if m.id}
    found = set(extracted())
    assert template == found, (
        f"service/locale/messages.pot is out of date (new: {sorted(found - template)}, "
        f"gone: {sorted(template - found)}). Run {EXTRACT}"
    )


def test_the_catalogue_has_no_stale_entries():
    catalog = read_catalog(LOCALE_DIR / "bg" / "LC_MESSAGES" / "messages.po")
    stale = sorted(m.id for m in catalog if m.id and m.id not in extracted())
    assert not stale, f"The Bulgarian catalogue translates messages no longer used: {stale}. Run {EXTRACT}"


# --- dates and numbers ------------------------------------------------------------------------------


def test_dates_and_times_in_bulgarian_are_local_sofia_time():
    assert format_date(date(2026, 11, 25), "bg") == "25.11.2026 г."
    # 12:30 UTC is 14:30 in Sofia in winter (EET, UTC+2) and 11:30 UTC is 14:30 in summer (EEST, UTC+3).
    assert format_datetime(datetime(2026, 11, 25, 12, 30, tzinfo=UTC), "bg") == "25.11.2026 г., 14:30 ч."
    assert format_datetime(datetime(2026, 7, 1, 11, 30, tzinfo=UTC), "bg") == "01.07.2026 г., 14:30 ч."
    # Late in the UTC evening it is already the next day in Sofia.
    assert format_date(datetime(2026, 11, 25, 22, 30, tzinfo=UTC), "bg") == "26.11.2026 г."
    assert format_date(None, "bg") == format_datetime(None, "bg") == ""


def test_dates_and_times_in_english():
    assert format_date(date(2026, 11, 25), "en") == "25 Nov 2026"
    assert format_datetime(datetime(2026, 11, 25, 12, 30, tzinfo=UTC), "en") == "25 Nov 2026, 14:30"


def test_numbers_in_bulgarian_have_a_decimal_comma_and_spaced_thousands():
    # babel groups Bulgarian thousands with a no-break space (U+00A0 with babel 2.18's CLDR data; some CLDR
    # versions use U+202F NARROW NO-BREAK SPACE), so a number never breaks across lines. The check accepts
    # either, then compares with the separator normalised to a plain space.
    raw = format_number(1250.5, "bg")
    assert raw[1] in NO_BREAK_SPACES, f"{raw!r}: the group separator is not a no-break space"

    def normalised(value: float) -> str:
        text = format_number(value, "bg")
        for space in NO_BREAK_SPACES:
            text = text.replace(space, " ")
        return text

    assert normalised(1250.5) == "1 250,5"
    assert normalised(1234567.25) == "1 234 567,25"
    assert normalised(999) == "999"
    assert format_number(None, "bg") == ""


def test_numbers_in_english():
    assert format_number(1250.5, "en") == "1,250.5"
    assert format_number(1234567.25, "en") == "1,234,567.25"


# --- the reader's choice ----------------------------------------------------------------------------


def test_pages_are_in_bulgarian_until_the_reader_chooses_english(client):
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="bg">' in page.text
    assert "Вход" in page.text
    assert "Log in" not in page.text

    chosen = client.post(
        "/language",
        data={"language": "en", "next": "/login", "csrf_token": client.cookies.get("accord_csrf")},
        follow_redirects=False,
    )
    assert chosen.status_code == 303, chosen.text
    assert chosen.headers["location"] == "/login"
    assert chosen.cookies.get("accord_lang") == "en"
    assert client.cookies.get("accord_lang") == "en"

    page = client.get("/login")
    assert '<html lang="en">' in page.text
    assert "Log in" in page.text
    assert "Вход" not in page.text


def test_a_logged_in_users_choice_is_kept_on_the_account(client, session):
    user = make_user(session, "coordinator")
    assert user.language == "bg"
    token = page_login(client, user)
    assert "Табло" in client.get("/staff").text

    chosen = client.post(
        "/language", data={"language": "en", "next": "/staff", "csrf_token": token}, follow_redirects=False
    )
    assert chosen.status_code == 303, chosen.text
    assert "Dashboard" in client.get("/staff").text

    # Another browser, without the cookie: logging in brings the account's language back.
    client.cookies.clear()
    page_login(client, user)
    dashboard = client.get("/staff")
    assert '<html lang="en">' in dashboard.text
    assert "Dashboard" in dashboard.text
    # Read last: the fixture's session starts its transactions as a writer, which on SQLite holds the lock.
    session.refresh(user)
    assert user.language == "en"
