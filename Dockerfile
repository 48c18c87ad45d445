# Apex AI gateway: a small, non-root image.
#
#   docker build -t apex-gateway .
#   docker run --rm -p 8080:8080 apex-gateway --demo                       # the offline demo
#   docker run --rm -p 8080:8080 -v "$PWD/config.json:/etc/apex/config.json:ro" \
#       -e OPENAI_API_KEY -e APEX_VKEY apex-gateway                         # your config, secrets from env
#
# BASE may be any Debian-based image with python3 (>= 3.11) and its venv module; the tests
# build on a locally made Debian image because no registry is reachable there.
ARG BASE=python:3.12-slim-bookworm

# --- build: install Apex and its dependencies into a venv (wheels only, no compiler) ---
FROM ${BASE} AS build
# Behind a private index or a TLS-intercepting proxy: --build-arg PIP_INDEX_URL=... and/or
# --build-arg PIP_CERT=/path (with the CA bundle mounted there at build time); pip reads both.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE* ./
COPY apex ./apex
RUN python3 -m venv /opt/apex \
 && /opt/apex/bin/pip install --only-binary=:all: --no-compile . \
 && /opt/apex/bin/pip uninstall -y pip \
 && find /opt/apex -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/apex/bin/python -m compileall -q /opt/apex/lib

# --- runtime: the venv and a user, nothing else ---
FROM ${BASE}
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin apex \
 && mkdir -p /etc/apex /var/lib/apex \
 && chown apex /var/lib/apex
COPY --from=build /opt/apex /opt/apex
ENV PATH=/opt/apex/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APEX_CONFIG=/etc/apex/config.json \
    APEX_LISTEN=0.0.0.0:8080 \
    APEX_STATE_DIR=/var/lib/apex
USER apex
WORKDIR /var/lib/apex
EXPOSE 8080
# Liveness only (/health): an upstream outage must not restart the gateway. Use /ready for
# load-balancer readiness.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os,sys,urllib.request; p=os.environ.get('APEX_LISTEN','0.0.0.0:8080').rsplit(':',1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{p}/health', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["apex", "gateway", "start", "--foreground"]
