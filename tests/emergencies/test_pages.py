"""The staff's logistics pages: the list and declaring, the coverage board, a need with its pledges, exports.

Pages are read in English (the coordinator's own language) so that the assertions can name the messages.
"""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service.db import utcnow
from service.emergencies import service
from service.emergencies.models import (
    AcceptBody,
    Emergency,
    EmergencyCreate,
    EmergencyStatus,
    Need,
    NeedCreate,
    NeedStatus,
    OfferCreate,
    OfferStatus,
    Pledge,
    PledgeCreate,
    PledgeStatus,
    Receipt,
    ReceiptCreate,
)
from service.i18n import local_input_value, parse_local_datetime
from tests.factories import make_partner, make_user, page_login


@pytest.fixture
def staff(client, session):
    """A coordinator logged in through the form, reading English; the CSRF token for forms."""
    coordinator = make_user(session, "coordinator", language="en")
    return coordinator, page_login(client, coordinator)


def declare(session: Session, actor, **overrides) -> Emergency:
    fields = {"title": "Наводнение в кв. „Изток“", "kind": "flood", "area": "кв. „Изток“", "severity": "severe"}
    return service.declare(session=session, actor=actor, data=EmergencyCreate(**{**fields, **overrides}))


def add_need(session: Session, actor, emergency: Emergency, **overrides) -> Need:
    fields = {"item_name": "Бутилирана вода", "sector": "water", "unit": "l", "quantity": 600,
              "priority": "critical", "deliver_to": "Училище „Христо Ботев“"}  # fmt: skip
    data = NeedCreate(**{**fields, **overrides})
    return service.add_need(session=session, actor=actor, emergency=emergency, data=data, open_now=True)


def pledge(session: Session, actor, need: Need, organisation, quantity: int, hours: int = 24) -> Pledge:
    data = PledgeCreate(quantity=quantity, deliver_by=utcnow() + timedelta(hours=hours))
    return service.create_pledge(session=session, actor=actor, need_id=need.id, organisation=organisation, data=data)


def need_form(need: Need) -> dict[str, str]:
    return {"item_name": need.item_name, "sector": need.sector.value, "unit": need.unit.value,
            "quantity": str(need.quantity), "priority": need.priority.value, "deliver_to": need.deliver_to,
            "needed_by": local_input_value(need.needed_by)}  # fmt: skip


def need_row(html: str, need_id: int) -> str:
    """The board's table row of one need."""
    match = re.search(rf'<tr id="need-{need_id}">(.*?)</tr>', html, re.S)
    assert match, f"no row for need {need_id}"
    return match.group(1)


def cell(row: str, label: str) -> str:
    match = re.search(rf'<td data-label="{label}"[^>]*>(.*?)</td>', row, re.S)
    assert match, f"no {label} cell"
    return re.sub(r"<[^>]+>", " ", match.group(1)).split()[0]


@pytest.fixture
def db(engine):
    """Reads what the app wrote, each time in a short session of its own: the `session` fixture is a writer,
    and a read through it would hold SQLite's write lock while the app waits for it."""

    class Reader:
        def get(self, entity):
            with Session(engine) as s:
                return s.get(type(entity), entity.id)

        def all(self, query) -> list:
            with Session(engine) as s:
                return list(s.exec(query))

        def one(self, query):
            (row,) = self.all(query)
            return row

    return Reader()


# --- declaring -----------------------------------------------------------------------------------


def test_an_emergency_is_declared_through_the_form_and_bad_input_is_shown_beside_its_field(client, session, staff, db):
    coordinator, token = staff
    page = client.get("/staff/emergencies")
    assert page.status_code == 200
    assert "Declare an emergency" in page.text

    bad = client.post(
        "/staff/emergencies",
        data={"title": "  ", "kind": "volcano", "area": "кв. „Изток“", "severity": "severe", "csrf_token": token},
    )
    assert bad.status_code == 422
    assert re.search(r'id="declare-title-error"[^>]*>This field is required.<', bad.text)
    assert re.search(r'id="declare-kind-error"[^>]*>Choose one of the options.<', bad.text)
    assert 'name="area" type="text" value="кв. „Изток“"' in bad.text, "the input is kept"
    assert re.search(r'<option value="severe"\s+selected>', bad.text), "the chosen severity is kept"
    assert db.all(select(Emergency)) == []

    good = client.post(
        "/staff/emergencies",
        data={"title": "Наводнение", "kind": "flood", "area": "кв. „Изток“", "severity": "severe",
              "description": "", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert good.status_code == 303, good.text
    emergency = db.one(select(Emergency))
    assert good.headers["location"] == f"/staff/emergencies/{emergency.id}?declared=1"
    assert (emergency.status, emergency.declared_by_id) == (EmergencyStatus.active, coordinator.id)
    board = client.get(good.headers["location"])
    assert board.status_code == 200
    assert "The emergency is declared." in board.text
    assert f'href="/staff/emergencies/{emergency.id}"' in client.get("/staff").text, "the dashboard links the board"


# --- the flow through the pages ------------------------------------------------------------------


def test_a_need_added_on_the_board_is_pledged_accepted_for_less_received_in_part_and_the_board_adds_up(
    client, session, staff, db
):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    added = client.post(
        f"/staff/emergencies/{emergency.id}/needs",
        data={"item_name": "Бутилирана вода", "sector": "water", "unit": "l", "quantity": "600",
              "priority": "critical", "deliver_to": "Училище „Христо Ботев“", "needed_by": "2030-01-15T14:30",
              "open_now": "on", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert added.status_code == 303, added.text
    need = db.one(select(Need))
    assert added.headers["location"] == f"/staff/emergencies/{emergency.id}#need-{need.id}"
    assert need.status == NeedStatus.open
    assert need.quantity == 600
    assert need.needed_by == datetime(2030, 1, 15, 12, 30, tzinfo=UTC), "14:30 in Sofia in winter is 12:30 UTC"

    water = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business")
    offered = pledge(session, make_user(session, "partner", organisation=water), need, water, 500)

    need_page = client.get(f"/staff/needs/{need.id}")
    assert need_page.status_code == 200
    assert f'href="/staff/partners/{water.id}"' in need_page.text
    assert "„Минерална вода Струма“ ЕООД" in need_page.text
    accepted = client.post(
        f"/staff/pledges/{offered.id}/accept",
        data={"accepted_quantity": "400", "csrf_token": token},
        follow_redirects=False,
    )
    assert accepted.status_code == 303, accepted.text
    assert accepted.headers["location"] == f"/staff/needs/{need.id}#pledge-{offered.id}"
    offered = db.get(offered)
    assert (offered.status, offered.accepted_quantity) == (PledgeStatus.accepted, 400)

    received = client.post(
        f"/staff/pledges/{offered.id}/receipts",
        data={"quantity": "150", "received_by": "Директор", "note": "Първи курс", "received_at": "",
              "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert received.status_code == 303, received.text
    receipt = db.one(select(Receipt))
    assert (receipt.quantity, receipt.received_by) == (150, "Директор")
    assert db.get(offered).status == PledgeStatus.accepted, "a partial delivery"

    board = client.get(f"/staff/emergencies/{emergency.id}")
    assert board.status_code == 200
    row = need_row(board.text, need.id)
    assert (cell(row, "Needed"), cell(row, "Pledged"), cell(row, "Delivered so far"), cell(row, "Remaining")) == (
        "600", "400", "150", "200",
    )  # fmt: skip
    assert '<progress class="pledged" max="600" value="400"' in row
    assert '<progress class="delivered" max="600" value="150"' in row
    assert "66 %" in row and "25 %" in row, "the bars' text alternative"

    need_page = client.get(f"/staff/needs/{need.id}")
    assert "Partial" in need_page.text
    assert "Директор" in need_page.text, "the receipt is listed"
    assert "Still to arrive: 250" in need_page.text


def test_a_decimal_comma_is_read_in_bulgarian_and_a_local_time_in_summer(client, session, staff, db):
    coordinator, token = staff
    client.post("/language", data={"language": "bg", "next": "/staff", "csrf_token": token})
    emergency = declare(session, coordinator)
    added = client.post(
        f"/staff/emergencies/{emergency.id}/needs",
        data={"item_name": "Дизелово гориво", "sector": "fuel", "unit": "l", "quantity": "1 250,5",
              "priority": "low", "deliver_to": "Помпена станция", "needed_by": "2030-07-15T14:30",
              "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert added.status_code == 303, added.text
    need = db.one(select(Need))
    assert need.quantity == Decimal("1250.5")
    assert need.status == NeedStatus.draft, "not opened unless asked"
    assert need.needed_by == datetime(2030, 7, 15, 11, 30, tzinfo=UTC), "14:30 in Sofia in summer is 11:30 UTC"

    # The edit form shows the quantity and the time as they were typed, and sending it back changes nothing.
    page = client.get(f"/staff/needs/{need.id}").text
    shown = re.search(r'id="edit-quantity" name="quantity" type="text" value="([^"]*)"', page).group(1)
    assert shown.replace("\u00a0", " ").replace("\u202f", " ") == "1 250,5"
    assert 'id="edit-needed_by" name="needed_by" type="datetime-local" value="2030-07-15T14:30"' in page
    form = {**need_form(need), "quantity": shown, "needed_by": "2030-07-15T14:30", "csrf_token": token}
    assert client.post(f"/staff/needs/{need.id}/edit", data=form, follow_redirects=False).status_code == 303
    again = db.get(need)
    assert (again.quantity, again.needed_by) == (need.quantity, need.needed_by)


def test_a_need_form_with_bad_input_is_shown_again_with_the_input_and_nothing_is_added(client, session, staff, db):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    bad = client.post(
        f"/staff/emergencies/{emergency.id}/needs",
        data={"item_name": "Одеяла", "sector": "shelter", "unit": "pcs", "quantity": "много",
              "priority": "high", "deliver_to": "", "needed_by": "утре", "csrf_token": token},
    )  # fmt: skip
    assert bad.status_code == 422
    assert re.search(r'id="need-quantity-error"[^>]*>Enter a number', bad.text)
    assert re.search(r'id="need-needed_by-error"[^>]*>Enter a date and time.<', bad.text)
    assert re.search(r'id="need-deliver_to-error"[^>]*>This field is required.<', bad.text)
    assert 'value="много"' in bad.text and 'value="Одеяла"' in bad.text
    half = client.post(
        f"/staff/emergencies/{emergency.id}/needs",
        data={"item_name": "Одеяла", "sector": "shelter", "unit": "pcs", "quantity": "2.5", "priority": "high",
              "deliver_to": "Училище", "csrf_token": token},
    )  # fmt: skip
    assert half.status_code == 422, "the rules' refusal (whole pieces) is shown beside the field"
    assert re.search(r'id="need-quantity-error"[^>]*>This unit is counted in whole numbers.<', half.text)
    assert db.all(select(Need)) == []


# --- refusals by the rules -----------------------------------------------------------------------


def test_accepting_more_than_offered_and_receiving_more_than_accepted_are_refused_on_the_page(
    client, session, staff, db
):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency, quantity=600)
    org = make_partner(session)
    offered = pledge(session, coordinator, need, org, 500)

    too_much = client.post(
        f"/staff/pledges/{offered.id}/accept", data={"accepted_quantity": "550", "csrf_token": token}
    )
    assert too_much.status_code == 422
    field = f'id="pledge{offered.id}-accept-accepted_quantity'
    assert re.search(rf'{field}-error"[^>]*>You cannot accept more than was offered.<', too_much.text)
    assert f'{field}" name="accepted_quantity" type="text" value="550"' in too_much.text, "the input is kept"
    assert db.get(offered).status == PledgeStatus.offered

    service.accept(session=session, actor=coordinator, pledge=offered, data=AcceptBody(accepted_quantity=300))
    service.record_receipt(session=session, actor=coordinator, pledge=offered, data=ReceiptCreate(quantity=100))
    over = client.post(
        f"/staff/pledges/{offered.id}/receipts",
        data={"quantity": "250", "received_by": "Склад", "csrf_token": token},
    )
    assert over.status_code == 409
    assert "Only 200 l of this pledge are still to arrive." in over.text
    assert f'id="pledge{offered.id}-receipt-quantity" name="quantity" type="text" value="250"' in over.text
    assert 'value="Склад"' in over.text
    assert [r.quantity for r in db.all(select(Receipt))] == [100]
    assert db.get(offered).status == PledgeStatus.accepted

    # The need cannot shrink below what is pledged; the edit form keeps what was typed.
    edit = client.post(
        f"/staff/needs/{need.id}/edit",
        data={**need_form(need), "quantity": "200", "csrf_token": token},
    )
    assert edit.status_code == 409
    assert re.search(r'id="edit-quantity-error"[^>]*>300 l are already pledged', edit.text)
    assert 'id="edit-quantity" name="quantity" type="text" value="200"' in edit.text
    assert db.get(need).quantity == 600


def test_a_need_is_edited_opened_closed_and_cancelled_from_its_page(client, session, staff, db):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    draft = service.add_need(
        session=session, actor=coordinator, emergency=emergency,
        data=NeedCreate(item_name="Одеяла", sector="shelter", unit="pcs", quantity=300, deliver_to="Училище"),
    )  # fmt: skip
    edited = client.post(
        f"/staff/needs/{draft.id}/edit",
        data={**need_form(draft), "quantity": "350", "priority": "high", "needed_by": "2030-01-10T08:00",
              "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert edited.status_code == 303, edited.text
    draft = db.get(draft)
    assert (draft.quantity, draft.priority, draft.needed_by) == (350, "high", datetime(2030, 1, 10, 6, tzinfo=UTC))
    blank = client.post(
        f"/staff/needs/{draft.id}/edit", data={**need_form(draft), "item_name": " ", "csrf_token": token}
    )
    assert blank.status_code == 422
    assert re.search(r'id="edit-item_name-error"[^>]*>This field cannot be empty.<', blank.text)

    short = client.post(f"/staff/needs/{draft.id}/cancel", data={"reason": "x", "csrf_token": token})
    assert short.status_code == 422, "a reason is required"
    assert db.get(draft).status == NeedStatus.draft
    assert client.post(f"/staff/needs/{draft.id}/open", data={"csrf_token": token}).status_code == 200
    assert db.get(draft).status == NeedStatus.open
    again = client.post(f"/staff/needs/{draft.id}/open", data={"csrf_token": token})
    assert again.status_code == 409
    assert "Only a draft need can be opened." in again.text
    closed = client.post(f"/staff/needs/{draft.id}/close", data={"reason": "", "csrf_token": token})
    assert closed.status_code == 200, "closed; the page follows the redirect"
    assert db.get(draft).status == NeedStatus.closed

    other = add_need(session, coordinator, emergency)
    cancelled = client.post(
        f"/staff/needs/{other.id}/cancel", data={"reason": "Водата дойде от областта", "csrf_token": token}
    )
    assert cancelled.status_code == 200
    other = db.get(other)
    assert (other.status, other.status_reason) == (NeedStatus.cancelled, "Водата дойде от областта")


def test_pledges_are_declined_dispatched_and_cancelled_from_the_need_page(client, session, staff, db):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency)
    first, second = make_partner(session), make_partner(session)
    declined, accepted = pledge(session, coordinator, need, first, 100), pledge(session, coordinator, need, second, 200)
    service.accept(session=session, actor=coordinator, pledge=accepted, data=AcceptBody())

    assert client.post(f"/staff/pledges/{declined.id}/decline", data={"csrf_token": token}).status_code == 422
    assert client.post(
        f"/staff/pledges/{declined.id}/decline", data={"reason": "Не е нужно", "csrf_token": token}
    ).status_code == 200  # fmt: skip
    assert db.get(declined).status == PledgeStatus.declined
    assert client.post(f"/staff/pledges/{accepted.id}/dispatch", data={"csrf_token": token}).status_code == 200
    assert db.get(accepted).status == PledgeStatus.in_transit
    twice = client.post(f"/staff/pledges/{accepted.id}/dispatch", data={"csrf_token": token})
    assert twice.status_code == 409
    assert "Only an accepted pledge can be dispatched." in twice.text
    assert client.post(
        f"/staff/pledges/{accepted.id}/cancel", data={"reason": "Пътят е затворен", "csrf_token": token}
    ).status_code == 200  # fmt: skip
    assert db.get(accepted).status == PledgeStatus.cancelled


# --- the board's other parts ---------------------------------------------------------------------


def test_offers_are_turned_into_pledges_or_declined_from_the_board(client, session, staff, db):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency, quantity=600)
    kg_need = add_need(session, coordinator, emergency, item_name="Брашно", sector="food", unit="kg", quantity=50)
    org = make_partner(session, name="Фирма „Склад“ ООД", kind="business")
    water = service.create_offer(
        session=session, actor=coordinator, organisation=org,
        data=OfferCreate(item_name="Минерална вода", sector="water", unit="l", quantity=800),
    )  # fmt: skip
    spare = service.create_offer(
        session=session, actor=coordinator, organisation=org,
        data=OfferCreate(item_name="Палатки", sector="shelter", unit="pcs", quantity=5),
    )  # fmt: skip

    board = client.get(f"/staff/emergencies/{emergency.id}").text
    convert_form = board.split(f'id="offer-{water.id}"')[1].split("</article>")[0]
    assert f'<option value="{need.id}"' in convert_form
    assert f'<option value="{kg_need.id}"' not in convert_form, "only needs counted in the offer's unit"
    assert "Фирма „Склад“ ООД" in board

    deliver_by = local_input_value(utcnow() + timedelta(days=1))
    too_much = client.post(
        f"/staff/emergencies/{emergency.id}/offers/{water.id}/convert",
        data={"need_id": str(need.id), "quantity": "", "deliver_by": deliver_by, "csrf_token": token},
    )
    assert too_much.status_code == 409
    assert f"Need {need.id} has 600 l left; the pledge offers 800." in too_much.text
    assert re.search(rf'<option value="{need.id}"\s+selected>', too_much.text), "the chosen need is kept"
    assert db.get(water).status == OfferStatus.offered
    wrong_unit = client.post(
        f"/staff/emergencies/{emergency.id}/offers/{water.id}/convert",
        data={"need_id": str(kg_need.id), "deliver_by": deliver_by, "csrf_token": token},
    )
    assert wrong_unit.status_code == 422
    assert db.all(select(Pledge)) == []

    converted = client.post(
        f"/staff/emergencies/{emergency.id}/offers/{water.id}/convert",
        data={"need_id": str(need.id), "quantity": "600", "deliver_by": deliver_by, "csrf_token": token},
        follow_redirects=False,
    )
    assert converted.status_code == 303, converted.text
    made = db.one(select(Pledge))
    assert (made.need_id, made.status, made.accepted_quantity, made.offer_id) == (
        need.id, PledgeStatus.accepted, 600, water.id,
    )  # fmt: skip

    declined = client.post(
        f"/staff/emergencies/{emergency.id}/offers/{spare.id}/decline",
        data={"reason": "Не са нужни", "csrf_token": token},
        follow_redirects=False,
    )
    assert declined.status_code == 303
    assert db.get(spare).status == OfferStatus.declined
    assert "No offers are waiting." in client.get(f"/staff/emergencies/{emergency.id}").text


def test_overdue_pledges_are_listed_with_their_organisation_and_how_late(client, session, staff):
    coordinator, _ = staff
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency)
    org = make_partner(session, name="Сдружение „Закъснели“")
    late = pledge(session, coordinator, need, org, 100)
    service.accept(session=session, actor=coordinator, pledge=late, data=AcceptBody())
    session.execute(sa.update(Pledge).where(Pledge.id == late.id).values(deliver_by=utcnow() - timedelta(hours=5)))
    session.commit()

    board = client.get(f"/staff/emergencies/{emergency.id}").text
    overdue = board.split('id="overdue"')[1].split('id="offers"')[0]
    assert "Сдружение „Закъснели“" in overdue
    assert "5 hours" in overdue
    assert f'href="/staff/needs/{need.id}#pledge-{late.id}"' in overdue


def test_closing_asks_for_confirmation_and_closes_the_open_needs(client, session, staff, db):
    coordinator, token = staff
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency)
    unconfirmed = client.post(f"/staff/emergencies/{emergency.id}/close", data={"csrf_token": token})
    assert unconfirmed.status_code == 422
    assert 'id="close-confirm-error"' in unconfirmed.text
    assert db.get(emergency).status == EmergencyStatus.active

    stood_down = client.post(f"/staff/emergencies/{emergency.id}/stand-down", data={"csrf_token": token})
    assert stood_down.status_code == 200
    assert db.get(emergency).status == EmergencyStatus.stood_down
    again = client.post(f"/staff/emergencies/{emergency.id}/stand-down", data={"csrf_token": token})
    assert again.status_code == 409
    assert "Only an active emergency can be stood down." in again.text

    closed = client.post(f"/staff/emergencies/{emergency.id}/close", data={"confirm": "on", "csrf_token": token})
    assert closed.status_code == 200
    assert db.get(emergency).status == EmergencyStatus.closed
    assert db.get(need).status == NeedStatus.closed
    assert "Add a need" not in closed.text


def test_the_hxl_exports_download_with_the_cookie_login(client, session, staff):
    coordinator, _ = staff
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency)
    pledge(session, coordinator, need, make_partner(session), 100)
    needs = client.get(f"/staff/emergencies/{emergency.id}/export.csv")
    assert needs.status_code == 200
    assert needs.headers["content-type"].startswith("text/csv")
    assert needs.text.splitlines()[1].startswith("#meta+id,#crisis+name,#item+name")
    pledges = client.get(f"/staff/emergencies/{emergency.id}/export.csv?rows=pledges")
    assert pledges.status_code == 200
    assert "#org+name" in pledges.text.splitlines()[1]
    assert len(pledges.text.splitlines()) == 3


def test_the_board_asks_the_database_the_same_number_of_times_for_3_needs_as_for_30(client, session, staff, engine):
    coordinator, _ = staff
    small, big = declare(session, coordinator, title="Малко"), declare(session, coordinator, title="Голямо")
    org = make_partner(session)
    for emergency, count in ((small, 3), (big, 30)):
        for i in range(count):
            need = add_need(session, coordinator, emergency, item_name=f"Нужда {i}", quantity=100)
            accepted = pledge(session, coordinator, need, org, 40)
            service.accept(session=session, actor=coordinator, pledge=accepted, data=AcceptBody())
            service.record_receipt(session=session, actor=coordinator, pledge=accepted, data=ReceiptCreate(quantity=10))
            pledge(session, coordinator, need, org, 30)
        service.create_offer(
            session=session, actor=coordinator, organisation=org,
            data=OfferCreate(item_name="Вода", sector="water", unit="l", quantity=5),
        )  # fmt: skip
    session.close()

    def statements(emergency: Emergency) -> int:
        seen: list[str] = []

        def count(conn, cursor, statement, *args) -> None:
            seen.append(statement)

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            assert client.get(f"/staff/emergencies/{emergency.id}").status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    assert statements(small) == statements(big)


# --- the helper for datetime-local ---------------------------------------------------------------


def test_a_datetime_local_value_is_read_as_sofia_time_and_stored_as_utc():
    assert parse_local_datetime("2026-01-15T14:30") == datetime(2026, 1, 15, 12, 30, tzinfo=UTC)  # EET, UTC+2
    assert parse_local_datetime("2026-07-15T14:30") == datetime(2026, 7, 15, 11, 30, tzinfo=UTC)  # EEST, UTC+3
    assert parse_local_datetime("2026-11-25T00:15") == datetime(2026, 11, 24, 22, 15, tzinfo=UTC)
    assert parse_local_datetime("2026-07-15T14:30:45") == datetime(2026, 7, 15, 11, 30, 45, tzinfo=UTC)
    # 03:30 on 25 October 2026 happens twice in Sofia: the first (summer) one is meant.
    assert parse_local_datetime("2026-10-25T03:30") == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert parse_local_datetime("  ") is None
    for wrong in ("утре", "2026-13-01T10:00", "2026-02-30T10:00", "14:30"):
        with pytest.raises(ValueError, match="Not a date and time"):
            parse_local_datetime(wrong)
    # And back, for a form shown again: the local wall-clock time.
    assert local_input_value(datetime(2026, 7, 15, 11, 30, tzinfo=UTC)) == "2026-07-15T14:30"
    assert local_input_value(datetime(2026, 1, 15, 12, 30, tzinfo=UTC)) == "2026-01-15T14:30"
    assert local_input_value(None) == ""


# --- who may ------------------------------------------------------------------------------------


def test_communications_read_the_list_but_not_the_board_nor_act(client, session, db):
    coordinator = make_user(session, "coordinator")
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency)
    press = make_user(session, "communications")
    token = page_login(client, press)
    listing = client.get("/staff/emergencies")
    assert listing.status_code == 200
    assert emergency.title in listing.text
    assert 'action="/staff/emergencies"' not in listing.text, "no declare form"
    assert f'href="/staff/emergencies/{emergency.id}"' not in listing.text
    assert client.get(f"/staff/emergencies/{emergency.id}").status_code == 403
    assert client.get(f"/staff/needs/{need.id}").status_code == 403
    assert client.get(f"/staff/emergencies/{emergency.id}/export.csv").status_code == 403
    declared = client.post(
        "/staff/emergencies",
        data={"title": "Друго", "kind": "flood", "area": "Град", "severity": "minor", "csrf_token": token},
    )
    assert declared.status_code == 403
    assert len(db.all(select(Emergency))) == 1


def test_a_partner_gets_403_on_every_staff_emergency_page(client, session, db):
    coordinator = make_user(session, "coordinator")
    emergency = declare(session, coordinator)
    need = add_need(session, coordinator, emergency)
    org = make_partner(session)
    offered = pledge(session, coordinator, need, org, 100)
    offer = service.create_offer(
        session=session, actor=coordinator, organisation=org,
        data=OfferCreate(item_name="Вода", sector="water", unit="l", quantity=5),
    )  # fmt: skip
    partner = make_user(session, "partner", organisation=org)
    token = page_login(client, partner)
    for path in (
        "/staff/emergencies",
        f"/staff/emergencies/{emergency.id}",
        f"/staff/emergencies/{emergency.id}/export.csv",
        f"/staff/needs/{need.id}",
    ):
        assert client.get(path).status_code == 403, path
    for path, data in (
        ("/staff/emergencies", {"title": "Т", "kind": "flood", "area": "Г", "severity": "minor"}),
        (f"/staff/emergencies/{emergency.id}/stand-down", {}),
        (f"/staff/emergencies/{emergency.id}/close", {"confirm": "on"}),
        (f"/staff/emergencies/{emergency.id}/needs", {"item_name": "Х", "sector": "food", "unit": "kg",
                                                     "quantity": "1", "deliver_to": "Т"}),
        (f"/staff/emergencies/{emergency.id}/offers/{offer.id}/decline", {"reason": "Без причина"}),
        (f"/staff/needs/{need.id}/cancel", {"reason": "Без причина"}),
        (f"/staff/pledges/{offered.id}/accept", {}),
        (f"/staff/pledges/{offered.id}/decline", {"reason": "Без причина"}),
    ):  # fmt: skip
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert db.get(emergency).status == EmergencyStatus.active
    assert db.get(offered).status == PledgeStatus.offered
    assert db.get(offer).status == OfferStatus.offered
    assert len(db.all(select(Need))) == 1
