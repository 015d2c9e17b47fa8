"""Real-browser journeys (Debian's Chromium through pytest-playwright) against `accord serve` in a subprocess.

Elements are found by ids, names, values and URLs, not by their translated text: the Bulgarian catalogue
changes independently of these tests. Language switching is checked on `<html lang>` and the cookie.
"""

import re

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import Session

from service.db import create_db_engine, write_engine
from service.users.models import User
from tests.factories import PASSWORD, make_partner, make_user

pytestmark = pytest.mark.browser

ORG_NAME = "Сдружение „Доброволци за Русе“"
CAPABILITIES = "Палатки и одеяла за 200 души.\nДоброволци с лодки по Дунав, денонощно."
BAD_EIK = "123456789"  # the check digit of 12345678 is 6
GOOD_EIK = "175074752"
PHONE = (390, 844)


def in_database(database_url: str, build):
    """Runs `build(session)` on the live server's database and returns its result, detached."""
    engine = create_db_engine(database_url)
    try:
        with Session(write_engine(engine), expire_on_commit=False) as session:
            return build(session)
    finally:
        engine.dispose()


def stored_language(database_url: str, user_id: int) -> str:
    return in_database(database_url, lambda s: s.get(User, user_id).language)


def log_in(page: Page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form[action='/login'] button[type=submit]").click()


def language_cookie(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == "accord_lang"), None)


def has_no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_coordinator_registers_an_organisation(page: Page, live_server, tmp_path) -> None:
    base = live_server.url
    user = in_database(live_server.database_url, lambda s: make_user(s, "coordinator"))
    html = page.locator("html")

    # The login page is Bulgarian by default.
    page.goto(base + "/login")
    expect(html).to_have_attribute("lang", "bg")
    log_in(page, base, user.email)
    expect(page).to_have_url(base + "/staff")
    expect(html).to_have_attribute("lang", "bg")

    # One click on the header's button switches to English, and the choice is remembered.
    page.locator("header form[action='/language'] button[name=language][value=en]").click()
    expect(html).to_have_attribute("lang", "en")
    expect(page).to_have_url(base + "/staff")
    assert language_cookie(page) == "en"
    assert stored_language(live_server.database_url, user.id) == "en"
    expect(page.locator("header button[name=language]")).to_have_attribute("value", "bg")
    page.reload()
    expect(html).to_have_attribute("lang", "en")
    page.locator("header a[href='/staff/partners']").click()
    expect(page).to_have_url(base + "/staff/partners")
    expect(html).to_have_attribute("lang", "en")

    # Register an organisation, first with a wrong check digit in the EIK.
    page.locator("main a[href='/staff/partners/new']").click()
    expect(page).to_have_url(base + "/staff/partners/new")
    expect(html).to_have_attribute("lang", "en")
    page.locator("#name").fill(ORG_NAME)
    page.locator("#kind").select_option("volunteer_group")
    page.locator("input[name=sectors][value=shelter]").check()
    page.locator("input[name=sectors][value=transport]").check()
    page.locator("#capabilities").fill(CAPABILITIES)
    page.locator("#registration_number").fill(BAD_EIK)
    page.locator("main form[action='/staff/partners/new'] button[type=submit]").click()

    eik = page.locator("#registration_number")
    error = page.locator("#registration_number-error")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    expect(eik).to_have_attribute("aria-invalid", "true")
    expect(eik).to_have_attribute("aria-describedby", "registration_number-error")
    expect(page.locator(".field.has-error")).to_have_count(1)
    # The message sits beside the EIK field: in the same field block, just below the input.
    expect(page.locator(".field.has-error")).to_contain_text(error.inner_text())
    assert error.bounding_box()["y"] > eik.bounding_box()["y"]
    expect(html).to_have_attribute("lang", "en")
    # Everything typed is still there.
    expect(page.locator("#name")).to_have_value(ORG_NAME)
    expect(page.locator("#kind")).to_have_value("volunteer_group")
    expect(page.locator("input[name=sectors]:checked")).to_have_count(2)
    expect(page.locator("input[name=sectors][value=shelter]")).to_be_checked()
    expect(page.locator("input[name=sectors][value=transport]")).to_be_checked()
    expect(page.locator("#capabilities")).to_have_value(CAPABILITIES)
    expect(eik).to_have_value(BAD_EIK)
    page.screenshot(path=tmp_path / "form-error.png", full_page=True)

    # With a valid EIK the organisation is registered and its page shown.
    eik.fill(GOOD_EIK)
    page.locator("main form[action='/staff/partners/new'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/staff/partners/\d+\?created=1$"))
    detail_url = page.url.split("?")[0]
    expect(page.locator("main h1")).to_have_text(ORG_NAME)
    expect(page.locator("main .notice.ok")).to_be_visible()
    expect(page.locator("main dl.profile")).to_contain_text(GOOD_EIK)
    expect(page.locator("main dl.profile .pre")).to_have_text(CAPABILITIES)
    expect(html).to_have_attribute("lang", "en")

    # The registry lists it, and its search box finds it by part of the name and by the EIK.
    page.goto(base + "/staff/partners")
    link = page.locator(f"table.list a[href='{detail_url.removeprefix(base)}']")
    expect(link).to_have_text(ORG_NAME)
    for query in ("доброволци за", GOOD_EIK):
        page.locator("#q").fill(query)
        page.locator("form[role=search] button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/staff/partners\?q="))
        expect(page.locator("#q")).to_have_value(query)
        expect(page.locator("table.list tbody tr")).to_have_count(1)
        expect(link).to_have_text(ORG_NAME)
    page.locator("#q").fill("няма-такава-организация")
    page.locator("form[role=search] button[type=submit]").click()
    expect(link).to_have_count(0)

    # On a phone the registry fits the screen's width.
    page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
    page.goto(base + "/staff/partners")
    expect(link).to_be_visible()
    assert has_no_horizontal_overflow(page)
    page.screenshot(path=tmp_path / "list-phone.png", full_page=True)
    page.goto(base + "/staff/partners/new")
    assert has_no_horizontal_overflow(page)

    # Back to Bulgarian (the longer labels) with the phone's header button; still no sideways scrolling.
    page.goto(base + "/staff/partners")
    page.locator("header button[name=language][value=bg]").click()
    expect(html).to_have_attribute("lang", "bg")
    expect(page).to_have_url(base + "/staff/partners")
    assert language_cookie(page) == "bg"
    assert has_no_horizontal_overflow(page)
    page.screenshot(path=tmp_path / "list-phone-bg.png", full_page=True)


def test_partner_user_edits_own_organisation(page: Page, live_server) -> None:
    base = live_server.url

    def build(session: Session):
        org = make_partner(session, name="Читалище „Светлина 1907“")
        return org, make_user(session, "partner", organisation=org)

    org, user = in_database(live_server.database_url, build)

    log_in(page, base, user.email)
    expect(page).to_have_url(base + "/portal")
    expect(page.locator("main h1")).to_have_text(org.name)

    # Edit the organisation's phone.
    page.locator("main a[href='/portal/organisation/edit']").click()
    expect(page).to_have_url(base + "/portal/organisation/edit")
    page.locator("#phone").fill("+359 82 123 456")
    page.locator("main form[action='/portal/organisation/edit'] button[type=submit]").click()
    expect(page).to_have_url(base + "/portal?saved=1")
    expect(page.locator("main .notice.ok")).to_be_visible()
    expect(page.locator("main dl.profile")).to_contain_text("+359 82 123 456")

    # Add a contact.
    form = page.locator("main form[action='/portal/contacts']")
    page.locator("main details:has(form[action='/portal/contacts']) > summary").click()
    form.locator("#full_name").fill("Мария Иванова")
    form.locator("#role").fill("председател")
    form.locator("#phone").fill("0888 123 456")
    form.locator("#email").fill("maria@svetlina1907.bg")
    form.locator("input[name=available_24_7]").check()
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(base + "/portal#contacts")
    row = page.locator("main table.list tbody tr", has_text="Мария Иванова")
    expect(row).to_have_count(1)
    expect(row.locator("a[href='tel:0888123456']")).to_have_text("0888 123 456")
    expect(row.locator("a[href='mailto:maria@svetlina1907.bg']")).to_be_visible()

    # The staff registry is not for partners: the 403 page, with no staff navigation.
    response = page.goto(base + "/staff/partners")
    assert response is not None and response.status == 403
    expect(page.locator("main .error-box")).to_be_visible()
    expect(page.locator("main table.list")).to_have_count(0)
    expect(page.locator("header a[href='/staff/partners']")).to_have_count(0)
