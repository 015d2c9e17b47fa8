"""The public site is accessible: axe-core finds nothing serious on the home page, the update pages and the
fact-checks, in both languages (WCAG 2.1 AA, as the EU's Web Accessibility Directive 2016/2102 requires of
public-sector sites); the pages work without JavaScript; and on a phone nothing scrolls sideways.

The data is built through the live server's API, as officers would: an active emergency, updates in both
languages (one with instructions, one corrected, one retracted) and published fact-checks.
"""

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.bulletins.build import Officers
from tests.factories import api_headers, make_user
from tests.test_browser import PHONE, has_no_horizontal_overflow, in_database

pytestmark = pytest.mark.browser

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")
# What people paste: a link with a long token, which no line break may split by itself.
LONG_LINK = "https://social.example/groups/4815162342/posts/1083?__cft__=" + "AZWm3xT8kq9pL2vN7rQ4sB6yD1fH5jK0" * 3


@pytest.fixture
def site(live_server) -> dict[str, int]:
    """Published, corrected, retracted and answering updates in both languages, and an active emergency."""
    url = live_server.database_url
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        officers: Officers = in_database(url, lambda session: Officers(client, session))
        coordinator = api_headers(client, in_database(url, lambda session: make_user(session, "coordinator")))
        emergency = client.post(
            "/api/v1/emergencies", headers=coordinator,
            json={"title": "Наводнение по поречието на Струма", "kind": "flood", "area": "кв. „Изток“, кв. „Мошино“",
                  "severity": "severe"},
        ).json()  # fmt: skip
        alert = officers.published(
            emergency_id=emergency["id"], instruction="- Качете се на по-висок етаж.\n- Изключете тока.",
            body=f"Евакуация на ниските части на кв. „Изток“.\n\n**Пунктове:** училище „Христо Ботев“.\n\n{LONG_LINK}",
        )  # fmt: skip
        corrected = officers.published(title="Пункт за питейна вода", category="advisory")
        officers.correct(corrected["id"], "Пунктът работи до **22:00 ч.**", reason="Удължено работно време.")
        retracted = officers.published(title="Затворен път към с. Рударци", category="service_status")
        officers.retract(retracted["id"])
        english = officers.published(
            language="en", title="Drinking water at the town hall", category="advisory", area_desc="Town centre",
            body="Bottled water is handed out **from 10 am to 6 pm**.", instruction="Bring your ID card.",
        )  # fmt: skip
        _rumour, check = officers.fact_check(wording=f"Водата от чешмата в целия град е отровена! {LONG_LINK}")
        officers.fact_check(
            language="en", wording="The tap water in the whole town is poisoned.", verdict="false",
            response="The water is **safe to drink**: today's samples are clean.", url="https://social.example/post/2",
        )  # fmt: skip
    return {"alert": alert["id"], "corrected": corrected["id"], "retracted": retracted["id"],
            "english": english["id"], "fact_check": check["id"]}  # fmt: skip


def public_paths(site: dict[str, int]) -> list[str]:
    """The home, update pages of every kind and the fact-checks, each in both languages."""
    paths = ["/", "/fact-checks"] + [f"/updates/{site[kind]}" for kind in ("alert", "corrected", "retracted")]
    paths += [f"/updates/{site['fact_check']}", f"/updates/{site['english']}"]
    return [p for path in paths for p in (path, f"{path}?lang=en")]


def describe(violations: list[dict]) -> str:
    """Each violation with up to three of the elements it was found on, and why."""
    lines = []
    for v in violations:
        nodes = "; ".join(f"{n['target']} {' '.join(n.get('failureSummary', '').split())}" for n in v["nodes"][:3])
        lines.append(f"- {v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x: {nodes})")
    return "\n".join(lines)


def test_axe_finds_no_serious_violations_in_either_language(page: Page, live_server, site) -> None:
    axe = Axe()
    problems = {}
    for path in public_paths(site):
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, path
        expect(page.locator("html")).to_have_attribute("lang", "en" if path.endswith("lang=en") else "bg")
        results = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
        violations = results.response["violations"]
        assert results.response["passes"] is not None
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        if blocking:
            problems[path] = describe(blocking)
    assert not problems, "axe-core (WCAG 2.1 AA):\n" + "\n".join(f"{p}:\n{d}" for p, d in problems.items())


def test_the_public_pages_work_without_javascript(browser: Browser, live_server, site) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        reader = context.new_page()
        reader.goto(live_server.url + "/")
        expect(reader.locator("main h1")).to_be_visible()
        expect(reader.locator("main ol.updates > li")).to_have_count(3)  # the Bulgarian ones still current
        expect(reader.locator("main ul.emergencies > li")).to_have_count(1)
        expect(reader.locator(f"main a[href='/updates/{site['retracted']}']")).to_have_count(0)

        # Links, not scripts: to an update, its history (a native <details>), the other language, the facts.
        reader.locator(f"main a[href='/updates/{site['corrected']}']").click()
        expect(reader).to_have_url(live_server.url + f"/updates/{site['corrected']}")
        history = reader.locator("main .history details").first
        expect(history.locator("h3")).not_to_be_visible()
        history.locator("summary").click()
        expect(history.locator("h3")).to_be_visible()
        reader.locator("header nav a[hreflang=en]").click()
        expect(reader).to_have_url(live_server.url + f"/updates/{site['corrected']}?lang=en")
        expect(reader.locator("html")).to_have_attribute("lang", "en")
        expect(reader.locator("main .history")).to_be_visible()

        reader.goto(live_server.url + f"/updates/{site['retracted']}")
        expect(reader.locator("main .notice.retracted")).to_be_visible()
        reader.goto(live_server.url + "/fact-checks?lang=en")
        expect(reader.locator("main ol.facts > li")).to_have_count(1)
        expect(reader.locator("main ol.facts .verdict")).to_be_visible()
    finally:
        context.close()


def test_the_keyboard_skips_to_the_content_and_focus_shows(page: Page, live_server, site) -> None:
    """The first Tab reaches the skip link, on screen; it leads to the content; a focused link in the
    dark header stands out (black on yellow, WCAG 2.4.1, 2.4.7)."""
    page.goto(live_server.url + "/?lang=en")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0, "the skip link shows when focused"
    page.keyboard.press("Enter")
    expect(page).to_have_url(live_server.url + "/?lang=en#main")
    page.keyboard.press("Tab")  # on from the content: its first link
    expect(page.locator("main a").first).to_be_focused()
    page.locator("header nav a").first.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focused by the keyboard, so :focus-visible applies
    colours = page.locator("header nav a").first.evaluate(
        "a => [getComputedStyle(a).backgroundColor, getComputedStyle(a).color]"
    )
    assert colours == ["rgb(255, 221, 0)", "rgb(11, 12, 12)"], colours


def test_content_in_the_other_language_is_marked_as_such(page: Page, live_server, site) -> None:
    """A Bulgarian update on the English page: a screen reader reads its text as Bulgarian and the page's
    own labels as English (WCAG 3.1.2, language of parts)."""
    page.goto(live_server.url + f"/updates/{site['alert']}?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    for part in ("main h1", "main .body", "main .instruction [lang]", "main dl.cap dd[lang]"):
        expect(page.locator(part).first).to_have_attribute("lang", "bg")
    labels = page.locator("main dl.cap dt, main .instruction h2, main p.meta .tag")
    assert labels.count() >= 5
    assert labels.evaluate_all("nodes => nodes.map(n => n.closest('[lang]').lang)") == ["en"] * labels.count()
    page.goto(live_server.url + "/?lang=en")
    expect(page.locator("main ul.emergencies strong")).to_have_attribute("lang", "bg")


@pytest.mark.parametrize("width", [PHONE[0], 320])
def test_nothing_scrolls_sideways_on_a_phone(browser: Browser, live_server, site, width: int) -> None:
    """390 px, a common phone; 320 px, where WCAG 1.4.10 (reflow) asks content to fit without scrolling."""
    context = browser.new_context(viewport={"width": width, "height": PHONE[1]})
    try:
        reader = context.new_page()
        wide = []
        for path in public_paths(site):
            reader.goto(live_server.url + path)
            expect(reader.locator("main h1")).to_be_visible()
            if not has_no_horizontal_overflow(reader):
                wide.append(path)
        assert not wide, f"pages wider than {width} px: {wide}"
    finally:
        context.close()
