# carecall: one image for every process kind (`carecall serve`, `gate`,
# `signalling`, `peer`). docker-compose.yml uses it for the scale-out setup.
#
#   docker build -t carecall .
#   docker run --rm -p 8080:8080 -v carecall-var:/var/lib/carecall/var carecall
#
# The default command runs everything in one process with SQLite, listening on
# all interfaces; keys and the database live in /var/lib/carecall/var (mount a
# volume there so they survive the container). docker-compose.yml also runs
# deploy/tls-cert.sh in this image, which needs the openssl command (Debian's
# ca-certificates brings it; the build checks that it is there).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the distribution is built from (pyproject.toml lists these
# packages); nothing from a local .venv or var/ enters the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY booking_gate/ booking_gate/
COPY carecall/ carecall/
COPY signalling/ signalling/
COPY peer/ peer/
COPY web_client/ web_client/
RUN openssl version \
    && pip install . \
    && useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/carecall carecall

USER carecall
WORKDIR /var/lib/carecall
RUN mkdir -p var

EXPOSE 8080 8081 8082
STOPSIGNAL SIGTERM
CMD ["carecall", "serve", "--host", "0.0.0.0"]
