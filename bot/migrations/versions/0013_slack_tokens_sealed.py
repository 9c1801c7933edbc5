"""multi-workspace mode: the Slack token columns of slack_installations and slack_bots become
Text, to hold tokens sealed with PAYLINK_SECRET_KEY (issue 23)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 06:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# A Fernet token of a rotating bot token (xoxe.xoxb-…, some 150 characters) is about 300
# characters: more than the String(200) of 0011. The rows stay as they are: tokens stored in
# plain text before this are still read, and `paylink rotate-key` seals them.
_TOKENS = {
    "slack_installations": ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token"),
    "slack_bots": ("bot_token", "bot_refresh_token"),
}

# The tables have no foreign keys, so on SQLite (which cannot change a column's type) the
# batch copies them, indexes included.


def upgrade() -> None:
    for table, columns in _TOKENS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column,
                    type_=sa.Text(),
                    existing_type=sa.String(length=200),
                    existing_nullable=True,
                )


def downgrade() -> None:
    # Versions before 0013 would take a sealed token for a token (and PostgreSQL would not fit
    # it in 200 characters): refuse rather than leave workspaces with tokens Slack refuses.
    bind = op.get_bind()
    for name, columns in _TOKENS.items():
        table = sa.table(name, *(sa.column(column) for column in columns))
        for column in columns:
            value = table.c[column]
            sealed = bind.scalar(
                sa.select(sa.func.count())
                .select_from(table)
                .where(value.is_not(None), value != "", value.not_like("xox%"))
            )
            if sealed:
                raise RuntimeError(
                    f"{name}.{column} holds tokens sealed with PAYLINK_SECRET_KEY, which "
                    "versions before revision 0013 cannot read: delete those installations "
                    "(each workspace then installs Paylink again) before downgrading"
                )
    for table, columns in _TOKENS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column,
                    type_=sa.String(length=200),
                    existing_type=sa.Text(),
                    existing_nullable=True,
                )
