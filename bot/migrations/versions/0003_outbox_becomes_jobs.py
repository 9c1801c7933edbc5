"""the outbox table becomes the job queue: table jobs, column done_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (old, new) names on PostgreSQL of what the table's own constraints and sequence are called
# after it; SQLite names none of them.
_POSTGRES_RENAMES = [
    ("INDEX", "{old}_pkey", "{new}_pkey"),
    ("INDEX", "{old}_dedupe_key_key", "{new}_dedupe_key_key"),
    ("SEQUENCE", "{old}_id_seq", "{new}_id_seq"),
]


def _rename(old: str, new: str, old_column: str, new_column: str) -> None:
    """Rename the table ``old`` to ``new`` and its column ``old_column``, with its indexes."""
    for index in ("link_id", "pending", "due"):
        op.drop_index(f"ix_{old}_{index}", table_name=old)
    op.rename_table(old, new)
    op.alter_column(new, old_column, new_column_name=new_column)
    op.create_index(f"ix_{new}_link_id", new, ["link_id"])
    op.create_index(f"ix_{new}_pending", new, [new_column, "next_attempt_at"])
    op.create_index(
        f"ix_{new}_due",
        new,
        ["next_attempt_at"],
        sqlite_where=sa.text(f"{new_column} IS NULL"),
        postgresql_where=sa.text(f"{new_column} IS NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for kind, before, after in _POSTGRES_RENAMES:
            op.execute(
                f"ALTER {kind} IF EXISTS {before.format(old=old)} RENAME TO {after.format(new=new)}"
            )
        op.execute(f"ALTER TABLE {new} RENAME CONSTRAINT {old}_link_id_fkey TO {new}_link_id_fkey")


def upgrade() -> None:
    _rename("outbox", "jobs", "delivered_at", "done_at")


def downgrade() -> None:
    _rename("jobs", "outbox", "done_at", "delivered_at")
