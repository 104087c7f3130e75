"""order numbers: a short number per shop (1, 2, 3...) on each order, the shop's counter

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 03:00:00.000000

Existing orders are numbered per shop in the order they were created, and each shop's counter
is set to its last number, so the next order continues the sequence.

No table is rebuilt: on SQLite a rebuild of ``order`` drops the old table, and with foreign keys
on that deletes the rows referring to it (status history, issued checkouts). So the columns are
added with a default (``0``) that fills the existing rows before they are numbered; PostgreSQL
then drops the default of ``order.number``, SQLite keeps it (the unique index refuses a second
unnumbered order of a shop). The downgrade drops the columns in place (SQLite 3.35+).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shop", sa.Column("order_seq", sa.Integer(), server_default="0", nullable=False))
    op.add_column("order", sa.Column("number", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        """
        UPDATE "order" SET number = numbered.n
        FROM (
            SELECT id, ROW_NUMBER() OVER (PARTITION BY shop_id ORDER BY created_at, id) AS n
            FROM "order"
        ) AS numbered
        WHERE numbered.id = "order".id
        """
    )
    op.execute(
        """
        UPDATE shop SET order_seq = COALESCE(
            (SELECT MAX(o.number) FROM "order" o WHERE o.shop_id = shop.id), 0
        )
        """
    )
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("order", "number", server_default=None)
    op.create_index("ux_order_shop_id_number", "order", ["shop_id", "number"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_order_shop_id_number", table_name="order")
    op.drop_column("order", "number")
    op.drop_column("shop", "order_seq")
