"""Queueing e-mail in the outbox and delivering it by SMTP, with retries that back off."""

import smtplib
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import sqlalchemy as sa
from sqlmodel import Session, col, select, update

from service.config import Settings
from service.db import utcnow
from service.notifications.models import OutboxMessage, OutboxStatus

MAX_ATTEMPTS = 8
# A claim older than this belongs to a sender that died mid-send: the message is due again.
STALE_CLAIM = timedelta(minutes=10)


def enqueue(*, session: Session, to_address: str, subject: str, body: str, dedupe_key: str | None = None) -> bool:
    """Adds a message to the outbox in the caller's transaction; False if its dedupe key was queued before."""
    if dedupe_key is not None:
        exists = session.exec(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)).first()
        if exists is not None:
            return False
    session.add(OutboxMessage(to_address=to_address, subject=subject, body=body, dedupe_key=dedupe_key))
    return True


def backoff(attempts: int) -> timedelta:
    """How long to wait before the next try: 30 s, 1 min, 2 min, ... at most 6 h."""
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 6 * 3600))


def _claim(session: Session, message_id: int) -> OutboxMessage | None:
    """Takes a due message for this sender; None if another sender took it first."""
    now = utcnow()
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id) == message_id,
            sa.or_(
                # Still due: a racing sender that just failed it has pushed next_attempt_at out.
                sa.and_(col(OutboxMessage.status) == OutboxStatus.pending, col(OutboxMessage.next_attempt_at) <= now),
                sa.and_(
                    col(OutboxMessage.status) == OutboxStatus.sending, col(OutboxMessage.claimed_at) < now - STALE_CLAIM
                ),
            ),
        )
        .values(status=OutboxStatus.sending, claimed_at=now)
    )
    message = session.get(OutboxMessage, message_id, populate_existing=True) if result.rowcount == 1 else None
    if message is not None:
        # Detached, the commit cannot expire it, so reading it during the SMTP send opens no new transaction.
        session.expunge(message)
    session.commit()
    return message


def _build(message: OutboxMessage, settings: Settings) -> EmailMessage:
    email = EmailMessage()
    email["From"] = formataddr((settings.municipality_name, settings.smtp_from))
    email["To"] = message.to_address
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}")
    email.set_content(message.body)
    return email


def _deliver(email: EmailMessage, settings: Settings) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(email)


def send_due(*, session: Session, settings: Settings, limit: int = 100) -> int:
    """Sends the messages that are due; a failure is retried later, with back-off. Returns how many went."""
    now = utcnow()
    due = session.exec(
        select(OutboxMessage.id)
        .where(
            sa.or_(
                sa.and_(col(OutboxMessage.status) == OutboxStatus.pending, col(OutboxMessage.next_attempt_at) <= now),
                sa.and_(
                    col(OutboxMessage.status) == OutboxStatus.sending, col(OutboxMessage.claimed_at) < now - STALE_CLAIM
                ),
            )
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    session.commit()  # end the read snapshot: each claim is its own short transaction
    sent = 0
    for message_id in due:
        message = _claim(session, message_id)
        if message is None:
            continue
        try:  # no transaction is open while the SMTP server takes its time
            _deliver(_build(message, settings), settings)
        except (OSError, smtplib.SMTPException) as error:
            message.attempts += 1
            message.last_error = f"{type(error).__name__}: {error}"[:1000]
            if message.attempts >= MAX_ATTEMPTS:
                message.status = OutboxStatus.failed
            else:
                message.status = OutboxStatus.pending
                message.next_attempt_at = utcnow() + backoff(message.attempts)
        else:
            message.status = OutboxStatus.sent
            message.sent_at = utcnow()
            message.attempts += 1
            sent += 1
        session.add(message)
        session.commit()
    return sent
