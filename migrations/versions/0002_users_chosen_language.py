"""Users' chosen interface language (/language), kept in the database with the rest of their state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

`users.language` is the client's language code, refreshed on every query; `chosen_language` is
what the user picked with /language (NULL: never chose, so the bot follows Telegram's language).
Before this revision the choices lived in DATA_DIR/languages.json, which several bot replicas
cannot share. That file is not carried over (a migration must not depend on the bot's data
directory): a user whose choice is dropped sees their Telegram language and can choose again.

Written for SQLite (batch mode: SQLite cannot drop a column in place) and PostgreSQL alike;
tests run upgrade and downgrade on both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("chosen_language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("chosen_language")
