"""login throttle for email addresses without an account; the time of an owner's last failure

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loginthrottle",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failed_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("loginthrottle", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loginthrottle_last_failed_login_at"),
            ["last_failed_login_at"],
            unique=False,
        )
    # Failures counted before this revision have no time: they are forgotten at the next sign-in.
    op.add_column(
        "owner", sa.Column("last_failed_login_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite 3.35+), never a batch rebuild: rebuilding ``owner`` drops it,
    # and with foreign keys on that would cascade to its sessions, tokens and shops.
    op.drop_column("owner", "last_failed_login_at")
    with op.batch_alter_table("loginthrottle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loginthrottle_last_failed_login_at"))
    op.drop_table("loginthrottle")
