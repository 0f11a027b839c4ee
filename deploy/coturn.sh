#!/bin/bash
# docker-compose.yml's coturn entrypoint: deploy/turnserver.conf plus the settings that
# come from the environment, written to a file only coturn's user can read (the secret
# stays off the command line, where any local user could see it), then turnserver.
set -euo pipefail

conf_in="${TURN_CONFIG:-/deploy/turnserver.conf}"
conf_out="${TURN_CONFIG_OUT:-/tmp/turnserver.conf}"

fail() {
    echo "coturn: $*" >&2
    exit 2
}

secret="${CARECALL_TURN_SECRET:-}"
realm="${TURN_REALM:-carecall}"
external="${TURN_EXTERNAL_IP:-}"

# A line break would add a line of configuration: only plain characters pass.
[[ -n "$secret" ]] || fail "CARECALL_TURN_SECRET is not set (openssl rand -hex 32)"
[[ ${#secret} -ge 32 ]] || fail "CARECALL_TURN_SECRET must be at least 32 characters"
[[ "$secret" =~ ^[A-Za-z0-9._~+/=-]+$ ]] || fail "CARECALL_TURN_SECRET has characters other than letters, digits and ._~+/=-"
[[ "$realm" =~ ^[A-Za-z0-9.-]+$ ]] || fail "TURN_REALM must be a name like carecall or calls.example.org"
if [[ -n "$external" ]]; then
    [[ "$external" =~ ^[0-9A-Fa-f.:]+(/[0-9A-Fa-f.:]+)?$ ]] \
        || fail "TURN_EXTERNAL_IP must be PUBLIC or PUBLIC/PRIVATE (IP addresses)"
fi

if [[ -z "$external" ]]; then
    echo "coturn: TURN_EXTERNAL_IP is not set: relay candidates carry this container's" \
         "own address, which clients outside cannot reach (docs/deploy.md, TURN)" >&2
fi

umask 077
{
    cat "$conf_in"
    echo
    echo "# from the environment (deploy/coturn.sh)"
    echo "static-auth-secret=$secret"
    echo "realm=$realm"
    if [[ -n "$external" ]]; then
        echo "external-ip=$external"
        # Two relayed parties send to each other's relay address, the public one.
        echo "allowed-peer-ip=${external%%/*}"
    fi
} > "$conf_out"

exec turnserver -c "$conf_out" "$@"
