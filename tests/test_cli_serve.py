"""``carecall serve`` run the way an operator runs it: a real process, its stdout and signals."""

from __future__ import annotations

import re
import stat
import subprocess
import tomllib
from pathlib import Path

import jwt
import pytest

from booking_gate.appkeys import SERVICE
from booking_gate.demo import create_demo_booking
from tests.conftest import FakeClock, GateClient
from tests.processes import CARECALL, REPO, clean_env, get_json, serve

SERVE_FLAGS = ("--host", "--port", "--db", "--redis", "--public-url", "--api-key", "--demo")


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

        jwks = get_json(f"{base_url}/.well-known/jwks.json")
        key = jwt.PyJWK(jwks["keys"][0]).key
        claims = {role: jwt.decode(match.group(3), key, algorithms=["EdDSA"],
                                   audience="carecall-signalling", issuer="carecall-gate")
                  for role, match in (("professional", professional), ("client", client))}
        assert {role: (c["role"], c["room"]) for role, c in claims.items()} == {
            "professional": ("professional", room), "client": ("client", room)}

        api_key = (tmp_path / "var" / "api_key").read_text().strip()
        booking = get_json(f"{base_url}/api/v1/bookings/{claims['client']['bkg']}",
                           {"Authorization": f"Bearer {api_key}"})
        assert (booking["status"], booking["room_id"]) == ("confirmed", room)

        assert served.terminate() == 0, served.stderr()
        assert served.rest_of_stdout() == []  # nothing but those three lines

    var = tmp_path / "var"
    assert {"carecall.db", "signing_key.pem", "api_key"} <= {p.name for p in var.iterdir()}
    assert stat.S_IMODE((var / "signing_key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "api_key").stat().st_mode) == 0o600


@pytest.mark.slow
def test_a_restart_on_the_same_directory_keeps_the_keys(tmp_path: Path) -> None:
    """A second start reuses the signing key (same JWKS kid) and the API key; both exit 0."""
    kids, keys = [], []
    for _ in range(2):
        with serve(["--demo", "--port", "0"], tmp_path) as served:
            base_url = served.ready()
            assert served.line().startswith("professional: ")
            assert served.line().startswith("client: ")
            kids.append(get_json(f"{base_url}/.well-known/jwks.json")["keys"][0]["kid"])
            keys.append((tmp_path / "var" / "api_key").read_text())
            assert served.terminate() == 0, served.stderr()
    assert kids[0] == kids[1] and kids[0]
    assert keys[0] == keys[1]


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


async def test_demo_again_later_replaces_the_still_running_demo_booking(
        gate: GateClient, clock: FakeClock) -> None:
    """A demo start while an earlier demo booking still runs makes a new booking, not a crash."""
    service = gate.server.app[SERVICE]

    async def demo_room() -> str:
        links = await create_demo_booking(service)
        return links["client"].split("/s/")[1].split("#")[0]

    first = await demo_room()
    assert await demo_room() == first  # the same minute: the same booking
    clock.advance(minutes=10)
    second = await demo_room()
    assert second != first
    for room, status in ((first, "cancelled"), (second, "confirmed")):
        booking = await service.room_booking(room)
        assert booking is not None and booking.status.value == status
    booking = await service.room_booking(second)
    assert booking is not None and booking.starts_at == clock.now.replace(second=0, microsecond=0)
