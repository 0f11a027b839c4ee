"""Alembic environment: always run on a connection handed over by ``db.engine.migrate``."""

from __future__ import annotations

from alembic import context

from booking_gate.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through booking_gate.db.engine.migrate()")

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
