# syntax=docker/dockerfile:1

# Santokit Bridge runtime image (docs/deployment.md). It carries no secret: master keys, admin
# tokens and the registry URL reach the container at run time as files under /run/secrets.

ARG PYTHON_IMAGE=python:3.11-slim

# Build stage: install the package and its dependencies into a self-contained virtualenv, so the
# runtime stage gets neither pip's cache nor the build tooling.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/stk
WORKDIR /src
# Dependencies first, exactly as locked (every file hash-checked), in their own layer: a code
# change does not reinstall them. `requirements.lock` is made by pip-compile (docs/deployment.md).
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/stk/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml ./
COPY bridge/ bridge/
COPY tenancy/ tenancy/
COPY migrations/ migrations/
# --no-deps: nothing beyond the lock is installed; pip check fails the build if the lock and
# pyproject.toml disagree.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/stk/bin/pip install --no-deps . && /opt/stk/bin/pip check

FROM ${PYTHON_IMAGE}
# Set by the build (`docker build --build-arg VERSION=$(...) --build-arg COMMIT=$(git rev-parse
# HEAD)`, docs/deployment.md); `stk-bridge --version` answers the package version.
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="santokit-bridge" \
      org.opencontainers.image.description="Multi-tenant Santokit Bridge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
# Bytecode is compiled at install time; the root file system may then be mounted read-only.
ENV PATH=/opt/stk/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STK_DATA_DIR=/var/lib/stk-bridge
RUN groupadd --system --gid 10001 stk \
 && useradd --system --uid 10001 --gid stk --home-dir /var/lib/stk-bridge --no-create-home \
      --shell /usr/sbin/nologin stk \
 && install -d -o stk -g stk -m 0700 /var/lib/stk-bridge
COPY --from=build /opt/stk /opt/stk
# Migrations run from the installed `migrations` package; no alembic.ini is needed at run time.
WORKDIR /app
# Numeric, so orchestrators can verify "runs as non-root" without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz): a replica that lost Redis or the registry keeps serving what it has
# cached, so readiness (/readyz) must not get it restarted. No proxy for a loopback probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["stk-bridge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
