"""Running carecall as real processes: `carecall serve` and `carecall peer` from tests."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
CARECALL = [sys.executable, "-m", "carecall"]
READY = re.compile(r"^carecall listening on http://(127\.0\.0\.1):(\d+)$")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any CARECALL_* setting, with the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARECALL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Served:
    """A running ``carecall serve``: its stdout read line by line, stderr kept in a file."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, *,
                 prefix: list[str] | None = None) -> None:
        self.stderr_path = cwd / f"stderr-{os.getpid()}-{id(self)}.log"
        self._stderr: IO[str] = self.stderr_path.open("w")
        # ``prefix``: a command that runs carecall, such as prlimit with its limits.
        self.proc = subprocess.Popen([*(prefix or []), *CARECALL, *args], cwd=cwd,
                                     env=env or clean_env(),
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base_url = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def line(self, timeout: float = 30.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; stderr:\n{self.stderr()}"
                                 ) from None
        if line is None:
            raise AssertionError(f"stdout closed (exit {self.proc.poll()}); stderr:\n"
                                 f"{self.stderr()}")
        return line

    def ready(self) -> str:
        """Wait for the ready line; return the base URL it names."""
        line = self.line()
        match = READY.match(line)
        assert match, f"not the ready line: {line!r}; stderr:\n{self.stderr()}"
        assert int(match.group(2)) > 0
        self.base_url = f"http://{match.group(1)}:{match.group(2)}"
        return self.base_url

    def rest_of_stdout(self) -> list[str]:
        """Every further stdout line, once the process has exited."""
        self._reader.join(timeout=10)
        lines = []
        while (line := self._lines.get_nowait()) is not None:
            lines.append(line)
        return lines

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (the process must be gone within ``timeout``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after SIGTERM; stderr:\n"
                                 f"{self.stderr()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@contextmanager
def serve(args: list[str], cwd: Path, env: dict[str, str] | None = None, *,
          prefix: list[str] | None = None) -> Iterator[Served]:
    served = Served(["serve", *args], cwd, env, prefix=prefix)
    try:
        yield served
    finally:
        served.close()


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def request_json(method: str, url: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP call with a JSON body; (status, decoded JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
