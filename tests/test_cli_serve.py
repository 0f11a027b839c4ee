"""``carecall serve`` run the way an operator runs it: a real process, its stdout and signals."""

from __future__ import annotations

import re
import stat
import subprocess
import tomllib
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from booking_gate.appkeys import SERVICE
from booking_gate.demo import create_demo_booking
from booking_gate.errors import Conflict
from tests.conftest import FakeClock, GateClient
from tests.processes import CARECALL, REPO, clean_env, get_json, serve
from tests.test_serve_startup import read_demo, welcomed

SERVE_FLAGS = ("--host", "--port", "--db", "--redis", "--public-url", "--api-key", "--demo")


def room_of(link: str) -> str:
    return link.split("/s/")[1].split("#")[0]


def link_pattern(base_url: str, role: str) -> re.Pattern[str]:
    return re.compile(rf"^{role}: ({re.escape(base_url)}/s/([A-Za-z0-9_-]{{22,}})#t="
                      r"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+))$")


@pytest.mark.slow
def test_demo_on_a_clean_directory_prints_the_ready_line_and_two_links(tmp_path: Path) -> None:
    """serve --demo prints exactly the ready line and one join link per role for one room."""
    with serve(["--demo", "--port", "0"], tmp_path) as served:
        base_url = served.ready()
        professional = link_pattern(base_url, "professional").match(served.line())
        client = link_pattern(base_url, "client").match(served.line())
        assert professional and client, served.stderr()
        assert professional.group(2) == client.group(2)  # one room for both parties
        room = professional.group(2)
        booking_line = re.fullmatch(r"booking: (demo-[0-9T]+)", served.line())
        assert booking_line, served.stderr()

        jwks = get_json(f"{base_url}/.well-known/jwks.json")
        key = jwt.PyJWK(jwks["keys"][0]).key
        claims = {role: jwt.decode(match.group(3), key, algorithms=["EdDSA"],
                                   audience="carecall-signalling", issuer="carecall-gate")
                  for role, match in (("professional", professional), ("client", client))}
        assert {role: (c["role"], c["room"]) for role, c in claims.items()} == {
            "professional": ("professional", room), "client": ("client", room)}

        assert {c["bkg"] for c in claims.values()} == {booking_line.group(1)}

        api_key = (tmp_path / "var" / "api_key").read_text().strip()
        booking = get_json(f"{base_url}/api/v1/bookings/{booking_line.group(1)}",
                           {"Authorization": f"Bearer {api_key}"})
        assert (booking["status"], booking["room_id"]) == ("confirmed", room)

        assert served.terminate() == 0, served.stderr()
        assert served.rest_of_stdout() == []  # nothing but those four lines

    var = tmp_path / "var"
    assert {"carecall.db", "signing_key.pem", "api_key"} <= {p.name for p in var.iterdir()}
    assert stat.S_IMODE((var / "signing_key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "api_key").stat().st_mode) == 0o600


@pytest.mark.slow
async def test_a_restart_while_the_demo_runs_reuses_its_booking_and_keys(
        tmp_path: Path) -> None:
    """serve --demo, SIGTERM, serve --demo again: the same signing key, API key and booking
    (still confirmed), with fresh links that admit both parties."""
    runs = []
    for _ in range(2):
        with serve(["--demo", "--port", "0"], tmp_path) as served:
            demo = read_demo(served)
            demo["kid"] = get_json(f"{demo['base']}/.well-known/jwks.json")["keys"][0]["kid"]
            demo["api_key"] = (tmp_path / "var" / "api_key").read_text()
            runs.append(demo)
            if len(runs) == 2:
                answers = await welcomed(demo["base"], [demo["professional"], demo["client"]])
                assert [(a["type"], a["role"]) for a in answers] == [
                    ("welcome", "professional"), ("welcome", "client")]
                booking = get_json(f"{demo['base']}/api/v1/bookings/{demo['booking']}",
                                   {"Authorization": f"Bearer {demo['api_key'].strip()}"})
                assert booking["status"] == "confirmed"
            assert served.terminate() == 0, served.stderr()
    first, second = runs
    assert first["kid"] == second["kid"] and first["kid"]
    assert first["api_key"] == second["api_key"]
    assert first["booking"] == second["booking"]
    assert room_of(second["client"]) == room_of(first["client"])
    assert second["client"] != first["client"]  # fresh tokens


@pytest.mark.slow
def test_sigterm_exits_0_promptly_with_an_explicit_var_dir(tmp_path: Path) -> None:
    """Without --demo only the ready line is printed; SIGTERM ends the process with 0."""
    with serve(["--port", "0", "--api-key", "K", "--var-dir", str(tmp_path / "state")],
               tmp_path) as served:
        base_url = served.ready()
        assert get_json(f"{base_url}/healthz") == {"status": "ok"}
        assert served.terminate() == 0, served.stderr()
        assert served.rest_of_stdout() == []
    assert (tmp_path / "state" / "carecall.db").exists()
    assert not (tmp_path / "state" / "api_key").exists()  # a given key is not written down
    assert not (tmp_path / "var").exists()


def test_help_lists_every_serve_flag_of_the_contract(tmp_path: Path) -> None:
    """carecall --help and carecall serve --help exit 0; serve's help names every flag."""
    top = subprocess.run([*CARECALL, "--help"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=30)
    assert top.returncode == 0, top.stderr
    assert "serve" in top.stdout
    sub = subprocess.run([*CARECALL, "serve", "--help"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=30)
    assert sub.returncode == 0, sub.stderr
    missing = [flag for flag in SERVE_FLAGS if flag not in sub.stdout]
    assert missing == [], sub.stdout
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"carecall": "carecall.cli:main"}


def test_an_unsupported_database_url_fails_with_one_clear_line(tmp_path: Path) -> None:
    """--db mysql://x exits non-zero with one line on stderr naming the accepted forms."""
    result = subprocess.run([*CARECALL, "serve", "--db", "mysql://x", "--port", "0"],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("carecall: ")
    assert "sqlite:///" in lines[0] and "postgresql://" in lines[0]
    assert "listening" not in result.stdout
    assert not (tmp_path / "var").exists()  # refused before anything was written


async def test_demo_again_while_its_booking_runs_reuses_it(
        gate: GateClient, clock: FakeClock) -> None:
    """A demo start 10 minutes into an earlier demo booking reuses it: same id and room,
    fresh links, nothing cancelled."""
    service = gate.server.app[SERVICE]
    first = await create_demo_booking(service)
    clock.advance(minutes=10)
    second = await create_demo_booking(service)
    assert second.booking_id == first.booking_id
    assert room_of(second.client) == room_of(first.client)
    assert (second.professional, second.client) != (first.professional, first.client)
    items = (await service.store.list_confirmed("demo-professional", clock.now,
                                                clock.now + timedelta(hours=1)))
    assert [b.booking_id for b in items] == [first.booking_id]


async def test_demo_after_its_booking_ended_books_a_new_one_and_keeps_the_old(
        gate: GateClient, clock: FakeClock) -> None:
    """Once the earlier demo booking has ended, a demo start books the next 50 minutes;
    the old booking stays confirmed."""
    service = gate.server.app[SERVICE]
    first = await create_demo_booking(service)
    clock.advance(minutes=50)
    second = await create_demo_booking(service)
    assert second.booking_id != first.booking_id
    old = await service.store.get_booking(first.booking_id)
    new = await service.store.get_booking(second.booking_id)
    assert old is not None and new is not None
    assert (old.status.value, new.status.value) == ("confirmed", "confirmed")
    assert new.starts_at == clock.now.replace(second=0, microsecond=0)
    assert new.ends_at - new.starts_at == timedelta(minutes=50)


async def test_demo_never_cancels_a_booking_it_did_not_make(
        gate: GateClient, clock: FakeClock) -> None:
    """With a booking of the demo professional made through the API in the next 50 minutes,
    a demo start is refused with slot_taken naming it, and that booking stays confirmed."""
    service = gate.server.app[SERVICE]
    await create_demo_booking(service)  # creates the demo people
    clock.advance(minutes=60)
    starts = clock.now + timedelta(minutes=20)
    await service.put_booking("api-1", {
        "professional_id": "demo-professional", "client_id": "demo-client",
        "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(minutes=50)).isoformat(),
        "funding": "private", "source": "direct"})
    with pytest.raises(Conflict) as refused:
        await create_demo_booking(service)
    assert refused.value.code == "slot_taken"
    assert "'api-1'" in refused.value.message
    booking = await service.store.get_booking("api-1")
    assert booking is not None and booking.status.value == "confirmed"
    running = await service.store.list_confirmed("demo-professional", clock.now,
                                                 clock.now + timedelta(minutes=50))
    assert [b.booking_id for b in running] == ["api-1"]


async def test_demo_after_its_booking_was_cancelled_in_the_same_minute_gets_a_new_id(
        gate: GateClient, clock: FakeClock) -> None:
    """A demo booking cancelled through the API is not reused: a new id, a new room."""
    service = gate.server.app[SERVICE]
    first = await create_demo_booking(service)
    await service.cancel(first.booking_id, {"by": "professional", "reason": "test"})
    second = await create_demo_booking(service)
    assert second.booking_id == f"{first.booking_id}-2"
    assert room_of(second.client) != room_of(first.client)
