"""an index for a requester's links expiring soon (App Home's "Expiring soon"): by workspace,
requester, status and expiry, so the section reads the few links due by then rather than
every unpaid link of the rep

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 07:30:00
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Kept in step with Link.__table_args__ (bot/links/tables.py).
_INDEX = "ix_links_scope_requester_expiry"
_COLUMNS = ["team_id", "enterprise_id", "requester_id", "status", "expires_at"]


def upgrade() -> None:
    op.create_index(_INDEX, "links", _COLUMNS)


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="links")
