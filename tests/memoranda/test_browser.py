"""A real-browser journey through a memorandum: a coordinator drafts it from the kind's form and issues it, signs
for the municipality, the partner signs in the portal, and the public verification page says it is in force.

Elements are found by ids, names, form actions and URLs, not by translated text (see tests/test_browser.py).
"""

import asyncio
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlmodel import Session

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.factories import make_partner, make_user
from tests.test_browser import PHONE, has_no_horizontal_overflow, in_database, log_in

pytestmark = pytest.mark.browser

GOODS = "Бутилирана минерална вода – до 20 000 л на денонощие\nПревоз на хуманитарни товари"


def _event_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def chromium(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """Debian's Chromium, from a Playwright of this test's own, stopped when it ends.

    pytest-playwright's Playwright lives for the whole session and keeps an event loop marked running on the main
    thread, where a later `asyncio.run` (pyhanko's signing, in test_signing.py) then fails. Only when another
    browser test already started that one in this process is it used here too (a second one cannot start)."""
    if _event_loop_running():
        yield request.getfixturevalue("browser")
        return
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def build(session: Session) -> dict:
    coordinator = make_user(session, "coordinator")
    water = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business", registration_number="113003225")
    make_partner(session, name="Сдружение „Доброволци за Примерно“")
    partner = make_user(session, "partner", organisation=water, full_name="Николай Георгиев")
    return {"coordinator": coordinator, "water": water, "partner": partner}


def test_drafted_and_issued_by_staff_signed_in_the_portal_and_verified_in_force(
    page: Page, chromium: Browser, live_server, tmp_path
) -> None:
    base = live_server.url
    world = in_database(live_server.database_url, build)
    wid = world["water"].id

    # Step 1: the kind, the partner and (kept as offered) the dates.
    log_in(page, base, world["coordinator"].email)
    expect(page).to_have_url(base + "/staff")
    page.locator("header a[href='/staff/memoranda']").click()
    expect(page).to_have_url(base + "/staff/memoranda")
    page.locator("main a[href='/staff/memoranda/new']").click()
    page.locator("input[name=template][value=logistics_support]").check()
    page.locator(f"input[name=partner_ids][value='{wid}']").check()
    page.locator("main form[action='/staff/memoranda/new'] button[type=submit]").click()

    # Step 2: the kind's own fields; one required text left out is refused beside it, the rest kept.
    form = page.locator("main form[method=post][action='/staff/memoranda/new']")
    expect(form.locator("#var-termination_notice_days")).to_have_attribute("type", "number")
    expect(form.locator("#var-termination_notice_days")).to_have_value("30")
    expect(form.locator(f"input[name=partner_ids][value='{wid}']")).to_be_checked()
    form.locator("#var-place_of_signing").fill("гр. Примерно")
    form.locator("#var-municipality_contact").fill("Георги Иванов, секретар на кризисния щаб, тел. 076 600 100")
    form.locator("#var-delivery_points").fill("Склад на Общината, ул. „Индустриална“ 7")
    form.locator("button[type=submit]").click()
    error = page.locator("#var-goods_and_services-error")
    expect(error).to_be_visible()
    expect(page.locator("#var-goods_and_services")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#var-place_of_signing")).to_have_value("гр. Примерно")
    assert error.bounding_box()["y"] > page.locator("#var-goods_and_services").bounding_box()["y"]
    page.screenshot(path=tmp_path / "draft-refused.png", full_page=True)
    page.locator("#var-goods_and_services").fill(GOODS)
    page.locator("main form[method=post] button[type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/staff/memoranda/\d+\?done=created$"))
    mid = int(re.search(r"/staff/memoranda/(\d+)", page.url).group(1))
    expect(page.locator("#memorandum-status")).to_have_attribute("data-status", "draft")

    # Issue it, then sign for the municipality (the signer is prefilled).
    page.locator(f"form[action='/staff/memoranda/{mid}/issue'] button[type=submit]").click()
    expect(page).to_have_url(base + f"/staff/memoranda/{mid}?done=issued")
    expect(page.locator("#memorandum-status")).to_have_attribute("data-status", "issued")
    code = page.locator("#verification-code").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{16}", code)
    sign = page.locator(f"form[action='/staff/memoranda/{mid}/sign']")
    expect(sign.locator("#sign-signer_name")).not_to_have_value("")
    sign.locator("button[type=submit]").click()
    expect(page).to_have_url(base + f"/staff/memoranda/{mid}?done=signed#parties")
    expect(page.locator("#memorandum-status")).to_have_attribute("data-status", "partially_signed")

    # The partner finds it awaiting their signature and signs in the portal.
    context = chromium.new_context()
    partner = context.new_page()
    try:
        log_in(partner, base, world["partner"].email)
        expect(partner).to_have_url(base + "/portal")
        partner.locator("header a[href='/portal/memoranda']").click()
        partner.locator(f"#awaiting-{mid} a[href='/portal/memoranda/{mid}']").click()
        expect(partner).to_have_url(base + f"/portal/memoranda/{mid}")
        expect(partner.locator("#own-status")).to_have_attribute("data-status", "pending")
        form = partner.locator(f"form[action='/portal/memoranda/{mid}/sign']")
        expect(form.locator("#sign-signer_name")).to_have_value("Николай Георгиев")
        form.locator("#sign-signer_title").fill("управител")
        form.locator("button[type=submit]").click()
        expect(partner).to_have_url(base + f"/portal/memoranda/{mid}?done=signed")
        expect(partner.locator("#own-status")).to_have_attribute("data-status", "signed")
        expect(partner.locator("#memorandum-status")).to_have_attribute("data-status", "active")
        expect(partner.locator("#signed-pdf")).to_be_visible()

        # The public check, as anyone who scans the QR code sees it, on a phone.
        partner.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        partner.locator(f"main a[href='/verify/{code}']").click()
        expect(partner).to_have_url(base + f"/verify/{code}")
        expect(partner.locator("#verdict")).to_have_attribute("data-genuine", "true")
        expect(partner.locator("#status-words")).to_have_attribute("data-in-force", "true")
        expect(partner.locator("td[data-signed=true]")).to_have_count(2)
        assert has_no_horizontal_overflow(partner)
        partner.screenshot(path=tmp_path / "verify-phone.png", full_page=True)
    finally:
        context.close()

    page.reload()
    expect(page.locator("#memorandum-status")).to_have_attribute("data-status", "active")
    expect(page.locator("#party-0 [data-method=click]")).to_be_visible()
    page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
    assert has_no_horizontal_overflow(page)
    page.screenshot(path=tmp_path / "memorandum-phone.png", full_page=True)
