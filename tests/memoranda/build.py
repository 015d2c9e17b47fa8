"""Builders of memoranda in a given state, through the service functions (the real rules and PDFs)."""

from datetime import timedelta

from sqlmodel import Session

from service.memoranda import documents, service
from service.memoranda.models import Memorandum, MemorandumCreate, MemorandumStatus, SignatureMethod
from service.partners.models import Organisation
from service.users.models import User

# What staff upload for a partner that signed on paper (the service keeps its SHA-256).
SCANNED_COPY = b"%PDF-1.7\n% a scanned, signed copy\n%%EOF\n"


def variables(kind: str = "logistics_support", language: str = "bg") -> dict:
    """Complete, valid variables of `kind`, as a client would send them (JSON values)."""
    import json

    clean, errors = documents.validate_variables(kind, documents.sample_variables(kind, language))
    assert not errors, errors
    return json.loads(documents.variables_json(clean))


def create_body(partners: list[Organisation], kind: str = "logistics_support", language: str = "bg", **overrides):
    """The JSON body of `POST /api/v1/memoranda`."""
    today = service.today()
    return {
        "template": kind,
        "language": language,
        "partner_ids": [p.id for p in partners],
        "variables": variables(kind, language),
        "signing_deadline": str(today + timedelta(days=14)),
        "valid_from": str(today),
        "valid_until": str(today + timedelta(days=365)),
        **overrides,
    }


def on_paper(party) -> dict:
    """How staff record a party's signature: a click for the municipality, the signed copy for a partner."""
    if party.organisation_id is None:
        return {}
    return {"method": SignatureMethod.upload, "scan": SCANNED_COPY}


def make_draft(
    session: Session, actor: User, partners: list[Organisation], kind: str = "logistics_support", **overrides
) -> Memorandum:
    data = MemorandumCreate.model_validate(create_body(partners, kind, **overrides))
    return service.create(session=session, actor=actor, data=data)


def issue(session: Session, actor: User, memorandum: Memorandum) -> Memorandum:
    pdf = service.render(session=session, memorandum=memorandum, draft=False)
    return service.issue(
        session=session, actor=actor, memorandum_id=memorandum.id, pdf=pdf, rendered_from=memorandum.updated_at
    )


def make_issued(session: Session, actor: User, partners: list[Organisation], **overrides) -> Memorandum:
    return issue(session, actor, make_draft(session, actor, partners, **overrides))


def sign_all(session: Session, actor: User, memorandum: Memorandum) -> Memorandum:
    """Every party signs (staff recording each); the final PDF is made as the request flow makes it."""
    for party in service.parties_of(session=session, memorandum=memorandum):
        if party.signed_at is None:
            memorandum = service.sign(
                session=session,
                actor=actor,
                memorandum=memorandum,
                organisation_id=party.organisation_id,
                signer_name="Мария Иванова",
                signer_title="Представител",
                **on_paper(party),
            )
    assert memorandum.status == MemorandumStatus.active
    pdf = service.final_pdf(session=session, memorandum=memorandum)
    return service.record_final(session=session, memorandum_id=memorandum.id, pdf=pdf) or memorandum


def make_active(session: Session, actor: User, partners: list[Organisation], **overrides) -> Memorandum:
    return sign_all(session, actor, make_issued(session, actor, partners, **overrides))
