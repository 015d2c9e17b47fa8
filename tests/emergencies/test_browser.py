"""A real-browser journey through logistics: a partner pledges in the portal, a coordinator accepts part of
it and records a partial receipt, and the coverage board and the partner's pledges show it.

Elements are found by ids, names, form actions and URLs, not by translated text (see tests/test_browser.py).
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session

from service.db import utcnow
from service.emergencies import service
from service.emergencies.models import EmergencyCreate, NeedCreate
from service.i18n import local_input_value
from tests.factories import make_partner, make_user
from tests.test_browser import PHONE, has_no_horizontal_overflow, in_database, log_in

pytestmark = pytest.mark.browser


def build(session: Session) -> dict:
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business", sectors=["water"])
    partner = make_user(session, "partner", organisation=org)
    emergency = service.declare(
        session=session,
        actor=coordinator,
        data=EmergencyCreate(title="Наводнение в кв. „Изток“", kind="flood", area="кв. „Изток“", severity="severe"),
    )
    data = NeedCreate(
        item_name="Бутилирана вода", sector="water", unit="l", quantity=Decimal(1200), priority="critical",
        deliver_to="Училище „Христо Ботев“", needed_by=utcnow() + timedelta(days=2),
    )  # fmt: skip
    need = service.add_need(session=session, actor=coordinator, emergency=emergency, data=data, open_now=True)
    return {"coordinator": coordinator, "partner": partner, "emergency": emergency, "need": need}


def progress_value(page: Page, selector: str) -> float:
    return page.locator(selector).evaluate("el => el.value")


def test_partner_pledges_coordinator_accepts_part_and_records_a_partial_receipt(
    page: Page, browser: Browser, live_server, tmp_path
) -> None:
    base = live_server.url
    world = in_database(live_server.database_url, build)
    nid, eid = world["need"].id, world["emergency"].id
    deliver_by = local_input_value(utcnow() + timedelta(days=1))

    # The partner finds the need and first offers more than it lacks: refused beside the form, input kept.
    log_in(page, base, world["partner"].email)
    expect(page).to_have_url(base + "/portal")
    page.locator("header a[href='/portal/needs']").click()
    expect(page).to_have_url(base + "/portal/needs")
    need = page.locator(f"#need-{nid}")
    need.locator(f"#need-{nid}-pledge").click()
    form = need.locator(f"form[action='/portal/needs/{nid}/pledge']")
    form.locator(f"#need-{nid}-quantity").fill("1500")
    form.locator(f"#need-{nid}-deliver_by").fill(deliver_by)
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(base + f"/portal/needs/{nid}/pledge")
    error = need.locator(f"#need-{nid}-quantity-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("1200")
    expect(form.locator(f"#need-{nid}-quantity")).to_have_attribute("aria-invalid", "true")
    expect(form).to_be_visible()  # the form is open again, with what was typed
    expect(form.locator(f"#need-{nid}-quantity")).to_have_value("1500")
    expect(form.locator(f"#need-{nid}-deliver_by")).to_have_value(deliver_by)
    page.screenshot(path=tmp_path / "needs-refused.png", full_page=True)

    form.locator(f"#need-{nid}-quantity").fill("800")
    form.locator(f"#need-{nid}-note").fill("Два камиона, от склада в Перник.")
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/portal/pledges\?done=pledged#pledge-\d+$"))
    pid = int(page.url.rsplit("-", 1)[1])
    expect(page.locator("#done-notice")).to_be_visible()
    expect(page.locator(f"#pledge-{pid} [data-status]")).to_have_attribute("data-status", "offered")

    # The coordinator accepts 600 of the 800 and records that 250 l have arrived.
    staff = browser.new_context()
    coordinator = staff.new_page()
    try:
        log_in(coordinator, base, world["coordinator"].email)
        expect(coordinator).to_have_url(base + "/staff")
        coordinator.goto(base + f"/staff/needs/{nid}")
        row = coordinator.locator(f"#pledge-{pid}")
        accept = row.locator(f"form[action='/staff/pledges/{pid}/accept']")
        row.locator(f"details:has(form[action='/staff/pledges/{pid}/accept']) > summary").click()
        accept.locator("input[name=accepted_quantity]").fill("600")
        accept.locator("button[type=submit]").click()
        expect(coordinator).to_have_url(base + f"/staff/needs/{nid}#pledge-{pid}")
        expect(row.locator(".pledge-status")).to_have_class(re.compile(r"\bpledge-accepted\b"))

        receipt = row.locator(f"form[action='/staff/pledges/{pid}/receipts']")
        row.locator(f"details:has(form[action='/staff/pledges/{pid}/receipts']) > summary").click()
        receipt.locator("input[name=quantity]").fill("250")
        receipt.locator("input[name=received_by]").fill("Директорът на училището")
        receipt.locator("button[type=submit]").click()
        expect(coordinator).to_have_url(base + f"/staff/needs/{nid}#pledge-{pid}")

        # The board: 600 pledged, 250 delivered, 600 still open.
        coordinator.goto(base + f"/staff/emergencies/{eid}")
        board_row = coordinator.locator(f"#need-{nid}")
        expect(board_row).to_be_visible()
        assert progress_value(coordinator, f"#need-{nid} progress.pledged") == 600
        assert progress_value(coordinator, f"#need-{nid} progress.delivered") == 250
        expect(board_row.locator(".pct")).to_have_text(["50 %", "20 %"])
        coordinator.screenshot(path=tmp_path / "board.png", full_page=True)
    finally:
        staff.close()

    # The partner sees the partial delivery, can no longer withdraw, and may mark the rest dispatched.
    page.goto(base + "/portal/pledges")
    row = page.locator(f"#pledge-{pid}")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "accepted")
    expect(row.locator("td.delivered")).to_contain_text("250")
    expect(row.locator(f"form[action='/portal/pledges/{pid}/withdraw']")).to_have_count(0)
    row.locator(f"form[action='/portal/pledges/{pid}/dispatch'] button[type=submit]").click()
    expect(page).to_have_url(base + f"/portal/pledges?done=dispatched#pledge-{pid}")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "in_transit")

    # The needs page counts it too, and fits a phone's width.
    page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
    page.goto(base + "/portal/needs")
    assert progress_value(page, f"#need-{nid}-pledged") == 600
    assert progress_value(page, f"#need-{nid}-delivered") == 250
    assert has_no_horizontal_overflow(page)
    page.screenshot(path=tmp_path / "needs-phone.png", full_page=True)
    page.goto(base + "/portal/pledges")
    assert has_no_horizontal_overflow(page)
    page.screenshot(path=tmp_path / "pledges-phone.png", full_page=True)
