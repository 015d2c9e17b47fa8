"""A real-browser journey through a consultation: the coordinator drafts and opens it, a partner user sends
the organisation's position with a PDF in the portal, the coordinator closes it, records the decision with the
partner's vote and publishes it, and the public archive shows it.

Elements are found by ids, names, form actions and URLs, not by translated text (see tests/test_browser.py).
"""

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session

from service.db import utcnow
from service.i18n import local_input_value
from service.partners import service as partners
from tests.conftest import LiveServer, start_server, stop
from tests.consultations.test_pages import pdf_bytes
from tests.factories import make_partner, make_user
from tests.test_browser import in_database, log_in

pytestmark = pytest.mark.browser

DECISION = "Общинският съвет приема мерките за подпомагане на засегнатите домакинства."


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """`accord serve` on the test's database, keeping attachments in the test's own folder."""
    live = start_server(database_url, ACCORD_ATTACHMENTS_DIR=str(tmp_path / "attachments"))
    try:
        yield live
    finally:
        stop(live.proc)


def build(session: Session) -> dict:
    coordinator = make_user(session, "coordinator")
    org = make_partner(session, name="Сдружение „Читалище Светлина 1926“")
    partners.verify(session=session, actor=coordinator, org=org)
    return {"coordinator": coordinator, "org": org, "partner": make_user(session, "partner", organisation=org)}


def test_a_partner_sends_a_position_and_the_coordinators_decision_reaches_the_public_archive(
    page: Page, browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    base = server.url
    world = in_database(server.database_url, build)
    org_id = world["org"].id

    # The coordinator drafts the consultation, inviting the organisation, and opens it.
    log_in(page, base, world["coordinator"].email)
    expect(page).to_have_url(base + "/staff")
    page.locator("header a[href='/staff/consultations']").click()
    expect(page).to_have_url(base + "/staff/consultations")
    page.locator("#new-consultation").click()
    expect(page).to_have_url(base + "/staff/consultations/new")
    page.locator("#consultation-title").fill("План за възстановяване след наводнението")
    page.locator("#consultation-question").fill("Подкрепяте ли предложените мерки?")
    page.locator("#consultation-measures").fill("1. Еднократна помощ от **300 €**.\n2. Освобождаване от такси.")
    page.locator("#consultation-opens_at").fill(local_input_value(utcnow() - timedelta(minutes=5)))
    page.locator("#consultation-closes_at").fill(local_input_value(utcnow() + timedelta(days=7)))
    page.locator(f"#invite-{org_id}").check()
    page.locator("#save-consultation").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/staff/consultations/\d+\?done=created$"))
    cid = int(re.search(r"/staff/consultations/(\d+)", page.url).group(1))
    expect(page.locator("#consultation-status")).to_have_attribute("data-status", "draft")
    page.locator("#open-consultation").click()
    expect(page).to_have_url(base + f"/staff/consultations/{cid}?done=opened")
    expect(page.locator("#consultation-status")).to_have_attribute("data-status", "open")

    # The partner finds it in the portal and sends a position with a PDF that may be published.
    attachment = tmp_path / "становище.pdf"
    attachment.write_bytes(pdf_bytes("Становище на читалището"))
    partner_context = browser.new_context()
    partner = partner_context.new_page()
    try:
        log_in(partner, base, world["partner"].email)
        expect(partner).to_have_url(base + "/portal")
        partner.locator("header a[href='/portal/consultations']").click()
        expect(partner).to_have_url(base + "/portal/consultations")
        partner.locator(f"#open-consultations a[href='/portal/consultations/{cid}']").click()
        expect(partner).to_have_url(base + f"/portal/consultations/{cid}")
        expect(partner.locator("#measures strong")).to_have_text("300 €")
        form = partner.locator(f"form[action='/portal/consultations/{cid}/submission']")
        form.locator("#position-amend").check()
        form.locator("#submission-comments").fill("Предлагаме помощта да е 400 €.")
        form.locator("#submission-public").check()
        form.locator("#submission-file").set_input_files(attachment)
        form.locator("#send-position").click()
        expect(partner).to_have_url(base + f"/portal/consultations/{cid}?done=submitted#own-submission")
        expect(partner.locator("#done-notice")).to_be_visible()
        expect(partner.locator("#own-position")).to_have_attribute("data-position", "amend")
        expect(partner.locator("#own-attachment")).to_have_text("становище.pdf")
        partner.screenshot(path=tmp_path / "portal-submitted.png", full_page=True)

        # The coordinator sees it beside the tally, closes the consultation and records the decision.
        page.goto(base + f"/staff/consultations/{cid}")
        row = page.locator(f"#submissions tr[data-organisation='{org_id}']")
        expect(row.locator("[data-position]")).to_have_attribute("data-position", "amend")
        expect(row.locator("a.attachment")).to_have_text("становище.pdf")
        expect(page.locator("#tally-amend")).to_have_text("1")
        page.locator("#close-consultation").click()
        expect(page).to_have_url(base + f"/staff/consultations/{cid}?done=closed")
        expect(page.locator("#consultation-status")).to_have_attribute("data-status", "closed")
        decision = page.locator("#decision-form")
        decision.locator("#decision-text").fill(DECISION)
        decision.locator("#decision-decided_on").fill(utcnow().date().isoformat())
        decision.locator(f"#vote-{org_id}").select_option("for")
        decision.locator("#record-decision").click()
        expect(page).to_have_url(base + f"/staff/consultations/{cid}?done=recorded#decision")
        expect(page.locator(f"#vote-row-{org_id} [data-vote]")).to_have_attribute("data-vote", "for")
        expect(page.locator("#decision-published")).to_have_attribute("data-published", "no")
        page.locator("#publish-decision").click()
        expect(page).to_have_url(base + f"/staff/consultations/{cid}?done=published#decision")
        expect(page.locator("#decision-published")).to_have_attribute("data-published", "yes")
        page.screenshot(path=tmp_path / "staff-decided.png", full_page=True)

        # The partner's page now says the consultation closed and shows the decision with the vote.
        partner.goto(base + f"/portal/consultations/{cid}")
        expect(partner.locator("#submission-form")).to_have_count(0)
        expect(partner.locator("#closed-notice")).to_be_visible()
        expect(partner.locator(f"#vote-row-{org_id} [data-vote]")).to_have_attribute("data-vote", "for")
    finally:
        partner_context.close()

    # Anyone reads it in the public archive, with the organisation's name.
    public_context = browser.new_context()
    public = public_context.new_page()
    try:
        public.goto(base + "/decisions")
        expect(public.locator("main")).to_contain_text(DECISION)
        expect(public.locator("main")).to_contain_text(world["org"].name)
        public.screenshot(path=tmp_path / "decisions.png", full_page=True)
    finally:
        public_context.close()
