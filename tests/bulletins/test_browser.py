"""A real-browser journey through a public update: one officer drafts it in the page form and submits it,
a second officer approves it, and an anonymous reader (on a phone, too) finds it on the public site.

Elements are found by ids, names, form actions and URLs, not by translated text (see tests/test_browser.py).
"""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from service.bulletins.models import Bulletin
from service.i18n import parse_local_datetime
from tests.factories import make_user
from tests.test_browser import PHONE, has_no_horizontal_overflow, in_database, log_in

pytestmark = pytest.mark.browser

TITLE = "Спиране на водата в кв. „Изток“ до 18:00"
BODY = "Водата е спряна заради авария на главния водопровод.\n\n- Цистерна на площада\n- Бутилирана вода в училището"


@pytest.mark.slow
def test_an_officer_drafts_a_second_approves_and_the_public_reads_it_on_a_phone(
    page: Page, browser: Browser, live_server, tmp_path
) -> None:
    base = live_server.url
    author, reviewer = in_database(
        live_server.database_url, lambda s: (make_user(s, "communications"), make_user(s, "communications"))
    )

    # The author drafts the update in the form, from the navigation's link.
    log_in(page, base, author.email)
    expect(page).to_have_url(base + "/staff")
    page.locator("header a[href='/staff/bulletins']").click()
    expect(page).to_have_url(base + "/staff/bulletins")
    page.locator("#new-bulletin").click()
    expect(page).to_have_url(base + "/staff/bulletins/new")
    form = page.locator("form#bulletin-form")
    form.locator("[name=title]").fill(TITLE)
    form.locator("[name=body]").fill(BODY)
    form.locator("[name=category]").select_option("service_status")
    form.locator("[name=urgency]").select_option("Expected")
    form.locator("[name=severity]").select_option("Moderate")
    form.locator("[name=certainty]").select_option("Observed")
    form.locator("[name=cap_category]").select_option("Infra")
    form.locator("[name=response_type]").select_option("Prepare")
    form.locator("[name=area_desc]").fill("кв. „Изток“")
    form.locator("[name=effective]").fill("2030-01-15T08:00")
    form.locator("[name=expires]").fill("2030-01-15T18:00")
    form.locator("[name=instruction]").fill("Налейте вода за пиене.")
    form.locator("#bulletin-save").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/staff/bulletins/\d+\?done=created$"))
    bulletin_id = int(re.search(r"/staff/bulletins/(\d+)", page.url).group(1))
    status = page.locator("#bulletin-status")
    expect(status).to_have_attribute("data-status", "draft")
    expect(page.locator("#bulletin-body li")).to_have_count(2)  # the Markdown list, rendered

    page.locator("#submit-button").click()
    expect(page).to_have_url(base + f"/staff/bulletins/{bulletin_id}?done=submitted")
    expect(status).to_have_attribute("data-status", "in_review")
    expect(page.locator("#approve-own")).to_be_visible()  # the author is told a second officer must approve
    expect(page.locator(f"form[action='/staff/bulletins/{bulletin_id}/approve']")).to_have_count(0)

    # The second officer finds it waiting for review and approves it.
    staff = browser.new_context()
    try:
        second = staff.new_page()
        log_in(second, base, reviewer.email)
        expect(second).to_have_url(base + "/staff")
        second.locator("#bulletins-in-review").click()
        expect(second).to_have_url(base + "/staff/bulletins?status=in_review")
        second.locator(f"#bulletin-{bulletin_id} a[href='/staff/bulletins/{bulletin_id}']").click()
        expect(second).to_have_url(base + f"/staff/bulletins/{bulletin_id}")
        second.locator("#approve-button").click()
        expect(second).to_have_url(base + f"/staff/bulletins/{bulletin_id}?done=published")
        expect(second.locator("#bulletin-status")).to_have_attribute("data-status", "published")
        expect(second.locator("#public-link")).to_have_attribute("href", f"/updates/{bulletin_id}")
    finally:
        staff.close()

    stored = in_database(live_server.database_url, lambda s: s.get(Bulletin, bulletin_id))
    assert (stored.status, stored.created_by_id, stored.approved_by_id) == ("published", author.id, reviewer.id)
    assert stored.effective == parse_local_datetime("2030-01-15T08:00")

    # Anyone reads it: its own page and the public home, on a phone's width too.
    public = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]})
    try:
        reader = public.new_page()
        reader.goto(base + f"/updates/{bulletin_id}")
        expect(reader.locator("main h1")).to_have_text(TITLE)
        expect(reader.locator("main .body li")).to_have_count(2)
        reader.goto(base + "/")
        link = reader.locator(f"main a[href='/updates/{bulletin_id}']")
        expect(link).to_have_text(TITLE)
        expect(link).to_be_visible()
        assert has_no_horizontal_overflow(reader)
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0], "the title fits the screen"
        shot = tmp_path / "public-home-phone.png"
        reader.screenshot(path=shot, full_page=True)
        assert shot.stat().st_size > 5_000
    finally:
        public.close()
