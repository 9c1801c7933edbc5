"""the sandbox's own keys per database; links say whether they were made on the sandbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("api_key", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("hmac_secret", sa.String(length=64), nullable=False),
        sa.Column("webhook_secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.add_column(
            sa.Column("sandbox", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    # Dropped in place (SQLite 3.35+): recreating the table would break the foreign keys of
    # the history and jobs rows that point at it.
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.drop_column("sandbox")
    op.drop_table("sandbox_keys")
