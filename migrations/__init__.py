"""Alembic migrations, shipped inside the package so ``relief-gateway migrate`` works from an
installed wheel as well as from a checkout."""
