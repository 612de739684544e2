"""batches.payload and batches.manifest compressed with lz4 where the server has it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Every batch's payload (~130 KB of JSON for 500 invoices) and manifest are TOASTed. pglz, the default,
# cost PostgreSQL ~1.2 ms per batch to compress on insert, lz4 ~0.2 ms, for a similar size (measured
# with 200 batches of 500 invoices: 6.6 against 7.4 MB; see BENCHMARKS.md, issue 13). Only new values
# are compressed the new way. PostgreSQL before 14, or one built without lz4, keeps pglz: EXECUTE
# defers parsing the clause to a server that knows it.
_SET = """
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        BEGIN
            EXECUTE 'ALTER TABLE batches ALTER COLUMN payload SET COMPRESSION {method}, '
                    'ALTER COLUMN manifest SET COMPRESSION {method}';
        EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
            RAISE NOTICE 'batches keep the default compression: %', SQLERRM;
        END;
    END IF;
END
$$;
"""


def upgrade() -> None:
    op.execute(_SET.format(method="lz4"))


def downgrade() -> None:
    op.execute(_SET.format(method="default"))
