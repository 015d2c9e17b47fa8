"""The HXL-tagged CSV export of an emergency's needs and pledges, read back with libhxl.

The hashtag row sits directly under the header row; the hashtags are the ones DESIGN.md lists (never
`#value`, which is money in HXL); numbers, statuses, names and times read back as stored, Cyrillic
intact; a cell a spreadsheet would run as a formula is neutralised.
"""

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import hxl
import pytest

from tests.emergencies.build import Logistics, later
from tests.factories import api_headers, make_partner, make_user

# The hashtags DESIGN.md ("Emergencies, needs and pledges") allows in the export.
DESIGN_TAGS = {
    "#crisis+name", "#need+name", "#org+name", "#org+type", "#sector+name", "#item+name", "#item+unit",
    "#item+num+needed", "#item+num+pledged", "#item+num+delivered", "#status+name", "#loc+name", "#date+due",
    "#meta+id",
}  # fmt: skip
NEED_TAGS = {
    "Need ID": "#meta+id", "Emergency": "#crisis+name", "Item": "#item+name", "Sector": "#sector+name",
    "Unit": "#item+unit", "Needed": "#item+num+needed", "Pledged": "#item+num+pledged",
    "Delivered": "#item+num+delivered", "Status": "#status+name", "Deliver to": "#loc+name", "Needed by": "#date+due",
}  # fmt: skip
PLEDGE_TAGS = {
    "Pledge ID": "#meta+id", "Emergency": "#crisis+name", "Need": "#need+name", "Organisation": "#org+name",
    "Organisation type": "#org+type", "Sector": "#sector+name", "Item": "#item+name", "Unit": "#item+unit",
    "Pledged": "#item+num+pledged", "Delivered": "#item+num+delivered", "Status": "#status+name",
    "Deliver to": "#loc+name", "Deliver by": "#date+due",
}  # fmt: skip
TITLE = "Наводнение в кв. „Изток“, Перник"
FORMULAS = ['=HYPERLINK("http://evil.example","Вода")', "+1+2", "-2+3", "@SUM(A1:A9)", "=cmd|' /C calc'!A0"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Export:
    emergency: int
    needs: dict[str, int]  # by item name
    pledges: dict[str, int]  # by what each is
    needed_by: datetime
    org_a: str
    org_b: str


@pytest.fixture
def export(session, engine) -> tuple[Export, dict[str, str]]:
    coordinator = make_user(session, "coordinator")
    org_a = make_partner(session, name="Сдружение „Щит и Ъгъл“", kind="ngo")
    org_b = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business")
    build = Logistics(engine, coordinator)
    emergency = build.emergency(title=TITLE)
    needed_by = later(48).replace(microsecond=0)
    water = build.need(emergency, item_name="Бутилирана вода", quantity="1200.50", needed_by=needed_by)
    blankets = build.need(emergency, item_name="Одеяла", sector="shelter", unit="pcs", quantity=300, priority="high")
    draft = build.need(emergency, "draft", item_name="Генератор", sector="power", unit="pcs", quantity=2)
    tricky = {name: build.need(emergency, item_name=name, deliver_to=name, quantity=1) for name in FORMULAS}
    pledges = {
        "water offered": build.pledge(water, org_a.id, quantity="100.25"),
        "water accepted less": build.pledge(water, org_b.id, "partial", quantity="500", accepted="400.5"),
        "blankets delivered": build.pledge(blankets, org_a.id, "delivered", quantity=120),
        "blankets declined": build.pledge(blankets, org_b.id, "declined", quantity=50),
    }
    other = build.emergency(title="Друго бедствие")
    build.pledge(build.need(other, item_name="Чужда нужда"), org_a.id)  # not in this emergency's export
    needs = {"Бутилирана вода": water, "Одеяла": blankets, "Генератор": draft} | tricky
    return Export(emergency, needs, pledges, needed_by, org_a.name, org_b.name), {"coordinator": coordinator}


def fetch(client, coordinator, emergency: int, rows: str = "needs") -> str:
    response = client.get(
        f"/api/v1/emergencies/{emergency}/export.csv?rows={rows}", headers=api_headers(client, coordinator)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="emergency-{emergency}-{rows}.csv"' in response.headers["content-disposition"]
    return response.content.decode("utf-8")


def check_tags(text: str, expected: dict[str, str]) -> hxl.model.Dataset:
    """The raw rows: header, then hashtags right under it; then libhxl's reading of the same."""
    raw = list(csv.reader(io.StringIO(text)))
    assert raw[0] == list(expected), "the first row is the header row"
    assert raw[1] == list(expected.values()), "the hashtag row is directly under it"
    assert set(raw[1]) <= DESIGN_TAGS
    assert not any(tag.split("+")[0] == "#value" for tag in raw[1])
    dataset = hxl.data(io.BytesIO(text.encode("utf-8")))
    assert [c.header for c in dataset.columns] == list(expected)
    assert [c.display_tag for c in dataset.columns] == list(expected.values())
    return dataset


def number(value: str) -> Decimal:
    return Decimal(value)


def test_the_needs_export_reads_back_with_libhxl(client, export):
    e, users = export
    text = fetch(client, users["coordinator"], e.emergency)
    dataset = check_tags(text, NEED_TAGS)

    rows = {int(row.get("#meta+id")): row for row in dataset}
    assert sorted(rows) == sorted(e.needs.values())  # every need of this emergency, drafts too; no other
    water = rows[e.needs["Бутилирана вода"]]
    assert water.get("#crisis+name") == TITLE
    assert (water.get("#item+name"), water.get("#sector+name"), water.get("#item+unit")) == (
        "Бутилирана вода",
        "water",
        "l",
    )
    # Needed exactly; pledged = the offer 100.25 + the accepted 400.5 (not the 500 offered); delivered 200.
    assert (number(water.get("#item+num+needed")), number(water.get("#item+num+pledged"))) == (
        Decimal("1200.50"),
        Decimal("500.75"),
    )
    assert number(water.get("#item+num+delivered")) == 200
    assert water.get("#status+name") == "open"
    assert water.get("#loc+name") == "Училище „Христо Ботев“"
    assert datetime.fromisoformat(water.get("#date+due")) == e.needed_by
    blankets = rows[e.needs["Одеяла"]]
    assert [blankets.get(t) for t in ("#item+num+needed", "#item+num+pledged", "#item+num+delivered")] == [
        "300",
        "120",
        "120",
    ]
    assert not blankets.get("#date+due")  # none set: an empty cell
    assert rows[e.needs["Генератор"]].get("#status+name") == "draft"
    # libhxl reads every quantity column as a number.
    for row in dataset:
        for tag in ("#item+num+needed", "#item+num+pledged", "#item+num+delivered"):
            assert hxl.datatypes.is_number(row.get(tag)), (tag, row.get(tag))


def test_the_pledges_export_reads_back_with_libhxl(client, export):
    e, users = export
    text = fetch(client, users["coordinator"], e.emergency, "pledges")
    dataset = check_tags(text, PLEDGE_TAGS)

    rows = {int(row.get("#meta+id")): row for row in dataset}
    assert sorted(rows) == sorted(e.pledges.values())  # not the other emergency's pledge
    got = {what: rows[pid] for what, pid in e.pledges.items()}
    assert {what: row.get("#org+name") for what, row in got.items()} == {
        "water offered": e.org_a,
        "water accepted less": e.org_b,
        "blankets delivered": e.org_a,
        "blankets declined": e.org_b,
    }
    assert {what: row.get("#org+type") for what, row in got.items()} == {
        "water offered": "ngo",
        "water accepted less": "business",
        "blankets delivered": "ngo",
        "blankets declined": "business",
    }
    summary = {
        what: (row.get("#status+name"), number(row.get("#item+num+pledged")), number(row.get("#item+num+delivered")))
        for what, row in got.items()
    }
    assert summary == {
        "water offered": ("offered", Decimal("100.25"), 0),
        "water accepted less": ("in_transit", Decimal("400.5"), 200),
        "blankets delivered": ("delivered", 120, 120),
        "blankets declined": ("declined", 50, 0),
    }
    water = got["water accepted less"]
    assert (water.get("#crisis+name"), water.get("#need+name"), water.get("#item+name")) == (
        TITLE,
        "Бутилирана вода",
        "Бутилирана вода",
    )
    assert (water.get("#sector+name"), water.get("#item+unit"), water.get("#loc+name")) == (
        "water",
        "l",
        "Училище „Христо Ботев“",
    )
    deliver_by = datetime.fromisoformat(water.get("#date+due"))
    assert deliver_by.utcoffset().total_seconds() == 0 and abs((deliver_by - later()).total_seconds()) < 600


def test_a_formula_looking_cell_is_neutralised(client, export):
    e, users = export
    text = fetch(client, users["coordinator"], e.emergency)
    raw = list(csv.reader(io.StringIO(text)))
    by_id = {row[0]: row for row in raw[2:]}
    for name in FORMULAS:
        row = by_id[str(e.needs[name])]
        item, place = row[list(NEED_TAGS).index("Item")], row[list(NEED_TAGS).index("Deliver to")]
        for cell in (item, place):
            assert not cell.startswith(FORMULA_STARTS), cell
            assert cell == "'" + name  # the text kept whole behind the quote that disarms it
    # No other cell anywhere in the file starts like a formula.
    for row in raw[2:]:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in row), row
    # libhxl reads the neutralised text as plain strings.
    dataset = hxl.data(io.BytesIO(text.encode("utf-8")))
    names = {row.get("#item+name") for row in dataset}
    assert {"'" + name for name in FORMULAS} <= names
