"""carecall's booking gate: bookings, join tokens, attendance, credits and the REST API."""
