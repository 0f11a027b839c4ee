"""`carecall peer` input and reporting: the link from stdin or a file, an unreachable server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from tests.processes import CARECALL, Served, clean_env, serve
from tests.test_peer_e2e import KEY, book, now

pytestmark = [pytest.mark.slow]

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzZWNyZXQiOiJ0b2tlbiJ9.c2lnbmF0dXJlLW5vdC1yZWFs"


def peer(*args: str, stdin: str | None = None, cwd: Path | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CARECALL, "peer", *args], env=clean_env(), text=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, cwd=cwd, check=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    env = clean_env(CARECALL_OVERRUN_SECONDS="60", CARECALL_JOIN_EARLY_SECONDS="900")
    with serve(["--port", "0", "--api-key", KEY], tmp_path, env) as served:
        served.ready()
        yield served


def test_a_call_with_the_links_from_standard_input_and_from_a_file(
        server: Served, tmp_path: Path) -> None:
    """`carecall peer -` reads its link from stdin, `--link-file` from a file; neither
    link is on the command line, and the call succeeds for both. The client's --chat
    arrives over the data channel and is printed by the professional's peer."""
    links = book(server, "hidden", now() - timedelta(seconds=30), now() + timedelta(minutes=5))
    link_file = tmp_path / "link.txt"
    link_file.write_text(links["client"] + "\n")
    common = ["--duration", "2", "--connect-timeout", "40"]
    with subprocess.Popen(
            [*CARECALL, "peer", "-", "--stats-json", str(tmp_path / "pro.json"), *common],
            env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True) as from_stdin, subprocess.Popen(
            [*CARECALL, "peer", "--link-file", str(link_file),
             "--chat", "hello over the data channel",
             "--stats-json", str(tmp_path / "client.json"), *common],
            env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True) as from_file:
        try:
            assert from_stdin.stdin is not None
            # One line, and the pipe stays open: the peer must not wait for end of file
            # (if it did, the other peer would wait for it in vain).
            from_stdin.stdin.write(links["professional"] + "\n")
            from_stdin.stdin.flush()
            _out, err_file = from_file.communicate(timeout=90)
            _out, err_stdin = from_stdin.communicate(timeout=30)
        finally:
            for proc in (from_stdin, from_file):
                if proc.poll() is None:
                    proc.kill()
    assert from_stdin.returncode == 0, err_stdin
    assert from_file.returncode == 0, err_file
    assert "admitted as professional" in err_stdin
    assert "admitted as client" in err_file
    assert "carecall peer: chat from client: hello over the data channel" in err_stdin
    for role in ("pro", "client"):
        stats = json.loads((tmp_path / f"{role}.json").read_text())
        assert stats["frames_received"] >= 1
        assert stats["chat_received"] == (1 if role == "pro" else 0)


@pytest.mark.parametrize("case,args,stdin,message", [
    ("empty stdin", ["-"], "", "no link in standard input"),
    ("a blank line on stdin", ["-"], "\nhttp://a/s/r#t=x\n", "no link in standard input"),
    ("two lines in the file", ["--link-file", "two.txt"], None, None),
    ("not a link on stdin", ["-"], "hello\n", "invalid link"),
    ("missing file", ["--link-file", "no-such-file.txt"], None,
     "--link-file: no such file: no-such-file.txt"),
    ("empty file", ["--link-file", "empty.txt"], None, "no link in --link-file empty.txt"),
    ("a directory", ["--link-file", "."], None, "--link-file: cannot read .:"),
    ("both", ["http://a/s/r#t=x", "--link-file", "empty.txt"], None,
     "give the link as LINK or with --link-file, not both"),
    ("neither", [], None, "no link: give LINK, '-' to read it from standard input"),
    ("empty chat", ["http://a/s/r#t=x", "--chat", ""], None,
     "--chat: a chat message is 1 to 2000 characters"),
])
def test_bad_link_input_is_one_line_and_exit_2(tmp_path: Path, case: str, args: list[str],
                                               stdin: str | None, message: str | None) -> None:
    """A missing, empty, ambiguous or unreadable link source: exit 2 with one line."""
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "two.txt").write_text("http://a/s/r#t=x\nhttp://b/s/r#t=y\n")
    result = peer(*args, stdin=stdin, cwd=tmp_path)
    assert result.returncode == 2, (case, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (case, result.stderr)
    if message is None:
        assert lines[0].endswith("--link-file two.txt holds 2 lines; expected one link")
    else:
        assert message in lines[0], (case, lines)
    assert "Traceback" not in result.stderr


def test_an_unreachable_server_is_reported_while_retrying_and_in_the_reason() -> None:
    """With nothing listening, stderr says `cannot reach ...: connection refused; retrying
    in ... s` as it backs off, the last line names that cause, and the token never shows."""
    port = unused_port()
    origin = f"http://127.0.0.1:{port}"
    result = peer(f"{origin}/s/room1#t={TOKEN}", "--connect-timeout", "3", timeout=30)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    retries = [line for line in lines
               if line.startswith(f"carecall peer: cannot reach {origin}: connection refused; "
                                  "retrying in ")]
    assert len(retries) >= 2, lines
    # The backoff grows between attempts.
    delays = [float(line.rsplit(" ", 2)[1]) for line in retries]
    assert delays[1] > delays[0], delays
    assert lines[-1] == f"cannot reach {origin}: connection refused", lines
    for secret in (TOKEN, TOKEN.split(".")[1]):
        assert secret not in result.stderr


def test_peer_help_names_the_ways_to_pass_the_link() -> None:
    """`carecall peer --help` explains `-` (stdin), `--link-file` and why they exist."""
    result = peer("--help", timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--link-file PATH" in text
    assert "or - to read it from standard input" in text
    assert "visible to every local user" in text
    assert "carecall peer -" in text
    assert "--chat TEXT" in text
