"""indexes for finding links: a workspace's links per requester and status, per status, in
id order (each for one requester or all), and by creation time (``/paylink list|find``, App
Home's pages, counts, search and month totals)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:00:00
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Kept in step with Link.__table_args__ (bot/links/tables.py).
_INDEXES = {
    "ix_links_scope_requester": ["team_id", "enterprise_id", "requester_id", "status", "id"],
    "ix_links_scope_status": ["team_id", "enterprise_id", "status", "id"],
    "ix_links_scope_requester_id": ["team_id", "enterprise_id", "requester_id", "id"],
    "ix_links_scope_id": ["team_id", "enterprise_id", "id"],
    "ix_links_scope_created": ["team_id", "enterprise_id", "created_at"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "links", columns)


def downgrade() -> None:
    for name in reversed(_INDEXES):
        op.drop_index(name, table_name="links")
