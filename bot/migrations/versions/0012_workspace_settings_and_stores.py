"""workspace settings changed in Slack, XPay stores (secrets encrypted), the record of every
change, and the store each link was made with

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_settings",
        sa.Column("team_id", sa.String(length=32), primary_key=True),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
    )
    op.create_table(
        "xpay_stores",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=2000), nullable=True),
        sa.Column("account_id", sa.String(length=200), nullable=True),
        sa.Column("api_key", sa.Text(), nullable=True),
        sa.Column("hmac_secret", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.Text(), nullable=True),
        sa.Column("secrets_set", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("team_id", "name", name="uq_xpay_stores_team_name"),
    )
    op.create_index("ix_xpay_stores_team_id", "xpay_stores", ["team_id"])
    op.create_table(
        "settings_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("setting", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_settings_changes_team_id", "settings_changes", ["team_id"])
    # Plain ALTER TABLE, never a copy of links (see 0005).
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.add_column(sa.Column("store_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.drop_column("store_id")
    op.drop_index("ix_settings_changes_team_id", "settings_changes")
    op.drop_table("settings_changes")
    op.drop_index("ix_xpay_stores_team_id", "xpay_stores")
    op.drop_table("xpay_stores")
    op.drop_table("workspace_settings")
