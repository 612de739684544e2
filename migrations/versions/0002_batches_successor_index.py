"""an index on batches.depends_on: a worker takes the batch that continues a chain by it

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only chained batches (a customer's invoices over several batches) have a dependency: a small
    # partial index, probed once per finished batch by `store.claim_next` and by a split's re-link.
    op.create_index('ix_batches_depends_on', 'batches', ['depends_on'], unique=False,
                    postgresql_where=sa.text('depends_on IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_batches_depends_on', table_name='batches', postgresql_where=sa.text('depends_on IS NOT NULL'))
