"""Starting ``carecall serve`` / ``gate``: one process per var dir, owner-only files, and a
start-up failure is one ``carecall:`` line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from carecall import cli
from tests.processes import CARECALL, Served, clean_env, get_json, request_json, serve

PG = "postgresql://postgres@127.0.0.1:5432"


def start(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """One carecall run that must end by itself (it fails to start)."""
    return subprocess.run([*CARECALL, *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


@contextmanager
def gate(args: list[str], cwd: Path) -> Iterator[Served]:
    served = Served(["gate", *args], cwd)
    try:
        yield served
    finally:
        served.close()


def one_failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``carecall:`` line of a failed start (asserting the rest of its shape)."""
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("carecall:")]
    assert len(lines) == 1, result.stderr
    assert "listening" not in result.stdout
    return lines[0]


def read_demo(served: Served) -> dict[str, str]:
    """The ready line and the three demo lines: base URL, both links and the booking id."""
    lines = {"base": served.ready()}
    for key in ("professional", "client", "booking"):
        line = served.line()
        assert line.startswith(f"{key}: "), (line, served.stderr())
        lines[key] = line.removeprefix(f"{key}: ")
    return lines


async def welcomed(base_url: str, links: list[str]) -> list[dict[str, object]]:
    """Each link's party says hello on /ws at once; the server's first answers."""
    answers = []
    async with aiohttp.ClientSession() as session:
        sockets = []
        try:
            for link in links:
                token = urlsplit(link).fragment.removeprefix("t=")
                ws = await session.ws_connect(f"{base_url.replace('http', 'ws', 1)}/ws")
                sockets.append(ws)
                await ws.send_json({"type": "hello", "token": token, "agent": "aiortc",
                                    "can_rollback": False})
                answers.append(json.loads((await ws.receive(timeout=10)).data))
        finally:
            for ws in sockets:
                await ws.close()
    return answers


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


# -- one process per var dir -------------------------------------------------------------


@pytest.mark.slow
async def test_a_second_serve_on_the_same_var_dir_refuses_and_the_first_demo_still_works(
        tmp_path: Path) -> None:
    """A second serve --demo on the first one's var dir exits non-zero with one line naming
    the first's PID, writes nothing, and the first one's demo links still admit both."""
    with serve(["--demo", "--port", "0"], tmp_path) as first:
        demo = read_demo(first)
        var = tmp_path / "var"
        before = {p.name: p.read_bytes() for p in var.iterdir()
                  if p.name in ("api_key", "signing_key.pem", "carecall.lock")}

        second = start(["serve", "--demo", "--port", "0"], tmp_path)
        line = one_failure_line(second)
        assert line == (f"carecall: var/ is in use by another carecall process "
                        f"(pid {first.proc.pid}); stop it or use --var-dir")
        assert second.stdout == ""
        assert {name: (var / name).read_bytes() for name in before} == before

        answers = await welcomed(demo["base"], [demo["professional"], demo["client"]])
        assert [(a["type"], a["role"]) for a in answers] == [
            ("welcome", "professional"), ("welcome", "client")]
        assert answers[1]["peer_present"] is True
        api_key = (var / "api_key").read_text().strip()
        booking = get_json(f"{demo['base']}/api/v1/bookings/{demo['booking']}",
                           {"Authorization": f"Bearer {api_key}"})
        assert booking["status"] == "confirmed"
        assert first.terminate() == 0, first.stderr()
    assert (var / "carecall.lock").read_text() == ""  # released: no stale PID left


@pytest.mark.slow
def test_the_var_dir_is_free_again_once_the_first_process_is_gone(tmp_path: Path) -> None:
    """A gate killed with SIGKILL leaves no lock behind: the next gate on its var dir starts."""
    for _ in range(2):
        with serve(["--port", "0", "--api-key", "K"], tmp_path) as served:
            served.ready()
            served.proc.kill()
            served.proc.wait(timeout=10)
    with serve(["--port", "0", "--api-key", "K"], tmp_path) as served:
        base_url = served.ready()
        assert get_json(f"{base_url}/healthz") == {"status": "ok"}
        assert served.terminate() == 0, served.stderr()


@pytest.mark.slow
def test_two_var_dirs_cannot_share_one_sqlite_file(tmp_path: Path) -> None:
    """A serve with its own var dir but the first one's SQLite file refuses, naming it."""
    shared = f"sqlite:///{tmp_path / 'var' / 'carecall.db'}"
    with serve(["--port", "0", "--api-key", "K"], tmp_path) as first:
        first.ready()
        result = start(["gate", "--port", "0", "--api-key", "K", "--db", shared,
                        "--var-dir", str(tmp_path / "other")], tmp_path)
        line = one_failure_line(result)
        assert line == (f"carecall: {tmp_path / 'var' / 'carecall.db'} is in use by another "
                        f"carecall process (pid {first.proc.pid}); stop it or use another --db")
        assert first.terminate() == 0, first.stderr()
    assert not (tmp_path / "other" / "carecall.db").exists()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_gates_with_separate_var_dirs_share_one_postgresql(
        tmp_path: Path, postgres_url: str) -> None:
    """Two gates on one PostgreSQL database, each with its own var dir, both start."""
    args = ["--port", "0", "--api-key", "K", "--db", postgres_url]
    with gate([*args, "--var-dir", "a"], tmp_path) as a:
        a.ready()
        with gate([*args, "--var-dir", "b"], tmp_path) as b:
            base_url = b.ready()
            assert get_json(f"{base_url}/healthz") == {"status": "ok"}
            assert b.terminate() == 0, b.stderr()
        assert a.terminate() == 0, a.stderr()


# -- file modes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_var_dir_is_0700_and_every_file_in_it_0600(tmp_path: Path) -> None:
    """While serve --demo runs, var/ is 0700 and each of its files (the database with its
    -wal and -shm, the keys and secrets, the locks) is 0600, whatever the caller's umask."""
    old = os.umask(0o022)
    try:
        with serve(["--demo", "--port", "0"], tmp_path) as served:
            read_demo(served)
            var = tmp_path / "var"
            running = modes(var)
            assert served.terminate() == 0, served.stderr()
    finally:
        os.umask(old)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    expected = {"carecall.db", "carecall.db-wal", "carecall.db-shm", "api_key",
                "signing_key.pem", "resume_secret", "calendar_secret", "carecall.lock",
                "carecall.db.lock"}
    assert set(running) == expected
    assert {name: 0o600 for name in running} == running


@pytest.mark.slow
def test_files_an_older_version_left_readable_are_restricted_on_start(tmp_path: Path) -> None:
    """An existing var/ at 0755 with a 0644 database is tightened to 0700 / 0600 on start."""
    with serve(["--port", "0", "--api-key", "K"], tmp_path) as served:
        served.ready()
        assert served.terminate() == 0, served.stderr()
    var = tmp_path / "var"
    var.chmod(0o755)
    (var / "carecall.db").chmod(0o644)
    with serve(["--port", "0", "--api-key", "K"], tmp_path) as served:
        served.ready()
        assert served.terminate() == 0, served.stderr()
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert modes(var)["carecall.db"] == 0o600


def test_an_sqlite_path_in_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    """--db sqlite:///no/such/dir/x.db exits non-zero naming the folder; nothing is created."""
    result = start(["serve", "--port", "0", "--db", "sqlite:///no/such/dir/x.db"], tmp_path)
    assert one_failure_line(result) == (
        "carecall: the folder of the SQLite database no/such/dir/x.db does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_sqlite_path_in_an_existing_folder_outside_the_var_dir_works(
        tmp_path: Path) -> None:
    """--db sqlite:///data/x.db in an existing folder starts, guarded by data/x.db.lock."""
    (tmp_path / "data").mkdir()
    with serve(["--port", "0", "--api-key", "K", "--db", "sqlite:///data/x.db"],
               tmp_path) as served:
        served.ready()
        names = {p.name for p in (tmp_path / "data").iterdir()}
        assert served.terminate() == 0, served.stderr()
    assert {"x.db", "x.db.lock"} <= names
    assert not (tmp_path / "var" / "carecall.db").exists()


# -- every start-up failure: one line, non-zero, no traceback ----------------------------


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    """Run ``carecall ARGV`` in-process up to argparse's refusal; its stderr lines."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return captured.err.splitlines()


@pytest.mark.parametrize(("command", "port"), [("serve", "99999"), ("gate", "-1"),
                                                ("serve", "http"), ("gate", "65536")])
def test_a_port_outside_0_65535_is_a_usage_error_of_the_subcommand(
        command: str, port: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--port 99999 (or -1, 65536, a word) exits 2 with the subcommand's usage and error."""
    lines = usage_error([command, "--port", port], capsys, monkeypatch)
    assert lines[0].startswith(f"usage: carecall {command} ")
    assert lines[-1] == (f"carecall {command}: error: argument --port: a port is a whole "
                         f"number from 0 to 65535 (got '{port}'; --port or CARECALL_PORT)")


def test_the_port_bounds_themselves_are_accepted() -> None:
    """Ports 0 and 65535 parse (0 picks a free port)."""
    parser = cli.build_parser()
    assert [parser.parse_args(["gate", "--port", p]).port for p in ("0", "65535")] == [0, 65535]


def test_a_bad_port_in_the_environment_is_a_usage_error_too(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """CARECALL_PORT=abc exits 2 with serve's usage, naming the variable."""
    lines = usage_error(["serve"], capsys, monkeypatch, CARECALL_PORT="abc")
    assert lines[0].startswith("usage: carecall serve ")
    assert "CARECALL_PORT" in lines[-1]


def test_a_bad_log_level_in_the_environment_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """CARECALL_LOG_LEVEL=loud exits 2 naming the levels (lower case 'debug' is accepted)."""
    lines = usage_error(["gate"], capsys, monkeypatch, CARECALL_LOG_LEVEL="loud")
    assert lines[-1].startswith("carecall gate: error: argument --log-level: must be one of")
    monkeypatch.setenv("CARECALL_LOG_LEVEL", "debug")
    assert cli.build_parser().parse_args(["gate"]).log_level == "DEBUG"


@pytest.mark.parametrize("command", ["serve", "gate", "peer"])
def test_an_unknown_option_gets_the_subcommand_usage(
        command: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """serve/gate/peer --bogus print that subcommand's usage and error, exit 2."""
    args = [command, "--bogus"] + (["http://127.0.0.1:1/s/room#t=x"] if command == "peer" else [])
    lines = usage_error(args, capsys, monkeypatch)
    assert lines[0].startswith(f"usage: carecall {command} ")
    assert lines[-1] == f"carecall {command}: error: unrecognized arguments: --bogus"


def test_an_unknown_top_level_option_keeps_the_top_level_usage(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """carecall --bogus serve still prints carecall's own usage (the option is not serve's)."""
    lines = usage_error(["--bogus", "serve"], capsys, monkeypatch)
    assert lines[0].startswith("usage: carecall [-h] COMMAND")
    assert lines[-1] == "carecall: error: unrecognized arguments: --bogus"


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A port another socket listens on: one line naming it, exit != 0."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start(["serve", "--port", str(port), "--api-key", "K"], tmp_path)
    assert one_failure_line(result) == (
        f"carecall: cannot listen on 127.0.0.1:{port}: Address already in use")


@pytest.mark.postgres
@pytest.mark.parametrize(("url", "reason"), [
    ("postgresql://postgres@127.0.0.1:1/x", "connection refused"),
    (f"{PG}/carecall_no_such_db", 'database "carecall_no_such_db" does not exist'),
    ("postgresql://nobody:s3cret@127.0.0.1:5432/x", 'role "nobody" does not exist'),
])
def test_a_database_that_cannot_be_opened_is_one_line_without_its_password(
        tmp_path: Path, url: str, reason: str) -> None:
    """Unreachable, missing or refusing PostgreSQL: one line with the reason; no password."""
    result = start(["gate", "--port", "0", "--api-key", "K", "--db", url], tmp_path)
    line = one_failure_line(result)
    shown = url.replace(":s3cret@", ":***@")
    assert line == f"carecall: cannot open the database {shown}: {reason}"
    assert "s3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize("url", ["sqlite:///", "postgresql://u@h:port/x"])
def test_a_database_url_that_cannot_work_is_one_line(tmp_path: Path, url: str) -> None:
    """An empty SQLite path or a non-numeric port: one line, exit 2, nothing written."""
    result = start(["gate", "--db", url], tmp_path)
    assert one_failure_line(result).startswith("carecall: ")
    assert result.returncode == 2
    assert not (tmp_path / "var").exists()


def test_a_var_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    """--var-dir naming a regular file: one line saying it is not a directory."""
    (tmp_path / "state").write_text("not a dir")
    result = start(["serve", "--var-dir", "state", "--port", "0"], tmp_path)
    assert one_failure_line(result) == (
        "carecall: state is not a directory (see --var-dir)")


def test_a_var_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    """--var-dir under a regular file cannot be created: one line naming it."""
    (tmp_path / "file").write_text("")
    result = start(["serve", "--var-dir", "file/var", "--port", "0"], tmp_path)
    assert one_failure_line(result) == "carecall: cannot create file/var/: Not a directory"


def test_an_unwritable_var_dir_is_one_line(tmp_path: Path) -> None:
    """A var dir nothing may be created in: one line, exit != 0, nothing written (as root,
    which may write anywhere, the directory is made immutable with chattr +i)."""
    var = tmp_path / "var"
    var.mkdir(mode=0o500)
    root = os.geteuid() == 0
    if root:
        locked = subprocess.run(["chattr", "+i", str(var)], capture_output=True, text=True,
                                timeout=10)
        assert locked.returncode == 0, f"chattr +i is needed as root: {locked.stderr}"
    try:
        result = start(["gate", "--port", "0", "--api-key", "K"], tmp_path)
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(var)], check=True, timeout=10)
        var.chmod(0o700)
    reason = "Operation not permitted" if root else "Permission denied"
    assert one_failure_line(result) == f"carecall: cannot write in var/: {reason}"
    assert list(var.iterdir()) == []


def _rsa_pem() -> bytes:
    return generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


@pytest.mark.parametrize("content", [b"garbage", b"", "rsa"], ids=["garbage", "empty", "rsa"])
def test_a_bad_signing_key_file_is_one_line(tmp_path: Path, content: bytes | str) -> None:
    """A signing key file that is not an Ed25519 PEM key: one line naming the file."""
    key = tmp_path / "key.pem"
    key.write_bytes(_rsa_pem() if content == "rsa" else content)  # type: ignore[arg-type]
    result = start(["serve", "--port", "0", "--api-key", "K"], tmp_path,
                   CARECALL_SIGNING_KEY=str(key))
    assert one_failure_line(result) == (
        f"carecall: {key} does not hold an unencrypted Ed25519 private key in PEM form "
        f"(see CARECALL_SIGNING_KEY)")


def test_a_bad_calendar_secret_is_one_line(tmp_path: Path) -> None:
    """var/calendar_secret that is not 32 hex bytes: one line naming the file."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "calendar_secret").write_text("zz\n")
    result = start(["gate", "--port", "0", "--api-key", "K"], tmp_path)
    assert one_failure_line(result) == (
        "carecall: var/calendar_secret must hold at least 32 bytes, hex-encoded")


def test_an_empty_api_key_file_is_one_line(tmp_path: Path) -> None:
    """An empty var/api_key is refused (a blank key would lock the booking system out)."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "api_key").write_text("\n")
    result = start(["gate", "--port", "0"], tmp_path)
    assert one_failure_line(result).startswith("carecall: var/api_key is empty")


@pytest.mark.slow
def test_a_demo_that_would_need_another_booking_cancelled_is_one_line(tmp_path: Path) -> None:
    """serve --demo while the demo professional has a booking made through the API in the
    next 50 minutes: one line naming it, exit 1, and that booking stays confirmed."""
    auth = {"Authorization": "Bearer K"}
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    with serve(["--port", "0", "--api-key", "K"], tmp_path) as served:
        api = f"{served.ready()}/api/v1"
        for path, body in (
                ("professionals/demo-professional", {
                    "name": "Dr Demo", "email": "p@example.org", "timezone": "UTC",
                    "availability": []}),
                ("clients/demo-client", {"name": "Demo", "email": "c@example.org",
                                         "timezone": "UTC", "hub_id": None}),
                ("bookings/api-1", {
                    "professional_id": "demo-professional", "client_id": "demo-client",
                    "starts_at": starts.isoformat(),
                    "ends_at": (starts + timedelta(minutes=50)).isoformat(),
                    "funding": "private", "source": "direct"})):
            status, answer = request_json("PUT", f"{api}/{path}", body, auth)
            assert status in (200, 201), answer
        assert served.terminate() == 0, served.stderr()

    result = start(["serve", "--demo", "--port", "0", "--api-key", "K"], tmp_path)
    line = one_failure_line(result)
    assert result.returncode == 1
    assert line.startswith("carecall: --demo: the demo professional has booking 'api-1' from ")
    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "carecall.db")) as db:
        rows = db.execute("SELECT booking_id, status FROM bookings").fetchall()
    assert rows == [("api-1", "confirmed")]
