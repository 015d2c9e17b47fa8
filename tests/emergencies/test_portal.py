"""The partner portal's logistics pages: open needs, pledging through the form, the organisation's pledges
and offers, and who may see them. Messages are checked in English (the catalogue changes on its own)."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.db import utcnow
from service.emergencies import service
from service.emergencies.models import (
    AcceptBody,
    Emergency,
    EmergencyCreate,
    Need,
    NeedCreate,
    Offer,
    Pledge,
    PledgeCreate,
    PledgeStatus,
    ReceiptCreate,
)
from service.i18n import local_input_value, parse_local_datetime
from service.partners import service as partners
from service.partners.models import Organisation
from service.users.models import User
from tests.factories import make_partner, make_user, page_login

SOFIA = ZoneInfo("Europe/Sofia")


def declare(session: Session, actor: User, title: str = "Наводнение в кв. „Изток“") -> Emergency:
    data = EmergencyCreate(title=title, kind="flood", area="кв. „Изток“", severity="severe")
    return service.declare(session=session, actor=actor, data=data)


def add_need(session: Session, actor: User, emergency: Emergency, *, open_now: bool = True, **overrides) -> Need:
    fields = {
        "item_name": "Бутилирана вода", "sector": "water", "unit": "l", "quantity": Decimal(100),
        "priority": "normal", "deliver_to": "Училище „Христо Ботев“", "needed_by": utcnow() + timedelta(days=2),
        **overrides,
    }  # fmt: skip
    return service.add_need(
        session=session, actor=actor, emergency=emergency, data=NeedCreate(**fields), open_now=open_now
    )


def pledge_on(session: Session, actor: User, need: Need, org: Organisation, quantity: int) -> Pledge:
    data = PledgeCreate(quantity=Decimal(quantity), deliver_by=utcnow() + timedelta(days=1))
    return service.create_pledge(session=session, actor=actor, need_id=need.id, organisation=org, data=data)


def local_in(days: int) -> str:
    """A `datetime-local` value `days` from now, in Sofia's time."""
    return local_input_value(utcnow() + timedelta(days=days))


def log_in(client: TestClient, user: User) -> str:
    client.cookies.set("accord_lang", "en")
    return page_login(client, user)


def section(html: str, element_id: str) -> str:
    """The HTML of the element with this id, up to the end of its section or row."""
    start = html.index(f'id="{element_id}"')
    ends = [i for i in (html.find("</section>", start), html.find("</tr>", start)) if i != -1]
    return html[start : min(ends)]


def need_ids_shown(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<section class="need" id="need-(\d+)"', html)]


def stored(session: Session, model, **where) -> list:
    """Rows as the app left them. The read ends at once (the test's session is a writer, and on SQLite an open
    one would keep the app's requests waiting), and other objects are not expired, so using them reads nothing."""
    query = select(model).execution_options(populate_existing=True)
    for field, value in where.items():
        query = query.where(getattr(model, field) == value)
    rows = list(session.exec(query))
    session.commit()
    return rows


@pytest.fixture
def world(session: Session):
    """A coordinator, an active emergency, a water organisation with its partner user, and a second one."""
    coordinator = make_user(session, "coordinator")
    water = make_partner(session, name="„Минерална вода Струма“ ЕООД", kind="business", sectors=["water"])
    other = make_partner(session, name="Фондация „Друга“", sectors=["food"])
    return {
        "coordinator": coordinator,
        "emergency": declare(session, coordinator),
        "org": water,
        "partner": make_user(session, "partner", organisation=water),
        "other": other,
        "other_partner": make_user(session, "partner", organisation=other),
    }


def test_partner_sees_open_needs_of_active_emergencies_own_sector_first(client, session, world):
    coord, emergency = world["coordinator"], world["emergency"]
    bread = add_need(session, coord, emergency, item_name="Хляб", sector="food", unit="pcs", priority="critical")
    water = add_need(session, coord, emergency, item_name="Вода", sector="water", priority="low")
    draft = add_need(session, coord, emergency, item_name="Чернова", open_now=False)
    closed = add_need(session, coord, emergency, item_name="Затворена")
    service.close_need(session=session, actor=coord, need=closed)
    calm = declare(session, coord, title="Отминала буря")
    of_calm = add_need(session, coord, calm, item_name="Одеяла", sector="shelter")
    service.stand_down(session=session, actor=coord, emergency=calm)

    token = log_in(client, world["partner"])
    page = client.get("/portal/needs")
    assert page.status_code == 200
    html = page.text
    assert need_ids_shown(html) == [water.id, bread.id]  # water is the organisation's sector, bread more urgent
    assert "Чернова" not in html and "Затворена" not in html and "Одеяла" not in html
    shown = section(html, f"need-{bread.id}")
    assert emergency.title in shown
    assert "Critical" in shown
    assert "100 pcs" in shown  # needed, and still open
    assert f'action="/portal/needs/{bread.id}/pledge"' in shown
    assert f'<progress id="need-{bread.id}-pledged"' in shown

    # A need partners cannot see is as missing as one that never existed.
    form = {"csrf_token": token, "quantity": "1", "deliver_by": local_in(1)}
    for hidden in (draft, closed, of_calm):
        assert client.post(f"/portal/needs/{hidden.id}/pledge", data=form).status_code == 404
    assert client.post("/portal/needs/999999/pledge", data=form).status_code == 404
    assert stored(session, Pledge) == []


def test_partner_pledges_through_the_form_and_sees_it_in_their_pledges(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"], quantity=Decimal(1200))
    token = log_in(client, world["partner"])
    next_year = utcnow().year + 1
    form = {
        "csrf_token": token,
        "quantity": "800",
        "available_from": f"{next_year}-01-14T09:00",
        "deliver_by": f"{next_year}-01-15T10:00",
        "note": "Два камиона.",
    }
    response = client.post(f"/portal/needs/{need.id}/pledge", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    [pledge] = stored(session, Pledge)
    assert response.headers["location"] == f"/portal/pledges?done=pledged#pledge-{pledge.id}"
    assert (pledge.quantity, pledge.status, pledge.organisation_id) == (Decimal(800), "offered", world["org"].id)
    # Sofia is UTC+2 in winter.
    assert pledge.deliver_by == datetime(next_year, 1, 15, 8, 0, tzinfo=UTC)
    assert pledge.available_from == datetime(next_year, 1, 14, 7, 0, tzinfo=UTC)
    assert pledge.note == "Два камиона."

    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert 'id="done-notice"' in page.text
    row = section(page.text, f"pledge-{pledge.id}")
    assert "Бутилирана вода" in row and world["emergency"].title in row
    assert "800 l" in row and "Offered" in row
    assert f'action="/portal/pledges/{pledge.id}/withdraw"' in row
    assert f'action="/portal/pledges/{pledge.id}/dispatch"' not in row  # not accepted yet

    # The needs page counts it.
    assert "400 l" in section(client.get("/portal/needs").text, f"need-{need.id}-remaining")


def test_a_quantity_is_read_in_the_readers_number_format(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"], unit="kg", quantity=Decimal(5000))
    token = page_login(client, world["partner"])  # Bulgarian, the default
    form = {"csrf_token": token, "quantity": "1 200,5", "deliver_by": local_in(1)}
    assert client.post(f"/portal/needs/{need.id}/pledge", data=form, follow_redirects=False).status_code == 303
    assert [p.quantity for p in stored(session, Pledge)] == [Decimal("1200.5")]
    refused = client.post(f"/portal/needs/{need.id}/pledge", data={**form, "quantity": "много"})
    assert refused.status_code == 422
    assert f'id="need-{need.id}-quantity-error"' in refused.text and 'value="много"' in refused.text


def test_an_over_pledge_shows_what_is_left_beside_the_form_and_stores_nothing(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"], quantity=Decimal(100))
    pledge_on(session, world["other_partner"], need, world["other"], 80)
    other_need = add_need(session, world["coordinator"], world["emergency"], item_name="Друга нужда")
    token = log_in(client, world["partner"])
    deliver_by = local_in(2)

    response = client.post(
        f"/portal/needs/{need.id}/pledge",
        data={"csrf_token": token, "quantity": "35", "deliver_by": deliver_by, "note": "Цистерна"},
    )
    assert response.status_code == 409
    shown = section(response.text, f"need-{need.id}")
    assert f"Need {need.id} has 20 l left; the pledge offers 35." in shown
    assert f'<p class="error" id="need-{need.id}-quantity-error" role="alert">Need {need.id} has 20' in shown
    assert 'value="35"' in shown and f'value="{deliver_by}"' in shown and "Цистерна</textarea>" in shown
    assert "<details open>" in shown
    # The other need's form is untouched.
    assert "<details open>" not in section(response.text, f"need-{other_need.id}")
    assert len(stored(session, Pledge, need_id=need.id)) == 1


@pytest.mark.parametrize(
    ("field", "form", "message"),
    [
        ("quantity", {"quantity": "2.5", "deliver_by": 2}, "This unit is counted in whole numbers."),
        ("deliver_by", {"quantity": "3", "deliver_by": -1}, "This time has already passed."),
        ("deliver_by", {"quantity": "3", "deliver_by": "25.11.2026 14:30"}, "Enter a date and time."),
        ("quantity", {"quantity": "0", "deliver_by": 2}, "The quantity must be more than zero."),
        ("quantity", {"quantity": "12.345", "deliver_by": 2}, "At most two decimal places."),
        ("deliver_by", {"quantity": "3"}, "This field is required."),
    ],
)
def test_a_refused_pledge_shows_the_message_beside_the_field_and_keeps_the_input(
    client, session, world, field, form, message
):
    need = add_need(session, world["coordinator"], world["emergency"], item_name="Одеяла", unit="pcs")
    token = log_in(client, world["partner"])
    if isinstance(form.get("deliver_by"), int):
        form = {**form, "deliver_by": local_in(form["deliver_by"])}
    response = client.post(f"/portal/needs/{need.id}/pledge", data={"csrf_token": token, **form})
    assert response.status_code == 422
    shown = section(response.text, f"need-{need.id}")
    error_id = f"need-{need.id}-{field}-error"
    assert f'<p class="error" id="{error_id}" role="alert">{message}</p>' in shown
    assert f'aria-invalid="true" aria-describedby="{error_id}"' in shown
    for value in form.values():
        assert f'value="{value}"' in shown
    assert stored(session, Pledge) == []


def test_withdraw_works_until_something_arrives_and_dispatch_once_accepted(client, session, world):
    coord, org, partner = world["coordinator"], world["org"], world["partner"]
    need = add_need(session, coord, world["emergency"], quantity=Decimal(1000))
    offered = pledge_on(session, partner, need, org, 100)
    received = pledge_on(session, partner, need, org, 200)
    service.accept(session=session, actor=coord, pledge=received, data=AcceptBody(accepted_quantity=Decimal(150)))
    service.record_receipt(session=session, actor=coord, pledge=received, data=ReceiptCreate(quantity=Decimal(50)))
    to_send = pledge_on(session, partner, need, org, 300)
    service.accept(session=session, actor=coord, pledge=to_send, data=AcceptBody())
    token = log_in(client, partner)

    page = client.get("/portal/pledges").text
    row = section(page, f"pledge-{received.id}")
    assert "200 l" in row and "150 l" in row and "50 l" in row  # offered, accepted, delivered
    assert "Partly delivered" in row
    assert "/withdraw" not in row  # something has arrived
    assert f'action="/portal/pledges/{to_send.id}/dispatch"' in section(page, f"pledge-{to_send.id}")

    withdrawn = client.post(
        f"/portal/pledges/{offered.id}/withdraw", data={"csrf_token": token}, follow_redirects=False
    )
    assert withdrawn.status_code == 303
    assert withdrawn.headers["location"] == f"/portal/pledges?done=withdrawn#pledge-{offered.id}"
    assert stored(session, Pledge, id=offered.id)[0].status == PledgeStatus.withdrawn
    assert "Withdrawn" in section(client.get("/portal/pledges").text, f"pledge-{offered.id}")

    refused = client.post(f"/portal/pledges/{received.id}/withdraw", data={"csrf_token": token, "offset": "0"})
    assert refused.status_code == 409
    message = "Part of this pledge has arrived: ask the staff to cancel the rest."
    assert f'<p class="error" id="pledge-{received.id}-error">{message}</p>' in refused.text
    assert 'id="refusal-notice"' in refused.text
    assert stored(session, Pledge, id=received.id)[0].status == PledgeStatus.accepted

    sent = client.post(f"/portal/pledges/{to_send.id}/dispatch", data={"csrf_token": token}, follow_redirects=False)
    assert sent.status_code == 303
    assert stored(session, Pledge, id=to_send.id)[0].status == PledgeStatus.in_transit
    again = client.post(f"/portal/pledges/{to_send.id}/dispatch", data={"csrf_token": token})
    assert again.status_code == 409
    assert "Only an accepted pledge can be dispatched." in section(again.text, f"pledge-{to_send.id}")


def test_pledges_are_listed_newest_first_a_page_at_a_time(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"])
    first, second, third = (pledge_on(session, world["partner"], need, world["org"], n) for n in (1, 2, 3))
    token = log_in(client, world["partner"])

    page_one = client.get("/portal/pledges?limit=2").text
    assert re.findall(r'<tr id="pledge-(\d+)"', page_one) == [str(third.id), str(second.id)]
    assert 'href="/portal/pledges?limit=2&offset=2"' in page_one
    page_two = client.get("/portal/pledges?limit=2&offset=2").text
    assert re.findall(r'<tr id="pledge-(\d+)"', page_two) == [str(first.id)]
    # An action on the second page comes back to it.
    form = {"csrf_token": token, "limit": "2", "offset": "2"}
    done = client.post(f"/portal/pledges/{first.id}/withdraw", data=form, follow_redirects=False)
    assert done.headers["location"] == f"/portal/pledges?done=withdrawn&limit=2&offset=2#pledge-{first.id}"


def test_declined_and_overdue_pledges_say_so(client, session, world):
    coord, org, partner = world["coordinator"], world["org"], world["partner"]
    need = add_need(session, coord, world["emergency"])
    declined = pledge_on(session, partner, need, org, 10)
    service.decline(session=session, actor=coord, pledge=declined, reason="Вече е покрито от общината.")
    late = pledge_on(session, partner, need, org, 20)
    service.accept(session=session, actor=coord, pledge=late, data=AcceptBody())
    late.deliver_by = utcnow() - timedelta(hours=1)  # the deadline passed with nothing received
    session.add(late)
    session.commit()
    log_in(client, partner)

    page = client.get("/portal/pledges").text
    assert "Reason: Вече е покрито от общината." in section(page, f"pledge-{declined.id}")
    assert "/withdraw" not in section(page, f"pledge-{declined.id}")
    assert 'class="late"' in section(page, f"pledge-{late.id}")
    assert 'class="late"' not in section(page, f"pledge-{declined.id}")


def test_another_organisations_pledge_is_not_there(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"])
    theirs = pledge_on(session, world["partner"], need, world["org"], 10)
    token = log_in(client, world["other_partner"])

    assert f"pledge-{theirs.id}" not in client.get("/portal/pledges").text
    for action in ("withdraw", "dispatch"):
        assert client.post(f"/portal/pledges/{theirs.id}/{action}", data={"csrf_token": token}).status_code == 404
    assert stored(session, Pledge, id=theirs.id)[0].status == PledgeStatus.offered


def test_an_unsolicited_offer_is_made_and_listed(client, session, world):
    token = log_in(client, world["partner"])
    assert 'action="/portal/offers"' in client.get("/portal/offers").text

    incomplete = {"csrf_token": token, "item_name": "Генератор 5 kW", "unit": "pcs", "quantity": "2"}
    refused = client.post("/portal/offers", data=incomplete)
    assert refused.status_code == 422
    assert '<p class="error" id="sector-error" role="alert">This field is required.</p>' in refused.text
    assert 'value="Генератор 5 kW"' in refused.text and '<option value="pcs" selected>' in refused.text
    assert stored(session, Offer) == []

    made = client.post("/portal/offers", data={**incomplete, "sector": "power"}, follow_redirects=False)
    assert made.status_code == 303
    [offer] = stored(session, Offer)
    assert made.headers["location"] == f"/portal/offers?done=offered#offer-{offer.id}"
    assert (offer.organisation_id, offer.sector, offer.quantity) == (world["org"].id, "power", Decimal(2))
    service.decline_offer(session=session, actor=world["coordinator"], offer=offer, reason="Няма нужда от генератори.")

    row = section(client.get("/portal/offers").text, f"offer-{offer.id}")
    assert "Генератор 5 kW" in row and "2 pcs" in row and "Power" in row
    assert "Declined" in row and "Reason: Няма нужда от генератори." in row
    log_in(client, world["other_partner"])
    assert f"offer-{offer.id}" not in client.get("/portal/offers").text


def test_a_suspended_organisation_is_told_and_cannot_pledge_or_offer(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"])
    partners.suspend(session=session, actor=world["coordinator"], org=world["org"], reason="Проверка на документите.")
    token = log_in(client, world["partner"])

    page = client.get("/portal/needs").text
    assert 'id="suspended-notice"' in page
    assert f'action="/portal/needs/{need.id}/pledge"' not in page
    response = client.post(
        f"/portal/needs/{need.id}/pledge", data={"csrf_token": token, "quantity": "5", "deliver_by": local_in(1)}
    )
    assert response.status_code == 409
    assert "A suspended organisation cannot pledge." in section(response.text, f"need-{need.id}")
    offer = {"csrf_token": token, "item_name": "Одеяла", "sector": "shelter", "unit": "pcs", "quantity": "5"}
    refused = client.post("/portal/offers", data=offer)
    assert refused.status_code == 409
    assert "A suspended organisation cannot make offers." in refused.text
    assert stored(session, Pledge) == [] and stored(session, Offer) == []


def test_only_partner_users_with_an_organisation_come_in(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"])
    for path in ("/portal/needs", "/portal/pledges", "/portal/offers"):
        anonymous = client.get(path, follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    token = log_in(client, world["coordinator"])
    for path in ("/portal/needs", "/portal/pledges", "/portal/offers"):
        assert client.get(path).status_code == 403
    form = {"csrf_token": token, "quantity": "5", "deliver_by": local_in(1)}
    assert client.post(f"/portal/needs/{need.id}/pledge", data=form).status_code == 403
    log_in(client, make_user(session, "partner"))  # no organisation
    assert client.get("/portal/needs").status_code == 403
    assert stored(session, Pledge) == []


def test_a_form_without_its_csrf_token_is_refused(client, session, world):
    need = add_need(session, world["coordinator"], world["emergency"])
    log_in(client, world["partner"])
    response = client.post(f"/portal/needs/{need.id}/pledge", data={"quantity": "5", "deliver_by": local_in(1)})
    assert response.status_code == 403
    assert stored(session, Pledge) == []


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2026-01-15T10:00", datetime(2026, 1, 15, 8, 0, tzinfo=UTC)),  # winter: UTC+2
        ("2026-07-15T10:00", datetime(2026, 7, 15, 7, 0, tzinfo=UTC)),  # summer: UTC+3
        ("2026-07-15T10:00:30", datetime(2026, 7, 15, 7, 0, 30, tzinfo=UTC)),
        ("2026-03-29T02:59", datetime(2026, 3, 29, 0, 59, tzinfo=UTC)),  # the last minute of winter time
        ("2026-03-29T04:00", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # the first hour of summer time
        ("2026-10-25T03:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # repeated hour: its summer reading
        (" 2026-12-31T23:59 ", datetime(2026, 12, 31, 21, 59, tzinfo=UTC)),
        ("", None),
    ],
)
def test_datetime_local_values_are_read_in_sofia_time(local, utc):
    assert parse_local_datetime(local) == utc
    if utc is not None:
        assert local_input_value(utc) == local.strip()[:16]


@pytest.mark.parametrize(
    "bad", ["tomorrow", "25.11.2026 14:30", "2026-02-30T10:00", "2026-01-15T25:00", "0001-01-01T00:00"]
)
def test_a_value_that_is_no_date_and_time_is_refused(bad):
    with pytest.raises(ValueError, match="Not a date and time"):
        parse_local_datetime(bad)
