"""Alembic migrations of the booking gate's schema."""
