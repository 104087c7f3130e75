"""issued checkout sessions: every session opened for an order, with its Connect account

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "issuedcheckout",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("gateway", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("stripe_account", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["order.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("issuedcheckout", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issuedcheckout_order_id"), ["order_id"], unique=False)
    # The session each order holds now was opened by this server: keep it payable.
    op.execute(
        """
        INSERT INTO issuedcheckout (id, order_id, gateway, stripe_account, created_at)
        SELECT o.checkout_session_id, o.id,
               CASE WHEN o.payment_mode = 'demo' THEN 'demo' ELSE 'stripe' END,
               CASE WHEN o.payment_mode = 'demo' THEN '' ELSE s.stripe_account_id END,
               o.updated_at
        FROM "order" o JOIN shop s ON s.id = o.shop_id
        WHERE o.checkout_session_id IS NOT NULL
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("issuedcheckout", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issuedcheckout_order_id"))
    op.drop_table("issuedcheckout")
