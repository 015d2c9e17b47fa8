"""Builders of logistics data through the service layer, in any state a test needs, by id.

Each call works in its own short session, so no transaction stays open while the app serves the test's
requests (on SQLite the test's writer would hold the database's write lock against the app).
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from service.db import utcnow, write_engine
from service.emergencies import service
from service.emergencies.models import (
    AcceptBody,
    Emergency,
    EmergencyCreate,
    Need,
    NeedCreate,
    OfferCreate,
    PledgeCreate,
    ReceiptCreate,
)
from service.partners.models import Organisation
from service.users.models import User

T = TypeVar("T", bound=SQLModel)

# The states `Logistics.pledge` can build; `partial` is in transit with part of it received.
PLEDGE_STATES = (
    "offered", "accepted", "in_transit", "partial", "delivered", "declined", "withdrawn", "expired", "cancelled",
)  # fmt: skip


def later(hours: float = 24) -> datetime:
    return utcnow() + timedelta(hours=hours)


def iso(hours: float = 24) -> str:
    """A time `hours` from now as the API takes it."""
    return later(hours).isoformat()


class Logistics:
    """Emergencies, needs, pledges and offers made by `actor` (a coordinator), returned as ids."""

    def __init__(self, engine: Engine, actor: User) -> None:
        self.engine = engine
        self.actor = actor

    def session(self) -> Session:
        return Session(write_engine(self.engine), expire_on_commit=False)

    def get(self, table: type[T], row_id: int) -> T:
        """The row as stored now, read in a session of its own."""
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(table, row_id)

    def emergency(self, status: str = "active", **fields: Any) -> int:
        data = {"title": "Наводнение", "kind": "flood", "area": "Перник", "severity": "severe", **fields}
        with self.session() as s:
            emergency = service.declare(session=s, actor=self.actor, data=EmergencyCreate(**data))
            if status in ("stood_down", "closed"):
                service.stand_down(session=s, actor=self.actor, emergency=emergency)
            if status == "closed":
                service.close_emergency(session=s, actor=self.actor, emergency=emergency)
            return emergency.id

    def need(self, emergency_id: int, status: str = "open", **fields: Any) -> int:
        data = {"item_name": "Бутилирана вода", "sector": "water", "unit": "l", "quantity": 100,
                "deliver_to": "Училище „Христо Ботев“", **fields}  # fmt: skip
        with self.session() as s:
            emergency = s.get(Emergency, emergency_id)
            need = service.add_need(
                session=s, actor=self.actor, emergency=emergency, data=NeedCreate(**data), open_now=status != "draft"
            )
            if status == "closed":
                service.close_need(session=s, actor=self.actor, need=need, reason="Покрита")
            elif status == "cancelled":
                service.cancel_need(session=s, actor=self.actor, need=need, reason="Не е нужна")
            return need.id

    def pledge(
        self,
        need_id: int,
        organisation_id: int,
        state: str = "offered",
        quantity: Decimal | int | str = 10,
        accepted: Decimal | int | str | None = None,
        **fields: Any,
    ) -> int:
        """A pledge brought to `state` (one of PLEDGE_STATES) by the actions that lead there."""
        assert state in PLEDGE_STATES, state
        with self.session() as s:
            need, org = s.get(Need, need_id), s.get(Organisation, organisation_id)
            data = PledgeCreate(quantity=quantity, deliver_by=later(), **fields)
            pledge = service.create_pledge(session=s, actor=self.actor, need_id=need.id, organisation=org, data=data)
            if state in ("accepted", "in_transit", "partial", "delivered"):
                body = AcceptBody(accepted_quantity=accepted)
                service.accept(session=s, actor=self.actor, pledge=pledge, data=body)
            if state in ("in_transit", "partial"):
                service.dispatch(session=s, actor=self.actor, pledge=pledge)
            if state in ("partial", "delivered"):
                whole = pledge.accepted_quantity
                part = whole if state == "delivered" else (whole / 2).to_integral()
                service.record_receipt(session=s, actor=self.actor, pledge=pledge, data=ReceiptCreate(quantity=part))
            if state == "declined":
                service.decline(session=s, actor=self.actor, pledge=pledge, reason="Не е нужно")
            elif state == "withdrawn":
                service.withdraw(session=s, actor=self.actor, pledge=pledge)
            elif state == "cancelled":
                service.cancel(session=s, actor=self.actor, pledge=pledge, reason="Отменено")
            elif state == "expired":
                pledge.deliver_by = utcnow() - timedelta(minutes=1)
                s.add(pledge)
                s.commit()
                service.expire_offered_pledges(session=s)
            s.refresh(pledge)
            assert pledge.status == ("in_transit" if state == "partial" else state), (state, pledge.status)
            return pledge.id

    def offer(self, organisation_id: int, status: str = "offered", **fields: Any) -> int:
        data = {"item_name": "Одеяла", "sector": "shelter", "unit": "pcs", "quantity": 50, **fields}
        with self.session() as s:
            org = s.get(Organisation, organisation_id)
            offer = service.create_offer(session=s, actor=self.actor, organisation=org, data=OfferCreate(**data))
            if status == "declined":
                service.decline_offer(session=s, actor=self.actor, offer=offer, reason="Не е нужно")
            return offer.id

    def update(self, table: type[SQLModel], row_id: int, **values: Any) -> None:
        """Sets columns directly, as if time had passed (a deadline, a reminder's time)."""
        with self.session() as s:
            row = s.get(table, row_id)
            for name, value in values.items():
                setattr(row, name, value)
            s.add(row)
            s.commit()
