# syntax=docker/dockerfile:1
# Images of the services, one target each, built from the uv workspace and its lock file:
#
#   docker build --target locker-hubs -t greenpartners/locker-hubs:0.1.0 .
#
# Each image holds the service with its own locked dependencies, the generated contracts and
# servicekit, installed (not editable) in /app/.venv; nothing is fetched at run time. The final
# stages have no uv, no compiler and no source tree, run as an unprivileged numeric user and need
# no writable root filesystem. PYTHON_IMAGE must provide `python3.11` (the lock's interpreter);
# `make image` builds the same stages on a Debian base it assembles itself (docs/deploy.md).

ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_PYTHON=python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A build behind a TLS-intercepting proxy passes its CA bundle as the secret `build-ca`
# (`make image` does); it is mounted for the downloading steps only, never stored in a layer.
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    python3.11 -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /src
# The workspace's manifests first: the third-party dependencies are a layer of their own, rebuilt
# only when the lock changes.
COPY pyproject.toml uv.lock ./
COPY libs/contracts/pyproject.toml libs/contracts/
COPY libs/servicekit/pyproject.toml libs/servicekit/
COPY services/partner-registry/pyproject.toml services/partner-registry/
COPY services/locker-hubs/pyproject.toml services/locker-hubs/
COPY services/fleet-telemetry/pyproject.toml services/fleet-telemetry/
COPY services/emissions-ledger/pyproject.toml services/emissions-ledger/
COPY services/stream-gateway/pyproject.toml services/stream-gateway/

FROM build AS build-partner-registry
ENV UV_PROJECT_ENVIRONMENT=/app/.venv
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package partner-registry
COPY libs/contracts/src/ libs/contracts/src/
COPY libs/servicekit/src/ libs/servicekit/src/
COPY services/partner-registry/src/ services/partner-registry/src/
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package partner-registry

FROM build AS build-locker-hubs
ENV UV_PROJECT_ENVIRONMENT=/app/.venv
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package locker-hubs
COPY libs/contracts/src/ libs/contracts/src/
COPY libs/servicekit/src/ libs/servicekit/src/
COPY services/locker-hubs/src/ services/locker-hubs/src/
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package locker-hubs

FROM build AS build-fleet-telemetry
ENV UV_PROJECT_ENVIRONMENT=/app/.venv
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package fleet-telemetry
COPY libs/contracts/src/ libs/contracts/src/
COPY libs/servicekit/src/ libs/servicekit/src/
COPY services/fleet-telemetry/src/ services/fleet-telemetry/src/
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package fleet-telemetry

FROM build AS build-emissions-ledger
ENV UV_PROJECT_ENVIRONMENT=/app/.venv
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package emissions-ledger
COPY libs/contracts/src/ libs/contracts/src/
COPY libs/servicekit/src/ libs/servicekit/src/
COPY services/emissions-ledger/src/ services/emissions-ledger/src/
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package emissions-ledger

FROM build AS build-stream-gateway
ENV UV_PROJECT_ENVIRONMENT=/app/.venv
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package stream-gateway
COPY libs/contracts/src/ libs/contracts/src/
COPY libs/servicekit/src/ libs/servicekit/src/
COPY services/stream-gateway/src/ services/stream-gateway/src/
RUN --mount=type=secret,id=build-ca,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package stream-gateway

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.vendor="Green Partnerships Platform" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# The root filesystem is read-only in the cluster: no bytecode writes, logs to stderr unbuffered,
# a HOME that exists for any library that looks for one (an emptyDir is mounted on /tmp).
ENV PATH=/app/.venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GRPC_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001

FROM runtime AS partner-registry
LABEL org.opencontainers.image.title="partner-registry" \
      org.opencontainers.image.description="Partner registry of the Green Partnerships Platform"
COPY --from=build-partner-registry --chown=0:0 /app/.venv /app/.venv
EXPOSE 50051 9101 8081
ENTRYPOINT ["python", "-m", "partner_registry"]
# Last, so that a new commit changes only this label, not the layers above.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"

FROM runtime AS locker-hubs
LABEL org.opencontainers.image.title="locker-hubs" \
      org.opencontainers.image.description="MoLo Hubs locker boxes of the Green Partnerships Platform"
COPY --from=build-locker-hubs --chown=0:0 /app/.venv /app/.venv
EXPOSE 50052 9102 8081
ENTRYPOINT ["python", "-m", "locker_hubs"]
# Last, so that a new commit changes only this label, not the layers above.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"

FROM runtime AS fleet-telemetry
LABEL org.opencontainers.image.title="fleet-telemetry" \
      org.opencontainers.image.description="Fleet telemetry of the Green Partnerships Platform"
COPY --from=build-fleet-telemetry --chown=0:0 /app/.venv /app/.venv
EXPOSE 50053 9103 8081
ENTRYPOINT ["python", "-m", "fleet_telemetry"]
# Last, so that a new commit changes only this label, not the layers above.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"

FROM runtime AS emissions-ledger
LABEL org.opencontainers.image.title="emissions-ledger" \
      org.opencontainers.image.description="Covenant of Mayors emissions ledger of the Green Partnerships Platform"
COPY --from=build-emissions-ledger --chown=0:0 /app/.venv /app/.venv
EXPOSE 50054 9104 8081
ENTRYPOINT ["python", "-m", "emissions_ledger"]
# Last, so that a new commit changes only this label, not the layers above.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"

FROM runtime AS stream-gateway
LABEL org.opencontainers.image.title="stream-gateway" \
      org.opencontainers.image.description="Live streams and dashboard of the Green Partnerships Platform"
COPY --from=build-stream-gateway --chown=0:0 /app/.venv /app/.venv
ENV HTTP_HOST=0.0.0.0
EXPOSE 8090
ENTRYPOINT ["python", "-m", "stream_gateway"]
# Last, so that a new commit changes only this label, not the layers above.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"
