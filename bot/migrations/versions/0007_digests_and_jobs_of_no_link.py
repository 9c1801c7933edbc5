"""the daily digest: table digests (one row per digest, unique per day), and jobs.link_id
may be empty (the digest's post is a job of no link)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_DUE = "ix_jobs_due"


def _link_id_nullable(nullable: bool) -> None:
    # SQLite changes a column's NULL rule only by copying the table (nothing points at jobs,
    # so the copy breaks no foreign key). The partial index is made again by hand, so that
    # its WHERE clause does not depend on what the copy reflects.
    op.drop_index(_DUE, table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("link_id", existing_type=sa.Integer(), nullable=nullable)
    op.create_index(
        _DUE,
        "jobs",
        ["next_attempt_at"],
        sqlite_where=sa.text("done_at IS NULL"),
        postgresql_where=sa.text("done_at IS NULL"),
    )


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("covered_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_digests_covered_until", "digests", ["covered_until"])
    _link_id_nullable(True)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE link_id IS NULL")
    _link_id_nullable(False)
    op.drop_index("ix_digests_covered_until", table_name="digests")
    op.drop_table("digests")
