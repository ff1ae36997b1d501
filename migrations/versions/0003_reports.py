"""Reports: a user's 🚫 on a shown photo ("this shows a child").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

The block that hides a reported photo lives in the engine's moderation file (it must reach
every search at once, bot or not); this table keeps who reported which shown photo and when,
with the rest of the log. Written for SQLite (batch mode) and PostgreSQL alike; tests run
upgrade and downgrade on both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SURROGATE_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("shown_photo_id", SURROGATE_KEY, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["shown_photo_id"],
            ["shown_photos.id"],
            name=op.f("fk_reports_shown_photo_id_shown_photos"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reports_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shown_photo_id", "user_id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports") as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_created_at"), ["created_at"])


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_created_at"))
    op.drop_table("reports")
