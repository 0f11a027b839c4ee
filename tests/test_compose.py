"""docker-compose.yml, deploy/ and .env.example agree with carecall (Docker does not run
here, so the files are checked instead): every `carecall` command parses with the CLI's
own parser, every CARECALL_* variable is read by the code, required secrets use
``${VAR:?...}``, every service has a health check, nginx routes each path to the right
process (WebSocket upgrade and a replaced X-Forwarded-For included) without logging
addresses, and coturn takes TURN-REST credentials from the shared secret. The two
entrypoint scripts in deploy/ are run for real.

Each check is a function that returns its problems; the last tests feed each one a
broken snippet and see it complain.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from carecall.cli import build_parser
from tests.test_docs_agree import env_vars_in_code, subcommands

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
NGINX = REPO / "deploy" / "nginx.conf"
TURN_CONF = REPO / "deploy" / "turnserver.conf"
ENV_EXAMPLE = REPO / ".env.example"

# Must be given in .env: compose refuses to start without them.
REQUIRED = ("CARECALL_API_KEY", "CARECALL_RESUME_SECRET", "CARECALL_TURN_SECRET",
            "CARECALL_PUBLIC_URL", "CARECALL_TURN_URLS")
SECRETS = ("CARECALL_API_KEY", "CARECALL_RESUME_SECRET", "CARECALL_TURN_SECRET")
# What a signalling node cannot run without (cli._node, cli._resume_secret).
NODE_NEEDS = ("CARECALL_API_KEY", "CARECALL_RESUME_SECRET", "CARECALL_PUBLIC_URL")
# SIGTERM: sockets get 1001, then the reporter flushes for up to 10 s, then the registry
# and the gate link close; compose's SIGKILL must not cut that short.
MIN_NODE_GRACE = 30.0
# Peer ranges the TURN relay must never reach.
PRIVATE_PEERS = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                 "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
CARECALL_VAR = re.compile(r"\bCARECALL_[A-Z0-9_]*[A-Z0-9]\b")


def load_compose(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose allows a list of K=V too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def argv(service: dict[str, Any]) -> list[str]:
    """What a service runs: its entrypoint and command, as a list of words."""
    words: list[str] = []
    for part in (service.get("entrypoint"), service.get("command")):
        if isinstance(part, str):
            words += shlex.split(part)
        elif isinstance(part, list):
            words += [str(word) for word in part]
    return words


def carecall_commands(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(service, arguments after `carecall`) for every service that runs carecall."""
    found = []
    for name, service in compose["services"].items():
        words = argv(service)
        if words and Path(words[0]).name == "carecall":
            found.append((name, words[1:]))
    return found


def option(args: list[str], flag: str) -> str | None:
    for index, word in enumerate(args):
        if word == flag and index + 1 < len(args):
            return args[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


# -- checks of docker-compose.yml ----------------------------------------------------


def command_problems(compose: dict[str, Any]) -> list[str]:
    """Each `carecall SUB ...` names a subcommand and only that subcommand's flags, and
    parses with carecall's own parser (so values are right too: a port is a port)."""
    problems = []
    known = subcommands()
    for service, args in carecall_commands(compose):
        if not args or args[0] not in known:
            problems.append(f"{service}: 'carecall {' '.join(args[:1])}' is no subcommand")
            continue
        for word in args[1:]:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and flag not in known[args[0]]:
                problems.append(f"{service}: 'carecall {args[0]}' has no {flag}")
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                build_parser().parse_args(args)
        except SystemExit:
            last = stderr.getvalue().strip().splitlines()[-1:]
            problems.append(f"{service}: carecall refuses {args}: {' '.join(last)}")
    return problems


def variable_problems(compose: dict[str, Any], read: set[str]) -> list[str]:
    """Every CARECALL_* variable a service sets, or the file interpolates, is one the
    code reads."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            names = {key} if key.startswith("CARECALL_") else set()
            names |= {m.group(1) for m in VARIABLE.finditer(value)
                      if m.group(1).startswith("CARECALL_")}
            problems += [f"{name}: {var} is read by nothing in carecall"
                         for var in sorted(names - read)]
    return problems


def secret_problems(compose: dict[str, Any]) -> list[str]:
    """Wherever a required setting is set, it is `${ITSELF:?message}`: compose stops
    with the message instead of starting a node with an empty secret."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if key not in REQUIRED:
                continue
            match = VARIABLE.fullmatch(value.strip())
            if not match or match.group(1) != key or match.group(2) != ":?" \
                    or not (match.group(3) or "").strip():
                problems.append(f"{name}: {key} must be ${{{key}:?message}} (got {value!r})")
    return problems


def topology_problems(compose: dict[str, Any]) -> list[str]:
    """The nodes have what they need, reach the gate and Redis where those listen, and
    share the TURN secret with coturn; a node's drain fits in its stop grace period."""
    problems = []
    services = compose["services"]
    commands = dict(carecall_commands(compose))
    gates = {name for name, args in commands.items() if args[:1] == ["gate"]}
    nodes = [name for name, args in commands.items() if args[:1] == ["signalling"]]
    if not gates or len(nodes) < 2:
        problems.append(f"expected a gate and two signalling nodes (got {sorted(gates)}, "
                        f"{nodes})")
    turn = [name for name, service in services.items()
            if "turnserver" in " ".join(argv(service)) or "coturn" in str(service.get("image"))]
    for node in nodes:
        args, env = commands[node], environment(services[node])
        problems += [f"{node}: a signalling node needs {var}" for var in NODE_NEEDS
                     if var not in env]
        gate_url = option(args, "--gate-url") or ""
        match = re.fullmatch(r"http://([\w.-]+):(\d+)", gate_url)
        if not match or match.group(1) not in gates or \
                option(commands[match.group(1)], "--port") != match.group(2):
            problems.append(f"{node}: --gate-url {gate_url!r} is not where a gate listens")
        redis_url = option(args, "--redis") or ""
        match = re.fullmatch(r"redis://([\w.-]+):(\d+)(/\d+)?", redis_url)
        if not match or "redis" not in str(services.get(match.group(1), {}).get("image")):
            problems.append(f"{node}: --redis {redis_url!r} is not a Redis service")
        if not env.get("CARECALL_TRUSTED_PROXIES"):
            problems.append(f"{node}: CARECALL_TRUSTED_PROXIES is not set: every client "
                            f"would count as the proxy")
        for other in turn:
            if environment(services[other]).get("CARECALL_TURN_SECRET") != \
                    env.get("CARECALL_TURN_SECRET"):
                problems.append(f"{node} and {other} do not share CARECALL_TURN_SECRET")
        grace = duration(str(services[node].get("stop_grace_period", "10s")))
        if grace < MIN_NODE_GRACE:
            problems.append(f"{node}: stop_grace_period {grace:g} s is shorter than a "
                            f"drain ({MIN_NODE_GRACE:g} s)")
    if not turn:
        problems.append("no coturn service")
    return problems


def duration(text: str) -> float:
    """A compose duration ("1m30s", "60s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def healthcheck_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if check.get("disable") or not test or test in (["NONE"], "NONE"):
            problems.append(f"{name}: no health check")
    return problems


def env_example_problems(compose_text: str, example: str, read: set[str]) -> list[str]:
    """.env.example names every variable the compose file takes, only CARECALL_* ones
    that the code reads, and ships no secret's value."""
    problems = []
    given = dict(line.split("=", 1) for line in example.splitlines()
                 if line.strip() and not line.lstrip().startswith("#") and "=" in line)
    for var in sorted({m.group(1) for m in VARIABLE.finditer(compose_text)} - set(given)):
        problems.append(f".env.example does not list {var}")
    problems += [f".env.example: {var} is read by nothing in carecall"
                 for var in sorted(set(CARECALL_VAR.findall(example)) - read)]
    problems += [f".env.example must leave {var} empty (generate it)"
                 for var in SECRETS if given.get(var, "").strip()]
    for var in SECRETS:
        if var in given and "openssl rand" not in example:
            problems.append(f".env.example does not say how to generate {var}")
    return problems


# -- nginx.conf ----------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    children: list[Directive] | None = None  # a block's directives
    parent: Directive | None = field(default=None, repr=False)

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.children or [] if d.name == name]

    def first(self, name: str) -> Directive | None:
        found = self.all(name)
        return found[0] if found else None


# Blanks, a comment, a "quoted" or 'quoted' word, punctuation, or a bare word.
NGINX_TOKEN = re.compile(r"""\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'"""
                         r"""|([{};])|([^\s{};"'#]+)""")


def parse_nginx(text: str) -> Directive:
    """nginx's configuration as a tree of directives (enough of its grammar for ours)."""
    root = Directive("main", [], [])
    stack, words = [root], []
    position = 0
    while position < len(text):
        match = NGINX_TOKEN.match(text, position)
        if not match:
            raise ValueError(f"nginx.conf: cannot read at {text[position:position + 20]!r}")
        position = match.end()
        double, single, punct, word = match.groups()
        if punct is None:
            if double is not None or single is not None or word is not None:
                words.append(next(w for w in (double, single, word) if w is not None))
            continue
        if punct == "}":
            if words or len(stack) == 1:
                raise ValueError("nginx.conf: unbalanced '}' or a directive without ';'")
            stack.pop()
            continue
        if not words:
            raise ValueError(f"nginx.conf: '{punct}' without a directive")
        directive = Directive(words[0], words[1:], [] if punct == "{" else None, stack[-1])
        assert stack[-1].children is not None
        stack[-1].children.append(directive)
        if punct == "{":
            stack.append(directive)
        words = []
    if len(stack) != 1 or words:
        raise ValueError("nginx.conf: a block or directive is not closed")
    return root


def select_location(server: Directive, uri: str) -> Directive | None:
    """The location nginx picks for ``uri``: an exact match, else the longest prefix
    (this configuration uses no regular expressions; they are refused)."""
    best: Directive | None = None
    for location in server.all("location"):
        args = location.args
        if args[0] == "=" and args[1] == uri:
            return location
        if args[0] in ("~", "~*"):
            raise ValueError("regex locations are not understood by this check")
        prefix = args[1] if args[0] == "^~" else args[0]
        if args[0] != "=" and uri.startswith(prefix) and \
                (best is None or len(prefix) > len(best.args[-1])):
            best = location
    return best


def proxy_headers(location: Directive) -> dict[str, str]:
    """The proxy_set_header values in force in ``location``: nginx inherits them from
    the enclosing level only when a level sets none of its own."""
    level: Directive | None = location
    while level is not None:
        own = level.all("proxy_set_header")
        if own:
            return {d.args[0].lower(): " ".join(d.args[1:]) for d in own}
        level = level.parent
    return {}


def server_variables(server: Directive) -> dict[str, str]:
    return {d.args[0]: d.args[1] for d in server.all("set")}


# Paths a browser or node asks for, and who must answer them.
ROUTES = {
    "/api/v1/bookings/b-1": "gate",
    "/.well-known/jwks.json": "gate",
    "/healthz": "gate",
    "/ws": "signalling",
    "/s/room-id": "signalling",
    "/s/assets/app.js": "signalling",
}
NOT_PUBLIC = ("/metrics",)
FORBIDDEN_LOG_VARIABLES = ("$remote_addr", "$binary_remote_addr", "$http_x_forwarded_for",
                           "$proxy_add_x_forwarded_for", "$request", "$request_uri",
                           "$args", "$query_string", "$http_referer", "$realip_remote_addr")


def nginx_problems(text: str, upstreams: dict[str, str]) -> list[str]:
    """``upstreams``: the URL each role is served at, from compose ("gate" and
    "signalling" to "http://NAME:PORT")."""
    problems = []
    root = parse_nginx(text)
    http = root.first("http")
    if http is None:
        return ["nginx.conf has no http block"]
    servers = http.all("server")
    tls = [s for s in servers if any("ssl" in d.args for d in s.all("listen"))]
    plain = [s for s in servers if s not in tls]
    if len(tls) != 1:
        return [f"nginx.conf needs one TLS server (got {len(tls)})"]
    server = tls[0]
    if not server.first("ssl_certificate") or not server.first("ssl_certificate_key"):
        problems.append("the TLS server has no certificate")
    for redirect in plain:
        returned = redirect.first("location")
        answer = (returned.first("return") if returned else None) or redirect.first("return")
        if answer is None or answer.args[0] not in ("301", "308") or \
                not answer.args[1].startswith("https://"):
            problems.append("the plain-HTTP server must only redirect to https")
    variables = server_variables(server)
    for uri, role in ROUTES.items():
        location = select_location(server, uri)
        target = location.first("proxy_pass") if location else None
        if target is None:
            problems.append(f"{uri} is not proxied (it should go to {role})")
            continue
        url = variables.get(target.args[0], target.args[0])
        if url.rstrip("/") != upstreams[role]:
            problems.append(f"{uri} goes to {url}, not to {role} ({upstreams[role]})")
        headers = proxy_headers(location)
        if headers.get("x-forwarded-for") != "$remote_addr":
            problems.append(f"{uri}: X-Forwarded-For must be replaced by $remote_addr "
                            f"(got {headers.get('x-forwarded-for')!r})")
        if uri == "/ws":
            if headers.get("upgrade") != "$http_upgrade" or \
                    headers.get("connection") not in ("$connection_upgrade", "upgrade"):
                problems.append("/ws does not pass the WebSocket upgrade headers")
            if (location.first("proxy_http_version")
                    or server.first("proxy_http_version") or
                    Directive("proxy_http_version", ["1.0"])).args != ["1.1"]:
                problems.append("/ws needs proxy_http_version 1.1")
    for uri in NOT_PUBLIC:
        location = select_location(server, uri)
        if location is None or location.first("proxy_pass") is not None:
            problems.append(f"{uri} must not be proxied to the public")
    for log_format in http.all("log_format"):
        used = re.findall(r"\$\{?([a-z0-9_]+)", " ".join(log_format.args[1:]))
        problems += [f"log_format {log_format.args[0]} logs ${name}" for name in used
                     if f"${name}" in FORBIDDEN_LOG_VARIABLES or name.startswith("arg_")]
    error_logs = root.all("error_log") + http.all("error_log")
    if not error_logs or any(d.args[-1] not in ("crit", "alert", "emerg") for d in error_logs):
        problems.append("error_log must be at crit (its lines name client addresses)")
    return problems


# -- coturn --------------------------------------------------------------------------


def turn_settings(text: str) -> list[tuple[str, str]]:
    settings = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings.append((name.strip(), value.strip()))
    return settings


def peer_range(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address,
                                    ipaddress.IPv4Address | ipaddress.IPv6Address]:
    low, _, high = value.partition("-")
    return ipaddress.ip_address(low), ipaddress.ip_address(high or low)


def turn_problems(text: str, published: tuple[int, int] | None) -> list[str]:
    """coturn checks TURN-REST credentials, has no CLI, refuses multicast and private
    peers, keeps its secret out of the file, and relays on the ports compose publishes."""
    settings = turn_settings(text)
    names = {name for name, _ in settings}
    problems = [f"turnserver.conf lacks {flag}"
                for flag in ("use-auth-secret", "no-cli", "no-multicast-peers")
                if flag not in names]
    if "static-auth-secret" in names:
        problems.append("turnserver.conf must not hold the secret (it comes from "
                        "CARECALL_TURN_SECRET at start)")
    if "lt-cred-mech" in names or "no-auth" in names:
        problems.append("turnserver.conf must use use-auth-secret alone")
    denied = [peer_range(value) for name, value in settings if name == "denied-peer-ip"]
    for network in map(ipaddress.ip_network, PRIVATE_PEERS):
        first, last = network[0], network[-1]
        if not any(low.version == first.version and low <= first and last <= high
                   for low, high in denied):
            problems.append(f"turnserver.conf does not deny peers in {network}")
    ports = dict(settings)
    relay = (int(ports.get("min-port", 49152)), int(ports.get("max-port", 65535)))
    if published is not None and relay != published:
        problems.append(f"relay ports {relay[0]}-{relay[1]} are not the published "
                        f"{published[0]}-{published[1]}")
    return problems


def volume_parts(spec: str) -> list[str]:
    """SOURCE, TARGET and maybe MODE of a short volume spec (SOURCE may be ${VAR:-x})."""
    hidden = VARIABLE.sub(lambda m: "\0" * len(m.group(0)), spec)
    cuts = [i for i, char in enumerate(hidden) if char == ":"]
    return [spec[a + 1:b] for a, b in zip([-1, *cuts], [*cuts, len(spec)], strict=True)]


def published_udp_range(service: dict[str, Any]) -> tuple[int, int] | None:
    """The widest published UDP port range of a service (its relay ports)."""
    best = None
    for port in service.get("ports", []):
        match = re.fullmatch(r"(?:[\d.]+:)?(\d+)-(\d+):(\d+)-(\d+)/udp", str(port))
        if match:
            low, high = int(match.group(3)), int(match.group(4))
            if best is None or high - low > best[1] - best[0]:
                best = (low, high)
    return best


# -- the real files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE.read_text())


def upstreams_of(compose: dict[str, Any]) -> dict[str, str]:
    """Where nginx must send each role: the gate's service and port, and the network
    alias every signalling node carries with their port."""
    commands = carecall_commands(compose)
    found: dict[str, str] = {}
    for name, args in commands:
        if args[0] == "gate":
            found["gate"] = f"http://{name}:{option(args, '--port')}"
        if args[0] == "signalling":
            networks = compose["services"][name].get("networks") or {}
            aliases = {alias for net in (networks.values() if isinstance(networks, dict)
                                         else []) for alias in (net or {}).get("aliases", [])}
            for alias in aliases:
                found.setdefault("signalling", f"http://{alias}:{option(args, '--port')}")
    return found


def test_every_carecall_command_in_compose_parses_with_the_cli(
        compose: dict[str, Any]) -> None:
    """Each service that runs carecall names a subcommand with only its own flags, and
    carecall's parser accepts the whole command line."""
    assert {args[0] for _, args in carecall_commands(compose)} >= {"gate", "signalling"}
    assert command_problems(compose) == []


def test_every_carecall_variable_in_compose_is_read_by_the_code(
        compose: dict[str, Any]) -> None:
    """No CARECALL_* setting in compose is a typo or a setting carecall never reads."""
    assert variable_problems(compose, env_vars_in_code()) == []


def test_required_secrets_stop_compose_when_missing(compose: dict[str, Any]) -> None:
    """The API key, resume and TURN secrets, public URL and TURN URLs are ${VAR:?...}."""
    set_anywhere = {key for service in compose["services"].values()
                    for key in environment(service)}
    assert set(REQUIRED) <= set_anywhere
    assert secret_problems(compose) == []


def test_the_topology_hangs_together(compose: dict[str, Any]) -> None:
    """Two nodes reach the gate and Redis, trust the proxy, share the TURN secret with
    coturn, and may drain before SIGKILL."""
    assert topology_problems(compose) == []


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    """Every service, the proxy and coturn included, says when it is healthy."""
    assert healthcheck_problems(compose) == []


def test_env_example_lists_what_compose_takes() -> None:
    """.env.example names every ${VAR} of the compose file and how to make the secrets."""
    assert env_example_problems(COMPOSE.read_text(), ENV_EXAMPLE.read_text(),
                                env_vars_in_code()) == []


def test_nginx_routes_each_path_to_its_process(compose: dict[str, Any]) -> None:
    """/api/ and /.well-known/ go to the gate, /ws (upgraded) and /s/ to the nodes, with
    X-Forwarded-For replaced, /metrics nowhere, no address or query string logged."""
    upstreams = upstreams_of(compose)
    assert set(upstreams) == {"gate", "signalling"}
    assert nginx_problems(NGINX.read_text(), upstreams) == []


def test_compose_mounts_the_certificate_where_nginx_reads_it(compose: dict[str, Any]) -> None:
    """nginx's certificate files lie in the folder compose mounts from TLS_DIR, which the
    one-shot tls service fills before the proxy starts."""
    server = next(s for s in parse_nginx(NGINX.read_text()).first("http").all("server")
                  if any("ssl" in d.args for d in s.all("listen")))
    folders = {str(Path(server.first(name).args[0]).parent)
               for name in ("ssl_certificate", "ssl_certificate_key")}
    proxy = next(s for s in compose["services"].values() if "nginx" in str(s.get("image")))
    mounts = dict(reversed(volume_parts(volume)[:2]) for volume in proxy["volumes"])
    assert len(folders) == 1 and folders <= set(mounts)
    tls = next(name for name, s in compose["services"].items()
               if "tls-cert.sh" in " ".join(argv(s)))
    assert proxy["depends_on"][tls]["condition"] == "service_completed_successfully"
    sources = {volume_parts(volume)[0] for volume in compose["services"][tls]["volumes"]}
    assert mounts[folders.pop()] in sources


def test_coturn_uses_the_shared_secret_and_refuses_private_peers(
        compose: dict[str, Any]) -> None:
    """use-auth-secret, no CLI, no multicast or private peers, relay ports as published."""
    coturn = next(s for s in compose["services"].values() if "coturn" in str(s.get("image")))
    assert turn_problems(TURN_CONF.read_text(), published_udp_range(coturn)) == []


# -- the entrypoint scripts, run -----------------------------------------------------


def run_coturn_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """deploy/coturn.sh with a stand-in turnserver that prints what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "turnserver"
    fake.write_text('#!/bin/sh\necho "args: $*"\n')
    fake.chmod(0o755)
    environ = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "TURN_CONFIG": str(TURN_CONF), "TURN_CONFIG_OUT": str(tmp_path / "out.conf"),
               **env}
    return subprocess.run(["bash", str(REPO / "deploy" / "coturn.sh")], env=environ,
                          capture_output=True, text=True, timeout=30, check=False)


def test_coturn_entrypoint_writes_the_secret_into_a_private_file(tmp_path: Path) -> None:
    """The rendered configuration has the template, the secret, the realm and, with
    TURN_EXTERNAL_IP, external-ip and its allowed-peer-ip; mode 0600; the secret is not
    on turnserver's command line."""
    secret = "f" * 64
    done = run_coturn_entrypoint(tmp_path, CARECALL_TURN_SECRET=secret,
                                 TURN_REALM="calls.example.org",
                                 TURN_EXTERNAL_IP="198.51.100.4/172.30.0.2")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out.conf"
    assert done.stdout.strip() == f"args: -c {out}"
    assert out.stat().st_mode & 0o777 == 0o600
    rendered = turn_settings(out.read_text())
    assert turn_settings(TURN_CONF.read_text()) == rendered[:-4]
    assert rendered[-4:] == [("static-auth-secret", secret), ("realm", "calls.example.org"),
                             ("external-ip", "198.51.100.4/172.30.0.2"),
                             ("allowed-peer-ip", "198.51.100.4")]


@pytest.mark.parametrize(("env", "message"), [
    ({}, "CARECALL_TURN_SECRET is not set"),
    ({"CARECALL_TURN_SECRET": "short"}, "at least 32 characters"),
    ({"CARECALL_TURN_SECRET": "a" * 40 + "\nno-auth"}, "has characters other than"),
    ({"CARECALL_TURN_SECRET": "a" * 40, "TURN_REALM": "x\nno-auth"}, "TURN_REALM must be"),
    ({"CARECALL_TURN_SECRET": "a" * 40, "TURN_EXTERNAL_IP": "host.example"},
     "TURN_EXTERNAL_IP must be"),
], ids=["no-secret", "short", "newline", "realm", "external-ip"])
def test_coturn_entrypoint_refuses_bad_settings(tmp_path: Path, env: dict[str, str],
                                                message: str) -> None:
    """A missing, short or multi-line secret, or a bad realm or address, stops coturn
    with one line and writes no configuration (a line break would add settings)."""
    done = run_coturn_entrypoint(tmp_path, **env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr and done.stderr.startswith("coturn: ")
    assert not (tmp_path / "out.conf").exists()


def run_tls(folder: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "CARECALL_PUBLIC_URL": url}
    return subprocess.run(["sh", str(REPO / "deploy" / "tls-cert.sh"), str(folder)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_tls_entrypoint_makes_a_self_signed_pair_once(tmp_path: Path) -> None:
    """Without a certificate it makes one for the public URL's host (and localhost), the
    key 0600; run again, it keeps the pair it finds."""
    done = run_tls(tmp_path, "https://calls.example.org:8443/path")
    assert done.returncode == 0, done.stderr
    crt, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["calls.example.org", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    before = (crt.read_bytes(), key.read_bytes())
    again = run_tls(tmp_path, "https://other.example.org")
    assert again.returncode == 0 and "using the certificate" in again.stdout
    assert (crt.read_bytes(), key.read_bytes()) == before


def test_tls_entrypoint_refuses_half_a_pair(tmp_path: Path) -> None:
    """A folder with a certificate but no key is an error, and the certificate stays."""
    (tmp_path / "fullchain.pem").write_text("mine")
    done = run_tls(tmp_path, "https://calls.example.org")
    assert done.returncode == 1 and "only one of" in done.stderr
    assert (tmp_path / "fullchain.pem").read_text() == "mine"
    assert not (tmp_path / "privkey.pem").exists()


# -- each check can fail -----------------------------------------------------------------

BROKEN_COMPOSE = """
services:
  gate:
    command: carecall gate --db sqlite:///x --port 8081 --bogus
    environment:
      CARECALL_API_KEY: ${CARECALL_API_KEY:-insecure-default}
  node-a:
    command: ["carecall", "signalling", "--gate-url", "http://gate:9999", "--redis",
              "redis://nowhere:6379", "--port", "eighty"]
    environment:
      CARECALL_RESUME_SECRET: fixed-in-the-file
      CARECALL_TURN_SECRET: ${CARECALL_TURN_SECRET:?set it}
      CARECALL_NODE_NAME: a
    stop_grace_period: 5s
    healthcheck:
      disable: true
  node-b:
    command: carecall teleport --now
  turn:
    image: coturn/coturn:4.6-debian
    environment:
      CARECALL_TURN_SECRET: ${CARECALL_TURN_SECRET:?set it}
    healthcheck:
      test: ["CMD", "true"]
"""

BROKEN_NGINX = """
error_log /dev/stderr info;
http {
    log_format leaky '$remote_addr "$request" $status';
    server {
        listen 8080;
        location / { proxy_pass http://gate:8081; }
    }
    server {
        listen 8443 ssl;
        set $gate http://gate:8081;
        set $signalling http://signalling:8082;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        location /api/ { proxy_pass $signalling; }
        location = /ws {
            proxy_pass $signalling;
            proxy_set_header Upgrade $http_upgrade;
        }
        location / { proxy_pass $gate; }
    }
}
"""

BROKEN_TURN = """
lt-cred-mech
static-auth-secret=in-the-file
min-port=40000
max-port=40100
denied-peer-ip=10.0.0.0-10.255.255.255
"""


def test_each_compose_check_sees_a_broken_file() -> None:
    """A broken compose snippet makes every compose check report its problem."""
    broken = load_compose(BROKEN_COMPOSE)
    commands = command_problems(broken)
    assert any("has no --bogus" in p for p in commands)
    assert any("node-a: carecall refuses" in p and "eighty" in p for p in commands)
    assert any("'carecall teleport' is no subcommand" in p for p in commands)
    assert variable_problems(broken, env_vars_in_code()) == [
        "node-a: CARECALL_NODE_NAME is read by nothing in carecall"]
    assert secret_problems(broken) == [
        "gate: CARECALL_API_KEY must be ${CARECALL_API_KEY:?message} "
        "(got '${CARECALL_API_KEY:-insecure-default}')",
        "node-a: CARECALL_RESUME_SECRET must be ${CARECALL_RESUME_SECRET:?message} "
        "(got 'fixed-in-the-file')"]
    topology = topology_problems(broken)
    for expected in ("node-a: a signalling node needs CARECALL_API_KEY",
                     "node-a: --gate-url 'http://gate:9999' is not where a gate listens",
                     "node-a: --redis 'redis://nowhere:6379' is not a Redis service",
                     "node-a: CARECALL_TRUSTED_PROXIES is not set",
                     "node-a: stop_grace_period 5 s is shorter than a drain"):
        assert any(p.startswith(expected) for p in topology), (expected, topology)
    assert healthcheck_problems(broken) == ["gate: no health check", "node-a: no health check",
                                            "node-b: no health check"]
    with pytest.raises(ValueError, match="not a duration"):
        duration("60")


def test_the_env_example_check_sees_a_missing_variable_and_a_shipped_secret() -> None:
    """A compose variable missing from .env.example, an unknown CARECALL_* name and a
    secret with a value are each reported."""
    problems = env_example_problems(
        "x: ${CARECALL_API_KEY:?k} ${TLS_DIR:-tls}",
        "CARECALL_API_KEY=0123abcd\nCARECALL_TYPO=1\n", env_vars_in_code())
    assert problems == [".env.example does not list TLS_DIR",
                        ".env.example: CARECALL_TYPO is read by nothing in carecall",
                        ".env.example must leave CARECALL_API_KEY empty (generate it)",
                        ".env.example does not say how to generate CARECALL_API_KEY"]


def test_the_nginx_check_sees_wrong_routes_headers_and_logs() -> None:
    """Misrouted /api/, a /ws without the upgrade or a replaced X-Forwarded-For (it does
    not inherit the server's), an appended X-Forwarded-For, an address in the log, a
    chatty error log and a proxying plain-HTTP server are all reported."""
    problems = nginx_problems(BROKEN_NGINX, {"gate": "http://gate:8081",
                                             "signalling": "http://signalling:8082"})
    for expected in (
            "the TLS server has no certificate",
            "the plain-HTTP server must only redirect to https",
            "/api/v1/bookings/b-1 goes to http://signalling:8082, not to gate "
            "(http://gate:8081)",
            "/api/v1/bookings/b-1: X-Forwarded-For must be replaced by $remote_addr "
            "(got '$proxy_add_x_forwarded_for')",
            "/ws: X-Forwarded-For must be replaced by $remote_addr (got None)",
            "/ws does not pass the WebSocket upgrade headers",
            "/ws needs proxy_http_version 1.1",
            "/s/room-id goes to http://gate:8081, not to signalling "
            "(http://signalling:8082)",
            "/metrics must not be proxied to the public",
            "log_format leaky logs $remote_addr",
            "log_format leaky logs $request",
            "error_log must be at crit (its lines name client addresses)"):
        assert expected in problems, (expected, problems)
    with pytest.raises(ValueError, match="not closed"):
        parse_nginx("http { server { listen 80; }")


def test_the_turn_check_sees_a_weak_configuration() -> None:
    """No use-auth-secret, a secret in the file, lt-cred-mech, private peers allowed and
    relay ports other than the published ones are each reported."""
    problems = turn_problems(BROKEN_TURN, (49160, 49199))
    for expected in ("turnserver.conf lacks use-auth-secret", "turnserver.conf lacks no-cli",
                     "turnserver.conf lacks no-multicast-peers",
                     "turnserver.conf must not hold the secret (it comes from "
                     "CARECALL_TURN_SECRET at start)",
                     "turnserver.conf must use use-auth-secret alone",
                     "turnserver.conf does not deny peers in 192.168.0.0/16",
                     "turnserver.conf does not deny peers in fc00::/7",
                     "relay ports 40000-40100 are not the published 49160-49199"):
        assert expected in problems, (expected, problems)
    assert "turnserver.conf does not deny peers in 10.0.0.0/8" not in problems


def test_the_parser_is_what_compose_commands_are_checked_against() -> None:
    """The checked parser is carecall's: a flag only `serve` has is refused for `gate`."""
    parser = build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    serve_only = subcommands()["serve"] - subcommands()["gate"]
    assert "--demo" in serve_only
    broken = {"services": {"gate": {"command": ["carecall", "gate", "--demo"]}}}
    assert command_problems(broken) == ["gate: 'carecall gate' has no --demo",
                                        "gate: carecall refuses ['gate', '--demo']: "
                                        "carecall gate: error: unrecognized arguments: --demo"]
