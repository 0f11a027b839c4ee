"""Fuzzing the boundaries a stranger reaches: the WebSocket message parser, join token
verification (signalling's and the gate's) and every REST body.

Each target takes one generated input and says whether the code under it behaved: a
refusal with the project's own error (``SignallingError``, ``Unauthorized``, a 4xx) is
fine; any other exception, or a 5xx, is a *finding*. The inputs come from hypothesis
strategies shaped like the real thing (wire messages with the contract's types, tokens
signed with the right key and random claims, bodies with the routes' own field names)
mixed with noise and deep nesting. The time each input takes is measured too: the
service runs these on its event loop, so the slowest input is the longest stall a
client can cause with one message.

    python -m bench.fuzz --inputs 100000          # every target, 100,000 inputs each
    python -m bench.fuzz --inputs 2000 --target ws_parse

The CI tests (tests/test_fuzz.py) run the same targets with a few hundred inputs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from booking_gate.errors import Unauthorized
from booking_gate.model import (
    Booking,
    BookingId,
    BookingStatus,
    ClientId,
    Funding,
    HubId,
    ProfessionalId,
    Role,
    RoomId,
    Source,
)
from booking_gate.tokens import TokenIssuer
from signalling import messages
from signalling import tokens as signalling_tokens
from signalling.errors import SignallingError

STALL_LIMIT = 0.100  # seconds: the issue's bound on an event-loop stall


@dataclass
class Report:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    slowest_input: str = ""
    findings: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.target:<16} {self.inputs:>8} inputs {self.seconds:>8.1f} s "
                f"longest stall {self.slowest * 1000:>7.2f} ms  "
                f"findings {len(self.findings)}")


# -- strategies ---------------------------------------------------------------------------

json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
               | st.text(max_size=40))
json_values = st.recursive(
    json_leaves, lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5), max_leaves=30)
deep = st.builds(lambda n, c: c * n, st.integers(20, 70_000), st.sampled_from(["[", "{\"a\":"]))
noise = st.text(max_size=300) | deep


def _wire_message() -> st.SearchStrategy[str]:
    kinds = st.sampled_from([*messages.CLIENT_TYPES, "x-verify", "x-chat", "welcome", ""])
    fields = st.dictionaries(
        st.sampled_from(["token", "agent", "can_rollback", "resume", "description",
                         "candidate", "state", "sdp", "type", "sdpMid", "sdpMLineIndex"]),
        json_values | st.fixed_dictionaries({"type": st.sampled_from(
            ["offer", "answer", "pranswer", "rollback", "x"]), "sdp": json_leaves}),
        max_size=5)
    shaped = st.builds(lambda k, f: json.dumps({"type": k, **f}), kinds, fields)
    return shaped | noise | json_values.map(json.dumps)


ws_messages = _wire_message()

# -- the WebSocket parser -----------------------------------------------------------------


def ws_parse(text: str) -> None:
    with contextlib.suppress(SignallingError):
        messages.parse(text)


# -- join tokens ------------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()
NOW = datetime(2026, 11, 23, 9, 55, tzinfo=UTC)
STARTS = NOW + timedelta(minutes=5)
ISSUER = TokenIssuer(KEY, timedelta(minutes=15), timedelta(minutes=15))
BOOKING = Booking(
    booking_id=BookingId("b-1"), professional_id=ProfessionalId("pro-1"),
    client_id=ClientId("cli-1"), hub_id=HubId("acme"), starts_at=STARTS,
    ends_at=STARTS + timedelta(minutes=50), funding=Funding.SPONSORED, source=Source.HUB,
    status=BookingStatus.CONFIRMED, room_id=RoomId("room-1"),
    created_at=NOW - timedelta(days=1), changed_at=NOW - timedelta(days=1))
VALID = ISSUER.issue(BOOKING, Role.CLIENT, NOW).token
VALID_CLAIMS = jwt.decode(VALID, options={"verify_signature": False})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mutate(token: str, index: int, char: str) -> str:
    index %= len(token)
    return token[:index] + char + token[index + 1:]


def _signed(changes: dict[str, Any], kid: str) -> str:
    """A token with the right signature over any claims (PyJWT would refuse to encode
    some of them): what a verifier sees if the claims, not the signature, are odd."""
    header = _b64(json.dumps({"alg": "EdDSA", "kid": kid, "typ": "JWT"}).encode())
    payload = _b64(json.dumps({**VALID_CLAIMS, **changes}).encode())
    signature = _b64(KEY.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


_claims = st.dictionaries(st.sampled_from(sorted(VALID_CLAIMS)), json_values, max_size=4)
signed = st.builds(_signed, _claims, st.sampled_from([ISSUER.kid, "other", ""]))
headers_forged = st.builds(lambda header, rest: _b64(json.dumps(header).encode()) + "." + rest,
                           st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit"]),
                                           json_values, max_size=3),
                           st.just(VALID.split(".", 1)[1]))
join_tokens = (signed | headers_forged | st.builds(_mutate, st.just(VALID), st.integers(0, 999),
                                                   st.characters(codec="ascii"))
               | st.text(max_size=200) | st.just(VALID))


def token_verify(token: str) -> None:
    """Both verifiers: signalling's (key id, signature, claims) and the gate's."""
    try:
        kid = signalling_tokens.key_id(token)
        if kid == ISSUER.kid:
            signalling_tokens.verify(token, KEY.public_key())
    except SignallingError:
        pass
    with contextlib.suppress(Unauthorized):
        ISSUER.verify(token, NOW)


# -- REST bodies --------------------------------------------------------------------------

IDS = {"professional_id": "pro-1", "client_id": "cli-1", "hub_id": "acme",
       "booking_id": "b-1", "room_id": "room-x", "request_id": "req-1"}
# hypothesis takes naive bounds and attaches the zone itself.
TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),  # noqa: DTZ001
                     timezones=st.just(UTC)).map(lambda d: d.isoformat())


def _fields(schema: Any, components: dict[str, Any], seen: set[str]) -> set[str]:
    """Every property name in ``schema``, following $ref."""
    found: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            found |= _fields(components.get(ref.rsplit("/", 1)[-1]), components, seen)
        for name, sub in (schema.get("properties") or {}).items():
            found.add(name)
            found |= _fields(sub, components, seen)
        for value in schema.values():
            if isinstance(value, dict | list):
                found |= _fields(value, components, seen)
    elif isinstance(schema, list):
        for item in schema:
            found |= _fields(item, components, seen)
    return found


def rest_routes() -> list[tuple[str, str, list[str]]]:
    """(method, path with known ids, field names) of every operation with a body."""
    from booking_gate.openapi import openapi_document

    document = openapi_document("http://fuzz.invalid")
    components = document.get("components", {}).get("schemas", {})
    routes = []
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            path = template
            for name, value in IDS.items():
                path = path.replace("{" + name + "}", value)
            names = sorted(_fields(operation["requestBody"], components, set()))
            routes.append((method.upper(), path, names))
    return routes


def rest_bodies(routes: list[tuple[str, str, list[str]]]) -> st.SearchStrategy[Any]:
    def body(names: list[str]) -> st.SearchStrategy[bytes]:
        values = json_values | TIMES | st.sampled_from(sorted(IDS.values()))
        shaped = st.dictionaries(st.sampled_from(names or ["x"]), values, max_size=8)
        return (shaped.map(lambda d: json.dumps(d).encode())
                | noise.map(str.encode) | st.binary(max_size=200))
    return st.one_of(*(st.tuples(st.just(i), body(r[2])) for i, r in enumerate(routes)))


class RestTarget:
    """A real ``carecall serve`` on a fresh var dir (SQLite), seeded, driven over one
    keep-alive HTTP connection. Its stalls are its own figures: the event-loop lag it
    measures itself and exports as ``carecall_event_loop_lag_seconds``."""

    READY = re.compile(r"^carecall listening on http://127\.0\.0\.1:(\d+)$")
    KEY = "fuzz-key-0123456789"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.routes = rest_routes()
        self.proc: subprocess.Popen[str] | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.port = 0

    def __enter__(self) -> RestTarget:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARECALL_")}
        repo = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
        with (self.folder / "serve.log").open("w") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carecall", "serve", "--port", "0", "--api-key",
                 self.KEY, "--var-dir", str(self.folder / "var"), "--log-level", "WARNING"],
                cwd=self.folder, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # bounded: the process prints or exits
        match = self.READY.match(line)
        if match is None:
            self.__exit__()
            raise RuntimeError(f"carecall serve did not start: {line!r}; see "
                               f"{self.folder / 'serve.log'}")
        self.port = int(match.group(1))
        for path, body in (
                ("/api/v1/professionals/pro-1", {"name": "P", "email": "p@example.org",
                                                 "timezone": "UTC"}),
                ("/api/v1/clients/cli-1", {"name": "C", "email": "c@example.org",
                                           "timezone": "UTC", "hub_id": "acme"})):
            status = self._send("PUT", path, json.dumps(body).encode())
            assert status in (200, 201), status
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def _send(self, method: str, path: str, body: bytes) -> int:
        for attempt in (1, 2):  # the server may close an idle or refused connection
            conn = self.conn or http.client.HTTPConnection("127.0.0.1", self.port,
                                                           timeout=30)
            self.conn = conn
            try:
                conn.request(method, path, body=body, headers={
                    "Authorization": f"Bearer {self.KEY}",
                    "Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.conn = None
                return response.status
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def __call__(self, case: tuple[int, bytes]) -> int:
        index, body = case
        method, path, _ = self.routes[index]
        return self._send(method, path, body)

    def lag(self) -> tuple[float, int, int]:
        """(largest lag bucket with a sample, samples over 100 ms, samples) from the
        service's own /metrics."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        buckets = [(float(le), float(n)) for le, n in re.findall(
            r'^carecall_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text,
            re.MULTILINE)]
        total = max(n for _, n in buckets)
        within = dict(buckets).get(STALL_LIMIT, 0.0)
        previous, largest = 0.0, 0.0
        for le, n in sorted(buckets):
            if n > previous:
                largest = le
            previous = n
        return largest, int(total - within), int(total)


# -- running ------------------------------------------------------------------------------


def run(name: str, strategy: st.SearchStrategy[Any], target: Callable[[Any], object],
        inputs: int, *, ok: Callable[[object], bool] = lambda result: True,
        progress: bool = False) -> Report:
    """Feed ``inputs`` generated inputs to ``target``; collect findings, never stop.

    The longest stall is the slowest input: a synchronous target runs on the service's
    loop as one piece."""
    report = Report(name)
    started = time.perf_counter()

    @settings(max_examples=inputs, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def feed(value: Any) -> None:
        t0 = time.perf_counter()
        try:
            result = target(value)
        except Exception as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            report.findings.append(f"{type(error).__name__} at {Path(where.filename).name}:"
                                   f"{where.lineno} on {str(value)[:80]!r}")
        else:
            if not ok(result):
                report.findings.append(f"{result} on {str(value)[:120]!r}")
        spent = time.perf_counter() - t0
        if spent > report.slowest:
            report.slowest, report.slowest_input = spent, str(value)[:160]
        report.inputs += 1
        if progress and report.inputs % 10_000 == 0:
            print(f"  {name}: {report.inputs} inputs, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)

    feed()
    report.seconds = time.perf_counter() - started
    return report


def run_all(inputs: int, only: str | None = None, progress: bool = False) -> list[Report]:
    reports = []
    if only in (None, "ws_parse"):
        reports.append(run("ws_parse", ws_messages, ws_parse, inputs, progress=progress))
    if only in (None, "token_verify"):
        reports.append(run("token_verify", join_tokens, token_verify, inputs,
                           progress=progress))
    if only in (None, "rest_bodies"):
        with tempfile.TemporaryDirectory() as folder, RestTarget(Path(folder)) as rest:
            report = run("rest_bodies", rest_bodies(rest.routes), rest, inputs,
                         ok=lambda status: isinstance(status, int) and status < 500,
                         progress=progress)
            largest, over, samples = rest.lag()
            # The service's own stall figure replaces the per-request time (which
            # includes waiting on the database and the round trip).
            report.slowest = largest
            report.slowest_input = (f"{over} of {samples} event-loop lag samples of the "
                                    f"service over {STALL_LIMIT * 1000:.0f} ms")
            reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000,
                        help="inputs per target (default 100000)")
    parser.add_argument("--target", choices=["ws_parse", "token_verify", "rest_bodies"],
                        help="one target only (default: all three)")
    args = parser.parse_args(argv)
    if args.inputs < 1:
        parser.error("--inputs must be at least 1")
    reports = run_all(args.inputs, args.target, progress=True)
    for report in reports:
        print(report.line())
        if report.target == "rest_bodies":
            print(f"  (the stall is the service's largest event-loop lag bucket, upper "
                  f"bound; {report.slowest_input})")
        for finding in report.findings[:10]:
            print(f"  finding: {finding}")
    stalled = [r for r in reports if r.slowest > STALL_LIMIT]
    for report in stalled:
        print(f"{report.target}: a stall of {report.slowest * 1000:.1f} ms > "
              f"{STALL_LIMIT * 1000:.0f} ms ({report.slowest_input})")
    return 1 if any(r.findings for r in reports) or stalled else 0


if __name__ == "__main__":
    sys.exit(main())
