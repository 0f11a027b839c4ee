"""Property-based run of Schemathesis over the gate's own OpenAPI document: no 500, ever.

The real service runs as ``carecall serve`` (SQLite in a fresh var dir) with a few seeded
rows; Schemathesis (its CLI, as a subprocess) generates valid and invalid requests for
every operation, bounded per operation, and checks only ``not_a_server_error``. Known ids
are mixed into the generated path and body ids (its "dictionaries") so that requests reach
real professionals, clients and bookings instead of stopping at 404. Set
``CARECALL_FUZZ_SEED`` to replay another seed and ``CARECALL_FUZZ_EXAMPLES`` for a longer run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.processes import clean_env, get_json, serve

API_KEY = "K"
SEED = os.environ.get("CARECALL_FUZZ_SEED", "20261123")
MAX_EXAMPLES = os.environ.get("CARECALL_FUZZ_EXAMPLES", "30")

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
BOOKINGS = ("b-past", "b-now", "b-future", "b-cancelled", "b-private")

CONFIG = """\
[dictionaries.bookings]
values = {bookings}
[dictionaries.professionals]
values = ["pro-1"]
[dictionaries.clients]
values = ["cli-1", "cli-2"]
[dictionaries.hubs]
values = ["acme"]

[parameters]
"path.booking_id" = {{ dictionary = "bookings", probability = 0.5 }}
"path.professional_id" = {{ dictionary = "professionals", probability = 0.5 }}
"path.client_id" = {{ dictionary = "clients", probability = 0.5 }}
"path.hub_id" = {{ dictionary = "hubs", probability = 0.5 }}
"query.hub_id" = {{ dictionary = "hubs", probability = 0.3 }}
"body.professional_id" = {{ dictionary = "professionals", probability = 0.5 }}
"body.client_id" = {{ dictionary = "clients", probability = 0.5 }}
"body.events[*].booking_id" = {{ dictionary = "bookings", probability = 0.5 }}
"""


def call(base_url: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        base_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert 200 <= response.status < 300, (method, path, response.status)
        raw = response.read()
    return json.loads(raw) if raw else None


def seed(base_url: str) -> None:
    """Two people, credits, bookings in the past, now and later (one cancelled), a block."""
    now = datetime.now(UTC).replace(microsecond=0)
    call(base_url, "PUT", "/api/v1/professionals/pro-1", {
        "name": "Dr Pro", "email": "pro@example.org", "timezone": "Europe/Oslo",
        "session_minutes": 50, "buffer_minutes": 10,
        "availability": [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]})
    call(base_url, "PUT", "/api/v1/clients/cli-1", {
        "name": "Cli Ent", "email": "client@example.org", "timezone": "Europe/Oslo",
        "hub_id": "acme"})
    call(base_url, "PUT", "/api/v1/clients/cli-2", {
        "name": "Pri Vate", "email": "private@example.org", "timezone": "America/New_York",
        "hub_id": None})
    call(base_url, "POST", "/api/v1/hubs/acme/credits", {"client_id": "cli-1", "credits": 10})
    starts = {"b-past": now - timedelta(hours=3), "b-now": now,
              "b-future": now + timedelta(days=2), "b-cancelled": now + timedelta(days=3),
              "b-private": now + timedelta(days=4)}
    for booking_id, start in starts.items():
        private = booking_id == "b-private"
        call(base_url, "PUT", f"/api/v1/bookings/{booking_id}", {
            "professional_id": "pro-1", "client_id": "cli-2" if private else "cli-1",
            "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=50)).isoformat(),
            "funding": "private" if private else "sponsored",
            "source": "direct" if private else "hub"})
    call(base_url, "POST", "/api/v1/bookings/b-cancelled/cancel", {"by": "client"})
    call(base_url, "POST", "/api/v1/attendance/events", {"events": [
        {"event_id": "seed-1", "booking_id": "b-now", "role": "professional", "kind": "joined",
         "at": now.isoformat()},
        {"event_id": "seed-2", "booking_id": "b-past", "role": "client", "kind": "joined",
         "at": starts["b-past"].isoformat()}]})
    call(base_url, "POST", "/api/v1/professionals/pro-1/blocks", {
        "starts_at": (now + timedelta(days=5)).isoformat(),
        "ends_at": (now + timedelta(days=5, hours=2)).isoformat(), "reason": "training"})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    """Schemathesis finds no 5xx in any operation of /api/v1/openapi.json; SIGTERM exits 0."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(bookings=json.dumps(list(BOOKINGS))))
    with serve(["--host", "127.0.0.1", "--port", "0", "--api-key", API_KEY,
                "--var-dir", str(tmp_path / "var")], tmp_path) as served:
        base_url = served.ready()
        seed(base_url)
        assert call(base_url, "GET", "/api/v1/bookings/b-now")["status"] == "confirmed"

        result = subprocess.run([
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"{base_url}/api/v1/openapi.json",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {API_KEY}",
            "--max-examples", MAX_EXAMPLES, "--seed", SEED,
            "--phases", "examples,coverage,fuzzing,stateful",
            "--generation-database", "none", "--request-timeout", "10",
            "--no-color",
        ], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=240)
        output = f"{result.stdout}\n{result.stderr}\n--- server stderr ---\n{served.stderr()}"
        assert result.returncode == 0, output
        document = get_json(f"{base_url}/api/v1/openapi.json")
        # Schemathesis leaves out the operation that serves the schema itself.
        operations = sum(method in HTTP_METHODS for path, item in document["paths"].items()
                         for method in item if path != "/api/v1/openapi.json")
        tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
        assert tested, output
        assert tested.groups() == (str(operations),) * 3, output  # every operation ran
        assert "unexpected error" not in served.stderr(), output

        assert served.proc.poll() is None, output  # it survived the run
        assert get_json(f"{base_url}/healthz") == {"status": "ok"}
        assert served.terminate() == 0, served.stderr()
