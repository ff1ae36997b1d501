"""Initial schema: users, queries, shown photos, feedback, Telegram file-id cache.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Written for SQLite (batch mode for anything that alters a table) and PostgreSQL alike; the test
suite upgrades, downgrades and upgrades again on both, and compares the result with the models.
Types are spelled out here rather than imported from `bot.storage`, so that later changes to
the models cannot silently change what this revision creates.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BIGINT keys on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
SURROGATE_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("first_seen", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "queries",
        sa.Column("id", SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("refused", sa.Boolean(), nullable=False),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("n_results", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("withheld", sa.Integer(), nullable=True),
        sa.Column("filter_version", sa.String(length=128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("kind IN ('text', 'photo')", name=op.f("ck_queries_kind")),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_queries_latency_nonnegative")),
        sa.CheckConstraint("n_results >= 0", name=op.f("ck_queries_n_results_nonnegative")),
        sa.CheckConstraint(
            "refused OR refusal_reason IS NULL", name=op.f("ck_queries_reason_only_if_refused")
        ),
        sa.CheckConstraint(
            "withheld IS NULL OR withheld >= 0", name=op.f("ck_queries_withheld_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_queries_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queries")),
    )
    with op.batch_alter_table("queries") as batch_op:
        batch_op.create_index(batch_op.f("ix_queries_created_at"), ["created_at"])
        batch_op.create_index(
            batch_op.f("ix_queries_user_id_created_at"), ["user_id", "created_at"]
        )
    op.create_table(
        "shown_photos",
        sa.Column("id", SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("query_id", SURROGATE_KEY, nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("photo", sa.Text(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.CheckConstraint("rank >= 1", name=op.f("ck_shown_photos_rank_positive")),
        sa.ForeignKeyConstraint(
            ["query_id"],
            ["queries.id"],
            name=op.f("fk_shown_photos_query_id_queries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shown_photos")),
        sa.UniqueConstraint("query_id", "rank", name=op.f("uq_shown_photos_query_id_rank")),
    )
    op.create_table(
        "feedback",
        sa.Column("shown_photo_id", SURROGATE_KEY, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("vote", sa.SmallInteger(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("vote IS NULL OR vote IN (-1, 1)", name=op.f("ck_feedback_vote_value")),
        sa.ForeignKeyConstraint(
            ["shown_photo_id"],
            ["shown_photos.id"],
            name=op.f("fk_feedback_shown_photo_id_shown_photos"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_feedback_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shown_photo_id", "user_id", name=op.f("pk_feedback")),
    )
    with op.batch_alter_table("feedback") as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_updated_at"), ["updated_at"])
        batch_op.create_index(batch_op.f("ix_feedback_user_id"), ["user_id"])
    op.create_table(
        "photo_file_ids",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("photo", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("file_id", sa.Text(), nullable=False),
        sa.Column("file_unique_id", sa.String(length=128), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "photo", name=op.f("pk_photo_file_ids")),
    )


def downgrade() -> None:
    op.drop_table("photo_file_ids")
    with op.batch_alter_table("feedback") as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedback_user_id"))
        batch_op.drop_index(batch_op.f("ix_feedback_updated_at"))
    op.drop_table("feedback")
    op.drop_table("shown_photos")
    with op.batch_alter_table("queries") as batch_op:
        batch_op.drop_index(batch_op.f("ix_queries_user_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_queries_created_at"))
    op.drop_table("queries")
    op.drop_table("users")
