"""links expire and are renewed: every XPay intent of a link in link_intents (the first and
one per renewal, each with its order reference); links record the current one's reference
and expiry

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Every link created so far has had one intent: its own reference, created with the link.
# Those already paid were paid on it. They have no expiry: it starts with this version.
_BACKFILL = """
INSERT INTO link_intents (link_id, intent_id, reference, checkout_url, created_at, paid_at)
SELECT id, intent_id, reference, checkout_url, created_at,
       CASE WHEN status = 'paid' THEN updated_at END
FROM links WHERE intent_id IS NOT NULL
"""


def upgrade() -> None:
    op.create_table(
        "link_intents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("intent_id", sa.String(length=200), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("checkout_url", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["link_id"], ["links.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("intent_id"),
        sa.UniqueConstraint("reference"),
    )
    op.create_index("ix_link_intents_link_id", "link_intents", ["link_id"], unique=False)
    # In place (see 0005): a copy of links would break the foreign keys pointing at it.
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.add_column(sa.Column("checkout_reference", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(_BACKFILL)
    op.execute("UPDATE links SET checkout_reference = reference WHERE intent_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("checkout_reference")
    op.drop_table("link_intents")
