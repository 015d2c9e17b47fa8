"""The situation report: its numbers are the coverage board's at the same moment, it lists what happened in its
window and nothing outside it, it reads back from a real PDF in both languages, its window is checked, only staff
read it, and the daily job e-mails it once a day to each recipient through a real SMTP server.
"""

import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlmodel import Session, select

from service import scheduler
from service.config import settings
from service.consultations import service as consultations
from service.consultations.models import ConsultationCreate, DecisionCreate
from service.db import utcnow, write_engine
from service.emergencies import service, sitrep
from service.emergencies.coverage import coverage_for
from service.emergencies.models import LIVE_PLEDGE, UNIT_LABELS, Emergency, Need, Pledge
from service.i18n import format_date, format_datetime, format_number, gettext_in, local_input_value
from service.notifications import service as notifications
from service.notifications.models import OutboxMessage
from service.partners.models import Organisation
from service.users.models import User
from tests.bulletins.build import Officers, backdate
from tests.emergencies.build import Logistics
from tests.factories import api_headers, make_partner, make_user, page_login
from tests.memoranda.world import Memoranda

TITLE = "Наводнение в Перник, ноември 2026"
OTHER_TITLE = "Горски пожар край Брезник"


@dataclass
class Scene:
    coordinator: User
    communications: User
    partner: User
    org_a: Organisation
    org_b: Organisation
    build: Logistics
    emergency: int
    other: int
    needs: dict[str, int]
    pledges: dict[str, int]


def make_scene(session: Session, engine) -> Scene:
    """One emergency with needs covered in every way (numbers in the thousands, three units), one need closed
    during the window, one draft, an overdue pledge, and a second emergency whose data must stay out."""
    coordinator = make_user(session, "coordinator", language="en")
    communications = make_user(session, "communications")
    org_a = make_partner(session, name="Сдружение „Воден свят“")
    org_b = make_partner(session, name="Бета Логистик ЕООД", name_en="Beta Logistics Ltd", kind="business")
    partner = make_user(session, "partner", organisation=org_a)
    build = Logistics(engine, coordinator)
    emergency = build.emergency(title=TITLE)
    other = build.emergency(title=OTHER_TITLE, kind="wildfire")
    needs = {
        "water": build.need(emergency, item_name="Бутилирана вода", quantity=1200, priority="critical"),
        "blankets": build.need(
            emergency, item_name="Одеяла", sector="shelter", unit="pcs", quantity=2500, priority="high"
        ),
        "food": build.need(emergency, item_name="Храна", sector="food", unit="kg", quantity=250),
        "draft": build.need(emergency, "draft", item_name="Генератор", sector="power", unit="pcs", quantity=3),
        "elsewhere": build.need(other, item_name="Маски", sector="medical", unit="box", quantity=40),
    }
    pledges = {
        "water_a": build.pledge(needs["water"], org_a.id, "partial", quantity=900, accepted=800),
        "water_b": build.pledge(needs["water"], org_b.id, "offered", quantity=300),
        "blankets_a": build.pledge(needs["blankets"], org_a.id, "delivered", quantity=1500),
        "blankets_b": build.pledge(needs["blankets"], org_b.id, "accepted", quantity=700),
        "blankets_declined": build.pledge(needs["blankets"], org_b.id, "declined", quantity=200),
        "food_a": build.pledge(needs["food"], org_a.id, "delivered", quantity=250),
        "elsewhere_b": build.pledge(needs["elsewhere"], org_b.id, "delivered", quantity=40),
    }
    build.update(Pledge, pledges["blankets_b"], deliver_by=utcnow() - timedelta(hours=5))  # overdue now
    with build.session() as s:
        service.close_need(session=s, actor=coordinator, need=s.get(Need, needs["food"]), reason="Покрита")
    session.close()
    return Scene(coordinator, communications, partner, org_a, org_b, build, emergency, other, needs, pledges)


@pytest.fixture
def scene(session, engine) -> Scene:
    return make_scene(session, engine)


def get_json(client, url: str, headers: dict, **params) -> dict:
    response = client.get(url, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def pdf_text(data: bytes) -> str:
    """The PDF's text as one line: table cells wrap their words, and babel's spaces in numbers are made plain."""
    reader = PdfReader(io.BytesIO(data))
    return " ".join(plain("\n".join(page.extract_text() for page in reader.pages)).split())


def plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


# --- the numbers are the board's ---------------------------------------------------------------------------


def test_the_reports_numbers_are_the_coverage_boards_at_the_same_moment(client, engine, scene):
    headers = api_headers(client, scene.coordinator)
    url = f"/api/v1/emergencies/{scene.emergency}"
    report = get_json(client, url + "/sitrep", headers)
    board = get_json(client, url + "/coverage", headers)
    on_board = {n["id"]: n for n in board["needs"]}

    # Every need on the report carries the board's numbers for it.
    for line in report["open_needs"] + report["ended_needs"]:
        need = on_board[line["id"]]
        assert line["needed"] == need["quantity"]
        for name in ("pledged", "delivered", "remaining", "pledge_coverage", "delivery_coverage"):
            assert line[name] == need[name], (line["item_name"], name)
    # The open needs are the board's, in the board's order (by priority); the one closed today is listed apart;
    # the draft and the other emergency's need are not there.
    assert [n["id"] for n in report["open_needs"]] == [n["id"] for n in board["needs"] if n["status"] == "open"]
    assert [n["id"] for n in report["ended_needs"]] == [scene.needs["food"]]
    assert report["ended_needs"][0]["status"] == "closed" and report["ended_needs"][0]["ended_at"]
    listed = {n["id"] for n in report["open_needs"] + report["ended_needs"]}
    assert scene.needs["draft"] not in listed and scene.needs["elsewhere"] not in listed
    # Totals per unit are the sums of the board's open needs; "short of pledges" is the board's count.
    sums: dict[str, list] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for need in board["needs"]:
        if need["status"] == "open":
            row = sums[need["unit"]]
            row[0] += 1
            for index, name in enumerate(("quantity", "pledged", "delivered", "remaining"), start=1):
                row[index] += need[name]
    assert {t["unit"]: [t["needs"], t["needed"], t["pledged"], t["delivered"], t["remaining"]]
            for t in report["totals"]} == dict(sums)  # fmt: skip
    short = sum(1 for n in board["needs"] if n["status"] == "open" and n["remaining"] > 0)
    assert report["short_of_pledges"] == short > 0
    # The overdue deliveries are the board's.
    assert (
        [o["pledge_id"] for o in report["overdue"]]
        == [p["id"] for p in board["overdue"]]
        == [scene.pledges["blankets_b"]]
    )
    assert report["overdue"][0]["late_seconds"] >= 5 * 3600 - 60

    # The same from the Python side: `build` against `coverage_for` in one session.
    with Session(engine) as session:
        emergency = session.get(Emergency, scene.emergency)
        built = sitrep.build(session=session, emergency=emergency, since=utcnow() - timedelta(days=1), until=utcnow())
        needs = service.needs_of(session=session, emergency=emergency)
        coverage = coverage_for(session=session, needs=needs)
    for line in built.open_needs + built.ended_needs:
        c = coverage[line.id]
        assert (line.needed, line.pledged, line.delivered, line.remaining) == (
            c.needed, c.pledged, c.delivered, c.remaining
        )  # fmt: skip
        assert (line.pledge_coverage, line.delivery_coverage) == (c.pledge_coverage, c.delivery_coverage)


def test_the_report_counts_pledges_by_status_and_partner_as_the_pledges_stand(client, scene):
    headers = {**api_headers(client, scene.coordinator), "Accept-Language": "en"}
    report = get_json(client, f"/api/v1/emergencies/{scene.emergency}/sitrep", headers)

    # What the pledge API says of every pledge of this emergency's needs, summed independently.
    units = {}
    pledges = []
    for need in get_json(client, f"/api/v1/emergencies/{scene.emergency}/needs", headers):
        units[need["id"]] = need["unit"]
        pledges += get_json(client, f"/api/v1/needs/{need['id']}/pledges", headers)
    by_status: dict[str, tuple] = {}
    for status in {p["status"] for p in pledges}:
        mine = [p for p in pledges if p["status"] == status]
        quantities: dict[str, float] = defaultdict(float)
        for p in mine:
            quantities[units[p["need_id"]]] += (
                p["accepted_quantity"] if p["accepted_quantity"] is not None else p["quantity"]
            )
        by_status[status] = (len(mine), len(mine), dict(quantities))  # all were made in the last 24 hours
    assert {s["status"]: (s["count"], s["made_in_window"], {q["unit"]: q["quantity"] for q in s["quantities"]})
            for s in report["pledges_by_status"]} == by_status  # fmt: skip

    per_partner: dict[int, list] = defaultdict(lambda: [0, 0, defaultdict(float)])
    for p in pledges:
        entry = per_partner[p["organisation_id"]]
        entry[0] += 1
        entry[1] += p["status"] in LIVE_PLEDGE
        if p["delivered"]:
            entry[2][units[p["need_id"]]] += p["delivered"]
    reported = {
        line["organisation_id"]: [
            line["pledges"],
            line["live_pledges"],
            {d["unit"]: d["quantity"] for d in line["delivered"]},
        ]
        for line in report["pledges_by_partner"]
    }
    assert reported == {k: [v[0], v[1], dict(v[2])] for k, v in per_partner.items()}
    # Everything that arrived, arrived today: delivered in the window is all that was delivered.
    for line in report["pledges_by_partner"]:
        assert line["delivered_in_window"] == line["delivered"]
    # Names in the reader's language (English, asked for above), and org B has an English name.
    names = {line["organisation_id"]: line["name"] for line in report["pledges_by_partner"]}
    assert names == {scene.org_a.id: scene.org_a.name, scene.org_b.id: "Beta Logistics Ltd"}
    engaged = {p["organisation_id"] for p in pledges if p["status"] in LIVE_PLEDGE}
    assert {p["organisation_id"] for p in report["partners_engaged"]} == engaged == {scene.org_a.id, scene.org_b.id}


def test_the_report_lists_what_was_published_and_decided_in_its_window_and_nothing_else(client, session, engine, scene):
    headers = api_headers(client, scene.coordinator)
    officers = Officers(client, session)
    about_this = officers.published(title="Раздаване на вода в кв. „Изток“", emergency_id=scene.emergency)
    general = officers.published(title="Телефони за връзка с кризисния щаб")
    retracted = officers.published(title="Затворени училища", emergency_id=scene.emergency)
    officers.retract(retracted["id"])
    officers.published(title="Евакуация край Брезник", emergency_id=scene.other)  # another emergency
    old = officers.published(title="Съобщение от онзи ден", emergency_id=scene.emergency)
    backdate(engine, old["id"], hours=48)  # published before the window
    officers.draft(title="Чернова, непубликувана", emergency_id=scene.emergency)
    rumour, answer = officers.fact_check()

    memoranda = Memoranda(engine, scene.coordinator)
    in_force = memoranda.active([scene.org_a])
    memoranda.draft([scene.org_b])  # never in force

    decided = decide(engine, scene, scene.emergency, votes={scene.org_a.id: "for", scene.org_b.id: "against"})
    decide(engine, scene, scene.other, votes={scene.org_b.id: "for"})  # about another emergency

    report = get_json(client, f"/api/v1/emergencies/{scene.emergency}/sitrep", headers)
    updates = {u["id"]: u for u in report["updates"]}
    assert set(updates) == {about_this["id"], general["id"], retracted["id"], answer["id"]}
    assert updates[retracted["id"]]["retracted_at"] and not updates[about_this["id"]]["retracted_at"]
    assert updates[general["id"]]["emergency_id"] is None
    assert [(f["rumour_id"], f["bulletin_id"], f["verdict"]) for f in report["fact_checks"]] == [
        (rumour["id"], answer["id"], "false")
    ]
    assert [m["id"] for m in report["memoranda"]] == [in_force]
    assert report["memoranda"][0]["parties"] == [scene.org_a.name]
    assert [(d["id"], d["tally"]) for d in report["decisions"]] == [(decided, {"for": 1, "against": 1, "abstain": 0})]

    # A window that ended before any of it: nothing of the emergency's, nothing published, no memoranda.
    before = {"from": (utcnow() - timedelta(days=10)).isoformat(), "to": (utcnow() - timedelta(days=9)).isoformat()}
    empty = get_json(client, f"/api/v1/emergencies/{scene.emergency}/sitrep", headers, **before)
    for name in ("open_needs", "ended_needs", "totals", "pledges_by_status", "pledges_by_partner",
                 "partners_engaged", "memoranda", "updates", "fact_checks", "decisions"):  # fmt: skip
        assert empty[name] == [], name
    # The window of the day before yesterday holds the backdated update only.
    two_days = {
        "from": (utcnow() - timedelta(hours=49)).isoformat(),
        "to": (utcnow() - timedelta(hours=47)).isoformat(),
    }
    assert [u["id"] for u in get_json(client, f"/api/v1/emergencies/{scene.emergency}/sitrep", headers, **two_days)[
        "updates"]] == [old["id"]]  # fmt: skip


def decide(engine, scene: Scene, emergency_id: int, votes: dict[int, str]) -> int:
    """A consultation about `emergency_id`, opened, closed early and decided (and published) now."""
    with Session(write_engine(engine), expire_on_commit=False) as s:
        now = utcnow()
        data = ConsultationCreate(
            title="Мерки за възстановяване на засегнатите домакинства",
            question="Подкрепяте ли предложените мерки?",
            measures="Еднократна помощ и безплатен транспорт.",
            emergency_id=emergency_id,
            opens_at=now,
            closes_at=now + timedelta(hours=2),
            invited_ids=list(votes),
        )
        consultation = consultations.create(session=s, actor=scene.coordinator, data=data)
        consultations.open_consultation(session=s, actor=scene.coordinator, consultation=consultation)
        consultations.close(session=s, actor=scene.coordinator, consultation=consultation)
        decision = consultations.record_decision(
            session=s,
            actor=scene.coordinator,
            consultation=consultation,
            data=DecisionCreate(
                text="Мерките се приемат.",
                decided_on=date.today(),
                votes=[{"organisation_id": org, "vote": vote} for org, vote in votes.items()],
            ),
        )
        consultations.publish_decision(session=s, actor=scene.coordinator, consultation=consultation)
        return decision.id


# --- the PDF -----------------------------------------------------------------------------------------------


def test_the_pdf_reads_back_in_bulgarian_with_the_boards_numbers(client, scene):
    headers = api_headers(client, scene.coordinator)
    client.cookies.clear()
    board = get_json(client, f"/api/v1/emergencies/{scene.emergency}/coverage", headers)
    response = client.get(
        f"/api/v1/emergencies/{scene.emergency}/sitrep.pdf", headers={**headers, "Accept-Language": "bg"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert re.fullmatch(
        rf'attachment; filename="sitrep-{scene.emergency}-\d{{8}}-\d{{4}}-\d{{8}}-\d{{4}}\.pdf"',
        response.headers["content-disposition"],
    )
    assert response.content.startswith(b"%PDF-")
    text = pdf_text(response.content)
    assert "Ситуационен доклад" in text and TITLE in text and settings.municipality_name in text
    assert "стр. 1 от" in text
    for need in board["needs"]:
        if need["status"] != "open":
            continue
        assert need["item_name"] in text
        for name in ("quantity", "pledged", "delivered", "remaining"):
            assert plain(format_number(Decimal(str(need[name])), "bg")) in text, (need["item_name"], name)
    assert "1 200" in text and "2 500" in text  # thousands with a space in Bulgarian
    assert "1,200" not in text
    assert gettext_in("bg")(UNIT_LABELS["pcs"]) in text
    # The overdue pledge and the window, in the local time zone, in the Bulgarian form.
    assert "Бета Логистик ЕООД" in text
    assert re.search(r"\d{2}\.\d{2}\.\d{4} г\., \d{2}:\d{2} ч\.", text)


def test_the_pdf_reads_back_in_english_from_the_staff_page_link(client, scene):
    page_login(client, scene.coordinator)
    client.cookies.set("accord_lang", "en")
    page = client.get(f"/staff/emergencies/{scene.emergency}/sitrep")
    assert page.status_code == 200
    link = re.search(r'href="(/staff/emergencies/\d+/sitrep\.pdf\?[^"]+)"', page.text).group(1).replace("&amp;", "&")
    response = client.get(link)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = pdf_text(response.content)
    assert "Situation report" in text and TITLE in text and settings.municipality_name_en in text
    assert "Page 1 of" in text
    for number in ("1,200", "1,100", "2,500", "2,200", "1,500"):  # the board's numbers, in the English form
        assert number in text
    assert "Beta Logistics Ltd" in text
    # The window the link named is the window printed.
    query = parse_qs(urlsplit(link).query)
    since, until = (datetime.fromisoformat(query[name][0]) for name in ("from", "to"))
    assert f"Window {format_datetime(since, 'en')} – {format_datetime(until, 'en')}" in text


# --- the page ----------------------------------------------------------------------------------------------


def test_the_staff_page_shows_the_report_for_the_last_24_hours_by_default(client, scene):
    page_login(client, scene.coordinator)
    client.cookies.set("accord_lang", "en")
    board = client.get(f"/staff/emergencies/{scene.emergency}")
    assert f'href="/staff/emergencies/{scene.emergency}/sitrep"' in board.text

    before = utcnow()
    page = client.get(f"/staff/emergencies/{scene.emergency}/sitrep")
    assert page.status_code == 200
    text = plain(page.text)
    values = dict(re.findall(r'name="(from|to)" type="datetime-local" value="([^"]*)"', page.text))
    assert values["to"] in (local_input_value(before), local_input_value(utcnow()))
    assert values["from"] in (
        local_input_value(before - timedelta(days=1)),
        local_input_value(utcnow() - timedelta(days=1)),
    )
    for item in ("Бутилирана вода", "Одеяла", "Храна"):
        assert item in text
    assert "Генератор" not in text and "Маски" not in text
    for number in ("1,200", "1,100", "2,500", "2,200", "1,500"):
        assert number in text

    # A window chosen in the form (local times) comes back in the form, and the PDF link carries it.
    chosen = {
        "from": local_input_value(utcnow() - timedelta(hours=3)),
        "to": local_input_value(utcnow() + timedelta(hours=1)),
    }
    page = client.get(f"/staff/emergencies/{scene.emergency}/sitrep", params=chosen)
    assert page.status_code == 200
    assert f'value="{chosen["from"]}"' in page.text and f'value="{chosen["to"]}"' in page.text
    assert f"sitrep.pdf?from={chosen['from'].replace(':', '%3A')}" in page.text


def test_communications_reads_the_report_in_bulgarian(client, scene):
    page_login(client, scene.communications)
    client.cookies.set("accord_lang", "bg")
    page = client.get(f"/staff/emergencies/{scene.emergency}/sitrep")
    assert page.status_code == 200
    text = plain(page.text)
    assert "1 200" in text and "2 500" in text and "1,200" not in text
    assert "/staff/needs/" not in page.text  # the board's links are the coordinators'
    refused = client.get(f"/staff/emergencies/{scene.emergency}/sitrep", params={"from": "вчера"})
    assert refused.status_code == 422 and "Въведете дата и час." in refused.text


# --- the window --------------------------------------------------------------------------------------------


BAD_WINDOWS = [
    ({"from": "2026-11-25T14:30", "to": "2026-11-25T14:30"}, "to", "must end after it begins"),
    ({"from": "2026-11-26T00:00", "to": "2026-11-25T00:00"}, "to", "must end after it begins"),
    ({"from": "2025-01-01T00:00", "to": "2026-11-25T00:00"}, "to", "at most 366 days"),
    ({"from": "yesterday"}, "from", "Enter a date and time"),
    ({"to": "2026-13-01T00:00"}, "to", "Enter a date and time"),
    ({"to": "0001-01-01T00:00"}, "to", "Enter a date and time"),  # out of range once read in local time
    ({"to": "0001-01-01T12:00+00:00"}, "to", "out of range"),  # a day before it would be
    ({"from": "<script>alert(1)</script>"}, "from", "Enter a date and time"),
]


def test_a_window_that_cannot_be_reported_on_is_refused_with_a_clear_422(client, session, engine):
    coordinator = make_user(session, "coordinator", language="en")
    emergency = Logistics(engine, coordinator).emergency()
    headers = {**api_headers(client, coordinator), "Accept-Language": "en"}
    # A start in the future, and no end: the window would end (now) before it begins.
    future = ({"from": local_input_value(utcnow() + timedelta(hours=1))}, "to", "must end after it begins")
    for params, field, message in [*BAD_WINDOWS, future]:
        for suffix in ("sitrep", "sitrep.pdf"):
            response = client.get(f"/api/v1/emergencies/{emergency}/{suffix}", headers=headers, params=params)
            assert response.status_code == 422, (params, response.text)
            (problem,) = response.json()["detail"]
            assert problem["loc"] == ["query", field] and message in problem["msg"], (params, problem)
    page_login(client, coordinator)
    client.cookies.set("accord_lang", "en")
    for params, field, message in BAD_WINDOWS[:1] + BAD_WINDOWS[-1:]:
        page = client.get(f"/staff/emergencies/{emergency}/sitrep", params=params)
        assert page.status_code == 422
        assert f'id="sitrep-{field}-error"' in page.text and message in page.text
        assert "<script>alert" not in page.text
        pdf = client.get(f"/staff/emergencies/{emergency}/sitrep.pdf", params=params)
        assert pdf.status_code == 422 and message in pdf.text


def test_the_window_is_read_in_local_time_and_defaults_to_the_last_24_hours():
    zone = ZoneInfo(settings.timezone)
    since, until = sitrep.parse_window("2026-07-01T07:00", "2026-07-02T07:00")
    assert since == datetime(2026, 7, 1, 7, tzinfo=zone) and until - since == timedelta(hours=24)
    since, until = sitrep.parse_window(None, "2026-03-29T12:00+00:00")
    assert until == datetime(2026, 3, 29, 12, tzinfo=ZoneInfo("UTC")) and until - since == timedelta(hours=24)
    now = utcnow()
    assert sitrep.parse_window(None, None, now=now) == (now - timedelta(hours=24), now)
    assert sitrep.parse_window("", "", now=now) == (now - timedelta(hours=24), now)
    since, until = sitrep.parse_window("2026-01-01T00:00", "2027-01-01T00:00")  # 365 days: allowed
    assert (until - since).days == 365


def test_a_links_window_is_read_back_exactly():
    """The page's PDF link and the e-mail's links name the window to the microsecond, with the offset: a window
    cut to the minute would drop what happened in its last seconds, and the autumn hour happens twice."""
    zone = ZoneInfo(settings.timezone)
    repeated = datetime(2026, 10, 25, 3, 30, fold=1, tzinfo=zone)  # the second 03:30 of that night (UTC+2)
    for since, until in [
        (utcnow() - timedelta(days=1), utcnow()),
        (repeated - timedelta(hours=2), repeated),
        (datetime(2026, 11, 25, 7, tzinfo=zone) - timedelta(days=1), datetime(2026, 11, 25, 7, tzinfo=zone)),
    ]:
        query = parse_qs(sitrep.window_query(since, until))
        read = sitrep.parse_window(query["from"][0], query["to"][0])
        # In UTC: Python never finds a time in the repeated hour equal to one in another zone (PEP 495).
        assert [t.astimezone(UTC) for t in read] == [since.astimezone(UTC), until.astimezone(UTC)]
    assert sitrep.window_query(datetime(2026, 11, 24, 5, tzinfo=ZoneInfo("UTC")), utcnow()).startswith(
        "from=2026-11-24T07%3A00%2B02%3A00&to="
    )


# --- who may read it ---------------------------------------------------------------------------------------


def test_staff_read_the_report_and_partners_and_strangers_do_not(client, session, scene):
    admin = make_user(session, "admin")
    e = scene.emergency
    api_paths = [f"/api/v1/emergencies/{e}/sitrep", f"/api/v1/emergencies/{e}/sitrep.pdf?from=x"]
    page_paths = [f"/staff/emergencies/{e}/sitrep", f"/staff/emergencies/{e}/sitrep.pdf?from=x"]
    client.cookies.clear()
    for path in api_paths:
        response = client.get(path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    for path in page_paths:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
    # A partner: 403, and nothing of the report in the answer.
    partner = api_headers(client, scene.partner)
    for path in api_paths:
        response = client.get(path, headers=partner)
        assert response.status_code == 403 and "Бутилирана" not in response.text
    page_login(client, scene.partner)
    for path in page_paths:
        response = client.get(path)
        assert response.status_code == 403 and "Бутилирана" not in response.text
    client.cookies.clear()
    # Staff who read it: coordinators, communications, administrators; a missing emergency is 404.
    for user in (scene.coordinator, scene.communications, admin):
        headers = api_headers(client, user)
        assert client.get(api_paths[0], headers=headers).status_code == 200
        assert client.get("/api/v1/emergencies/999999/sitrep", headers=headers).status_code == 404
        assert client.get(api_paths[1], headers=headers).status_code == 422  # a bad window, but past the check


def test_the_report_has_its_json_schema_in_the_openapi_document(client):
    spec = client.get("/openapi.json").json()
    path = spec["paths"]["/api/v1/emergencies/{emergency_id}/sitrep"]["get"]
    assert {p["name"] for p in path["parameters"]} >= {"emergency_id", "from", "to"}
    schema = spec["components"]["schemas"]["SituationReport"]
    sections = {"open_needs", "ended_needs", "totals", "pledges_by_status", "pledges_by_partner", "overdue",
                "partners_engaged", "memoranda", "updates", "fact_checks", "decisions"}  # fmt: skip
    assert sections <= set(schema["properties"])
    pdf = spec["paths"]["/api/v1/emergencies/{emergency_id}/sitrep.pdf"]["get"]
    assert "application/pdf" in pdf["responses"]["200"]["content"]


# --- the daily e-mail --------------------------------------------------------------------------------------


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(settings.timezone))


def queue(engine, now: datetime) -> int:
    with Session(write_engine(engine), expire_on_commit=False) as s:
        return sitrep.queue_daily(session=s, now=now)


def test_the_daily_report_is_queued_once_a_day_per_recipient_and_delivered(
    client, session, engine, scene, smtp_server, monkeypatch
):
    reader = make_user(session, "coordinator", email="Mayor@Obshtina.example", language="en")
    session.close()
    monkeypatch.setattr(settings, "sitrep_recipients", f"shtab@obshtina.example, {reader.email.lower()};; ,nobody")
    monkeypatch.setattr(settings, "sitrep_hour", 7)
    scene.build.emergency(title="Отминала буря", status="closed")  # not active: no report
    today = utcnow().astimezone(ZoneInfo(settings.timezone)).date()
    tomorrow = today + timedelta(days=1)
    for emergency_id in (scene.emergency, scene.other):
        scene.build.update(Emergency, emergency_id, declared_at=local(today, 0) - timedelta(days=3))
    # Declared after today's report hour: nothing to report in today's window, in tomorrow's report first.
    late = scene.build.emergency(title="Свлачище край Радомир", kind="other")
    scene.build.update(Emergency, late, declared_at=local(today, 7, 5))

    assert queue(engine, local(today, 6, 59)) == 0  # before the hour
    assert queue(engine, local(today, 7, 10)) == 4  # two active emergencies, two recipients
    assert queue(engine, local(today, 7, 25)) == 0  # the next run the same day
    assert queue(engine, local(today, 23, 55)) == 0
    assert queue(engine, local(tomorrow, 7, 0)) == 6  # the next day's, now with the late one too
    with Session(engine) as s:
        keys = [
            m.dedupe_key for m in s.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith("sitrep:")))
        ]
    assert len(keys) == len(set(keys)) == 10
    assert sitrep.dedupe_key(scene.emergency, today, "shtab@obshtina.example") in keys

    controller, collector = smtp_server
    smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": controller.port})
    with Session(write_engine(engine), expire_on_commit=False) as s:
        notifications.send_due(session=s, settings=smtp)
    # The partner's own notices (pledges accepted) went too; the reports are these.
    reports = [
        (envelope, m) for envelope, m in collector.messages if envelope.rcpt_tos[0].endswith("@obshtina.example")
    ]
    received = Counter(address for envelope, _ in reports for address in envelope.rcpt_tos)
    assert received == {"shtab@obshtina.example": 5, "mayor@obshtina.example": 5}

    # Each message is the summary of its day's window (the 24 hours up to 07:00) in its reader's language: the
    # recipient with an account reads English, the other the default. Only the time it was made differs.
    def without_generated(body: str) -> list[str]:
        return [line for line in body.splitlines() if not line.startswith(("Generated", "Изготвен"))]

    seen_numbers = False
    with Session(engine) as s:
        for envelope, message in reports:
            language = "en" if envelope.rcpt_tos[0].startswith("mayor") else "bg"
            subject, body = " ".join(message["Subject"].split()), message.get_content()
            (emergency,) = [e for e in s.exec(select(Emergency)) if e.title in subject]
            day = next(d for d in (today, tomorrow) if plain(format_date(local(d, 7), language)) in plain(subject))
            report = sitrep.build(
                session=s, emergency=emergency, since=local(day, 7) - timedelta(days=1), until=local(day, 7),
                language=language,
            )  # fmt: skip
            expected_subject, expected_body = sitrep.summary_text(report)
            assert subject == " ".join(expected_subject.split())
            assert without_generated(body) == without_generated(expected_body)
            page_url, pdf_url = sitrep.report_urls(report)
            assert page_url in body and pdf_url in body
            if emergency.id == scene.emergency and language == "en" and report.open_needs:
                water = next(t for t in report.totals if t.unit == "l")
                assert f"l: {format_number(water.needed, 'en')} / {format_number(water.pledged, 'en')} / " in body
                assert "1,200" in body
                seen_numbers = True
    assert seen_numbers  # the window of today or of tomorrow holds the scene, made just now

    # The link in the e-mail opens the page of that window for a staff member.
    page_login(client, scene.coordinator)
    link = urlsplit(page_url)
    assert client.get(f"{link.path}?{link.query}").status_code == 200


def test_no_recipients_no_mail_and_the_job_is_scheduled(engine, scene, monkeypatch):
    monkeypatch.setattr(settings, "sitrep_recipients", " , ")
    monkeypatch.setattr(settings, "sitrep_hour", 0)
    assert queue(engine, utcnow()) == 0
    assert "emergencies.sitrep" in {job.id for job in scheduler.collect_jobs()}
    assert sitrep.recipients() == []
    monkeypatch.setattr(settings, "sitrep_recipients", "a@x.example, A@X.example, b@x.example")
    assert sitrep.recipients() == ["a@x.example", "b@x.example"]
    assert len(sitrep.dedupe_key(1, date(2026, 11, 25), "x" * 250 + "@example.test")) <= 200
