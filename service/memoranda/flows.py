"""Issuing and signing as a request runs them, for the API and the pages alike: the slow PDF work happens
outside any write transaction (and outside SQLite's queue of writing requests), so a memorandum being
issued never holds up a pledge.
"""

import logging

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from service.auth import logged_in_user
from service.db import request_session
from service.memoranda import service
from service.memoranda.deps import load_coordinated, load_visible
from service.memoranda.models import Memorandum, MemorandumStatus, SignatureMethod
from service.users.models import User

log = logging.getLogger("accord.memoranda")


async def issue(request: Request, memorandum_id: int) -> Memorandum:
    """Renders the draft from a reading session, then issues it if it did not change meanwhile."""

    def render(session) -> tuple[User, bytes, object]:
        user = logged_in_user(request, session)
        memorandum = load_coordinated(session, user, memorandum_id)
        service.check_issuable(memorandum)
        return user, service.render(session=session, memorandum=memorandum, draft=False), memorandum.updated_at

    async with request_session(request, write=False) as reader:
        user, pdf, rendered_from = await run_in_threadpool(render, reader)
    async with request_session(request, write=True) as writer:
        return await run_in_threadpool(
            lambda: service.issue(
                session=writer, actor=user, memorandum_id=memorandum_id, pdf=pdf, rendered_from=rendered_from
            )
        )


async def sign(
    request: Request,
    memorandum_id: int,
    *,
    organisation_id: int | None,
    signer_name: str,
    signer_title: str,
    method: SignatureMethod = SignatureMethod.click,
    scan: bytes | None = None,
) -> Memorandum:
    """Records a signature; the last one also gets the memorandum its final PDF (after the commit)."""

    def record(session) -> Memorandum:
        user = logged_in_user(request, session)
        memorandum = load_visible(session, user, memorandum_id)
        return service.sign(
            session=session,
            actor=user,
            memorandum=memorandum,
            organisation_id=organisation_id,
            signer_name=signer_name,
            signer_title=signer_title,
            method=method,
            scan=scan,
        )

    async with request_session(request, write=True) as writer:
        memorandum = await run_in_threadpool(record, writer)
    if memorandum.status == MemorandumStatus.active:
        await finalise(request, memorandum.id)
    return memorandum


async def finalise(request: Request, memorandum_id: int) -> None:
    """Makes and stores the final PDF; a failure is logged and left to the `memoranda.finalise` job."""
    try:
        async with request_session(request, write=False) as reader:
            pdf = await run_in_threadpool(
                lambda: service.final_pdf(
                    session=reader, memorandum=service.get(session=reader, memorandum_id=memorandum_id)
                )
            )
        async with request_session(request, write=True) as writer:
            await run_in_threadpool(lambda: service.record_final(session=writer, memorandum_id=memorandum_id, pdf=pdf))
    except Exception:
        log.exception("The final PDF of memorandum %s was not made; the finalise job will retry", memorandum_id)
