"""login throttle for email addresses without an account

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
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
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("loginthrottle", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loginthrottle_locked_until"), ["locked_until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("loginthrottle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loginthrottle_locked_until"))
    op.drop_table("loginthrottle")
