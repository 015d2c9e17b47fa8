"""The front page and the staff dashboard: they read the domains and own nothing."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import func, select

from service.auth import CurrentUser
from service.config import settings
from service.db import SessionDep
from service.emergencies.models import KIND_LABELS, SEVERITY_LABELS, EmergencyStatus
from service.emergencies.service import list_emergencies
from service.errors import Forbidden
from service.i18n import N_
from service.partners.models import Organisation, VerificationStatus
from service.partners.service import due_for_reverification
from service.web import redirect, render

router = APIRouter(include_in_schema=False)


@router.get("/staff", response_class=HTMLResponse)
def dashboard(request: Request, user: CurrentUser, session: SessionDep) -> Response:
    if not user.is_staff:
        if user.organisation_id is not None:
            return redirect("/portal")
        raise Forbidden(N_("Your role does not allow this."))
    counts = dict(
        session.exec(
            select(Organisation.verification_status, func.count()).group_by(Organisation.verification_status)
        ).all()
    )
    due = due_for_reverification(session=session, older_than_days=settings.reverification_days, unreminded_only=False)
    active, active_total = list_emergencies(session=session, status=EmergencyStatus.active, limit=10)
    return render(
        request,
        "staff/dashboard.html",
        {"counts": {status: counts.get(status, 0) for status in VerificationStatus}, "due": due,
         "emergencies": active, "emergencies_total": active_total,
         "emergency_labels": {"kinds": KIND_LABELS, "severities": SEVERITY_LABELS}},
    )  # fmt: skip
