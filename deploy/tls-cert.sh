#!/bin/sh
# docker-compose.yml's one-shot "tls" service: makes sure nginx has a certificate.
#
#   sh deploy/tls-cert.sh [FOLDER]      (default /tls, where compose mounts TLS_DIR)
#
# If the folder already holds fullchain.pem and privkey.pem, they are used as they
# are and nothing changes. Otherwise a self-signed certificate for the host of
# CARECALL_PUBLIC_URL (and localhost) is made with openssl, valid for 30 days: enough
# to try carecall out; browsers warn about it, so give real users a real certificate.
set -eu

dir="${1:-/tls}"
crt="$dir/fullchain.pem"
key="$dir/privkey.pem"

if [ ! -d "$dir" ]; then
    echo "tls: $dir is not a folder" >&2
    exit 1
fi
if [ -s "$crt" ] && [ -s "$key" ]; then
    echo "tls: using the certificate in TLS_DIR"
    exit 0
fi
if [ -e "$crt" ] || [ -e "$key" ]; then
    echo "tls: TLS_DIR has only one of fullchain.pem and privkey.pem (or an empty one):" \
         "add the other, or remove both to have a self-signed pair made" >&2
    exit 1
fi

# The host of the public URL: no scheme, no user, no path, no port (IPv6 in brackets).
url="${CARECALL_PUBLIC_URL:-https://localhost}"
rest="${url#*://}"
rest="${rest%%/*}"
rest="${rest##*@}"
case "$rest" in
    \[*\]*) host="${rest#\[}"; host="${host%%\]*}" ;;
    *) host="${rest%%:*}" ;;
esac
case "$host" in
    "" | *[!A-Za-z0-9.:-]*)
        echo "tls: cannot take a host name from CARECALL_PUBLIC_URL" >&2
        exit 1 ;;
esac
names="DNS:localhost,IP:127.0.0.1"
if printf '%s' "$host" | grep -Eq '^[0-9.]+$|:'; then
    names="IP:$host,$names"
elif [ "$host" != localhost ]; then
    names="DNS:$host,$names"
fi

umask 077
if ! report=$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 30 -subj "/CN=$host" -addext "subjectAltName=$names" \
        -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
        -keyout "$key.new" -out "$crt.new" 2>&1); then
    rm -f "$key.new" "$crt.new"
    echo "tls: openssl could not make a certificate: $report" >&2
    exit 1
fi
chmod 600 "$key.new"
chmod 644 "$crt.new"
mv "$key.new" "$key"
mv "$crt.new" "$crt"
echo "tls: made a self-signed certificate for $host (30 days); replace it with a real one"
