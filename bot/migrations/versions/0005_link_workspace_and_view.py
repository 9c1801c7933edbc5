"""links record their workspace (team and Enterprise Grid organisation) and the modal view
they were submitted from, unique per workspace

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = {"team_id": 32, "enterprise_id": 32, "view_id": 64}

# Never a copy of the table on SQLite: dropping the old one would break the foreign keys of
# link_history and jobs (enforced, and PRAGMA foreign_keys cannot change in a transaction).
# Plain ALTER TABLE adds these columns and, from SQLite 3.35, drops them.


def upgrade() -> None:
    with op.batch_alter_table("links", recreate="never") as batch:
        for name, length in _COLUMNS.items():
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        batch.create_index("ix_links_team_view", ["team_id", "view_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.drop_index("ix_links_team_view")
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
