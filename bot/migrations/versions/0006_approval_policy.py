"""the approval policy: each link's rule (approvals needed, the threshold that decided it),
the approvals of requests that need two, and an index for the duplicate guard

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# As 0005: plain ALTER TABLE, never a copy of links (the foreign keys on it are enforced).


def upgrade() -> None:
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.add_column(
            sa.Column("approvals_needed", sa.Integer(), nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("policy_threshold", sa.Numeric(14, 2), nullable=True))
        batch.create_index("ix_links_amount", ["amount", "currency"])
    op.create_table(
        "link_approvals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("link_id", sa.Integer(), sa.ForeignKey("links.id"), nullable=False),
        sa.Column("approver_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("link_id", "approver_id", name="uq_link_approvals"),
    )
    op.create_index("ix_link_approvals_link_id", "link_approvals", ["link_id"])


def downgrade() -> None:
    op.drop_index("ix_link_approvals_link_id", table_name="link_approvals")
    op.drop_table("link_approvals")
    with op.batch_alter_table("links", recreate="never") as batch:
        batch.drop_index("ix_links_amount")
        batch.drop_column("policy_threshold")
        batch.drop_column("approvals_needed")
