"""Storage of the booking gate: schema, engine set-up and migrations."""
