"""initial state schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 19:14:29.212232
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('data_source', sa.Text(), nullable=False),
    sa.Column('api_url', sa.Text(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('dry_run', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('only_changed', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('mapping', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('mapping_file', sa.Text(), nullable=True),
    sa.Column('source_fingerprint', sa.Text(), nullable=True),
    sa.Column('pass_no', sa.SmallInteger(), server_default=sa.text('1'), nullable=False),
    sa.Column('current_stage', sa.Text(), server_default=sa.text("'plans'"), nullable=False),
    sa.Column('paused_reason', sa.Text(), nullable=True),
    sa.Column('reset_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('producer_lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('producer_owner', sa.Text(), nullable=True),
    sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("current_stage IN ('plans', 'customers', 'invoices')", name=op.f('ck_runs_current_stage')),
    sa.CheckConstraint("state IN ('running', 'paused', 'succeeded', 'completed_with_errors', 'failed', 'cancelled')", name=op.f('ck_runs_state')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    op.create_index('uq_runs_active_data_source', 'runs', ['data_source'], unique=True, postgresql_where=sa.text("state IN ('running', 'paused') AND NOT dry_run"))
    op.create_table('audit',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('export_status', sa.Text(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('http_status', sa.SmallInteger(), nullable=True),
    sa.Column('attempts', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('payload_hash', sa.LargeBinary(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('passes', sa.SmallInteger(), server_default=sa.text('1'), nullable=False),
    sa.Column('previous_outcome', sa.Text(), nullable=True),
    sa.CheckConstraint("entity IN ('plans', 'customers', 'invoices')", name=op.f('ck_audit_entity')),
    sa.CheckConstraint("outcome IN ('inserted', 'updated', 'unchanged', 'success', 'error', 'invalid', 'skipped')", name=op.f('ck_audit_outcome')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_audit_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'entity', 'external_id', name=op.f('pk_audit'))
    )
    op.create_index('ix_audit_rejected', 'audit', ['run_id', 'entity'], unique=False, postgresql_where=sa.text("outcome IN ('error', 'invalid', 'skipped')"))
    op.create_table('audit_history',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('pass_no', sa.SmallInteger(), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('http_status', sa.SmallInteger(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replaced_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_audit_history_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_history'))
    )
    op.create_index('ix_audit_history_row', 'audit_history', ['run_id', 'entity', 'external_id'], unique=False)
    op.create_table('batches',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('stage', sa.Text(), nullable=False),
    sa.Column('pass_no', sa.SmallInteger(), server_default=sa.text('1'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('part', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column('state', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('depends_on', sa.BigInteger(), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('manifest', sa.LargeBinary(), nullable=True),
    sa.Column('attempts', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('throttled', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('deliveries', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('first_try_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('n_inserted', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_updated', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_unchanged', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_success', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_local', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_error', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_invalid', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('n_skipped', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint("stage IN ('plans', 'customers', 'invoices')", name=op.f('ck_batches_stage')),
    sa.CheckConstraint("state IN ('pending', 'queued', 'running', 'retry_wait', 'done', 'failed', 'split')", name=op.f('ck_batches_state')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_batches_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('run_id', 'stage', 'pass_no', 'seq', 'part', name='uq_batches_position')
    )
    op.create_index('ix_batches_in_flight', 'batches', ['state'], unique=False, postgresql_where=sa.text("state IN ('queued', 'running', 'retry_wait')"))
    op.create_index('ix_batches_dispatch', 'batches', ['run_id', 'stage', 'state', 'pass_no', 'seq', 'part'], unique=False)
    op.create_table('retry_targets',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('pass_no', sa.SmallInteger(), nullable=False),
    sa.Column('entity', sa.Text(), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=False),
    sa.Column('found', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_retry_targets_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'pass_no', 'entity', 'external_id', name=op.f('pk_retry_targets'))
    )
    op.create_table('run_stages',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('stage', sa.Text(), nullable=False),
    sa.Column('rows_read', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_seq', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('tail_batch_id', sa.BigInteger(), nullable=True),
    sa.Column('tail_customer', sa.Text(), nullable=True),
    sa.Column('produced', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('produced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('summary', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.CheckConstraint("stage IN ('plans', 'customers', 'invoices')", name=op.f('ck_run_stages_stage')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_stages_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'stage', name=op.f('pk_run_stages'))
    )
    op.create_table('batch_attempts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('rows_sent', sa.Integer(), nullable=False),
    sa.Column('http_status', sa.SmallInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_attempts_batch_id_batches'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_attempts'))
    )
    op.create_index(op.f('ix_batch_attempts_batch_id'), 'batch_attempts', ['batch_id'], unique=False)
    # Payloads are JSON: lz4 compresses them cheaply where the server supports it (PostgreSQL 14+ built with lz4).
    op.execute(
        """
        DO $$ BEGIN
            ALTER TABLE batches ALTER COLUMN payload SET COMPRESSION lz4;
            ALTER TABLE batches ALTER COLUMN manifest SET COMPRESSION lz4;
        EXCEPTION WHEN others THEN NULL;
        END $$
        """
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_batch_attempts_batch_id'), table_name='batch_attempts')
    op.drop_table('batch_attempts')
    op.drop_table('run_stages')
    op.drop_table('retry_targets')
    op.drop_index('ix_batches_dispatch', table_name='batches')
    op.drop_index('ix_batches_in_flight', table_name='batches', postgresql_where=sa.text("state IN ('queued', 'running', 'retry_wait')"))
    op.drop_table('batches')
    op.drop_index('ix_audit_history_row', table_name='audit_history')
    op.drop_table('audit_history')
    op.drop_index('ix_audit_rejected', table_name='audit', postgresql_where=sa.text("outcome IN ('error', 'invalid', 'skipped')"))
    op.drop_table('audit')
    op.drop_index('uq_runs_active_data_source', table_name='runs', postgresql_where=sa.text("state IN ('running', 'paused') AND NOT dry_run"))
    op.drop_table('runs')
