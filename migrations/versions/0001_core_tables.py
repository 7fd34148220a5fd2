"""core tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 04:58:50.373628
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('department', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('region', sa.String(length=12), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('operation', sa.String(length=128), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('person_ids', sa.Text(), nullable=False),
    sa.Column('fields', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('entry_hash')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_occurred', ['occurred_at'], unique=False)

    op.create_table('casbin_rule',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ptype', sa.String(length=255), nullable=True),
    sa.Column('v0', sa.String(length=255), nullable=True),
    sa.Column('v1', sa.String(length=255), nullable=True),
    sa.Column('v2', sa.String(length=255), nullable=True),
    sa.Column('v3', sa.String(length=255), nullable=True),
    sa.Column('v4', sa.String(length=255), nullable=True),
    sa.Column('v5', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('household',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('county_code', sa.String(length=6), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_county_code'), ['county_code'], unique=False)

    op.create_table('policy_version',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('person',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('id_number_bidx', sa.LargeBinary(length=32), nullable=False),
    sa.Column('id_number_ct', sa.LargeBinary(), nullable=False),
    sa.Column('name_ct', sa.LargeBinary(), nullable=False),
    sa.Column('phone_bidx', sa.LargeBinary(length=32), nullable=True),
    sa.Column('phone_ct', sa.LargeBinary(), nullable=True),
    sa.Column('address_ct', sa.LargeBinary(), nullable=True),
    sa.Column('gender', sa.String(length=6), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('province_code', sa.String(length=2), nullable=False),
    sa.Column('city_code', sa.String(length=4), nullable=False),
    sa.Column('county_code', sa.String(length=6), nullable=False),
    sa.Column('household_id', sa.Uuid(), nullable=True),
    sa.Column('relation', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['household_id'], ['household.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('id_number_bidx')
    )
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.create_index('ix_person_city_id', ['city_code', 'id'], unique=False)
        batch_op.create_index('ix_person_county_id', ['county_code', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_household_id'), ['household_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_phone_bidx'), ['phone_bidx'], unique=False)
        batch_op.create_index('ix_person_province_id', ['province_code', 'id'], unique=False)

    op.create_table('cost_burden',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('total_cost', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('basic_insurance_paid', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('critical_illness_paid', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('medical_assistance_paid', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('personal_burden', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('inpatient_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cost_burden', schema=None) as batch_op:
        batch_op.create_index('ix_cost_burden_person_year', ['person_id', 'year'], unique=False)

    op.create_table('enrollment',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('insurance_type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('subsidy_category', sa.String(length=32), nullable=True),
    sa.Column('subsidy_amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index('ix_enrollment_person_year', ['person_id', 'year'], unique=False)

    op.create_table('relief_status',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('source_department', sa.String(length=32), nullable=False),
    sa.Column('recognized_on', sa.Date(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('relief_status', schema=None) as batch_op:
        batch_op.create_index('ix_relief_status_category_person', ['category', 'person_id'], unique=False)
        batch_op.create_index('ix_relief_status_person', ['person_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('relief_status', schema=None) as batch_op:
        batch_op.drop_index('ix_relief_status_person')
        batch_op.drop_index('ix_relief_status_category_person')

    op.drop_table('relief_status')
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollment_person_year')

    op.drop_table('enrollment')
    with op.batch_alter_table('cost_burden', schema=None) as batch_op:
        batch_op.drop_index('ix_cost_burden_person_year')

    op.drop_table('cost_burden')
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_province_id')
        batch_op.drop_index(batch_op.f('ix_person_phone_bidx'))
        batch_op.drop_index(batch_op.f('ix_person_household_id'))
        batch_op.drop_index('ix_person_county_id')
        batch_op.drop_index('ix_person_city_id')

    op.drop_table('person')
    op.drop_table('policy_version')
    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_county_code'))

    op.drop_table('household')
    op.drop_table('casbin_rule')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_occurred')

    op.drop_table('audit_log')
