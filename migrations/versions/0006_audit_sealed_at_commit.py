"""the audit chain sealed at commit by PostgreSQL itself; a need's live total read after its lock

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 00:20:00

On PostgreSQL every writing transaction takes the audit chain's lock in turn. Taken by the app, the
lock was held while the app's thread, among dozens, waited for its turn to send COMMIT: under a surge of
pledges nearly all of them queued on it. Now the app inserts its entries into `audit_pending`, and a
deferred trigger moves them into the chain as the transaction commits: the lock is held for that and the
commit's flush only, with no round trip to the app in between. SQLite's writer holds the whole database
from its first statement anyway; there the app seals the entries itself and `audit_pending` stays empty.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Moves one pending entry into the chain: takes the chain's lock (key 0x4143434F5244, "ACCORD"; held to
# the end of the transaction), reads the head and inserts the entry after it, so ids follow the chain.
# `unsealed` is the entry's canonical JSON up to its predecessor's hash, which sorts last ('{...,"prev":"'):
# the hash is of that, the predecessor's hash and '"}', the SHA-256 that service.audit computes and verifies.
# Deferred row triggers fire in the order their rows were inserted: a transaction's entries stay in order.
SEAL = """
CREATE OR REPLACE FUNCTION accord_audit_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text;
BEGIN
    PERFORM pg_advisory_xact_lock(71757147886148);
    SELECT hash INTO head FROM audit_entry ORDER BY id DESC LIMIT 1;
    head := coalesce(head, repeat('0', 64));
    INSERT INTO audit_entry (at, actor_id, actor, action, entity, entity_id, before, after, prev_hash, hash)
    VALUES (
        NEW.at, NEW.actor_id, NEW.actor, NEW.action, NEW.entity, NEW.entity_id, NEW.before, NEW.after, head,
        encode(sha256(convert_to(NEW.unsealed || head || '"}', 'UTF8')), 'hex')
    );
    DELETE FROM audit_pending WHERE id = NEW.id;
    RETURN NULL;
END $$
"""
SEAL_AT_COMMIT = """
CREATE CONSTRAINT TRIGGER audit_pending_seal AFTER INSERT ON audit_pending
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION accord_audit_seal()
"""

# The live pledged total of a need, in hundredths: the rule of `Pledge.counted` and `counted_quantity()`.
# VOLATILE, so its query takes a fresh snapshot: called on a row just locked, it counts the pledges of
# the transaction the lock waited for, which the locking statement's own snapshot does not see.
PLEDGED = """
CREATE OR REPLACE FUNCTION accord_pledged(need integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (
        SELECT coalesce(sum(CASE
            WHEN status IN ('accepted', 'in_transit', 'delivered') THEN accepted_quantity
            WHEN status = 'offered' THEN quantity
            ELSE 0 END), 0)
        FROM pledge WHERE need_id = need
    );
END $$
"""


def upgrade() -> None:
    op.create_table('audit_pending',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('entity', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('entity_id', sa.Integer(), nullable=True),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('unsealed', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_pending'))
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(SEAL)
        op.execute(SEAL_AT_COMMIT)
        op.execute(PLEDGED)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION accord_pledged(integer)')
        op.execute('DROP TRIGGER audit_pending_seal ON audit_pending')
        op.execute('DROP FUNCTION accord_audit_seal()')
    op.drop_table('audit_pending')
