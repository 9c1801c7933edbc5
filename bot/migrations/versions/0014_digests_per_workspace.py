"""the daily digest per workspace in multi-workspace mode: digests.team_id and
digests.enterprise_id name the workspace a digest was taken for (None: the deployment's, in
single-workspace mode), so each workspace's "paid since the last digest" is its own
(issue 21/23)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_INDEX = "ix_digests_team_covered"


def upgrade() -> None:
    # Nullable columns with no default: the rows there are keep their keys (the day) and
    # stay the deployment's. Nothing points at digests, so SQLite's batch copy is safe.
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("team_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("enterprise_id", sa.String(length=32), nullable=True))
    op.create_index(_INDEX, "digests", ["team_id", "covered_until"])


def downgrade() -> None:
    # Versions before 0014 read every digest as the deployment's: a workspace's would move
    # their "paid since" (and they take no digest with several workspaces anyway).
    op.execute("DELETE FROM digests WHERE team_id IS NOT NULL")
    op.drop_index(_INDEX, table_name="digests")
    with op.batch_alter_table("digests") as batch:
        batch.drop_column("enterprise_id")
        batch.drop_column("team_id")
