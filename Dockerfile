# syntax=docker/dockerfile:1
# One image for every part of the instance manager; the command picks what runs:
#   docker run IMAGE setup                 migrate the admin DB, declare the topology, templates
#   docker run IMAGE run gateway|provisioner|status
# Nothing secret is baked in: URLs and ODS_CONNECTION_STRING_ENCRYPTION_KEY come from the
# environment at run time (docker-compose.yml shows a development set).
FROM python:3.11-slim

# uv from PyPI, pinned so that the image builds the same way from the same lock.
ARG UV_VERSION=0.13.8

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# unixODBC and FreeTDS's ODBC driver: SQL Server (ODS server or EdFi_Admin) through aioodbc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends unixodbc tdsodbc \
    && rm -rf /var/lib/apt/lists/* \
    && pip install "uv==${UV_VERSION}" \
    && groupadd --system --gid 10001 edfi \
    && useradd --system --uid 10001 --gid edfi --create-home --home-dir /home/edfi edfi

WORKDIR /app

# The locked dependencies first: this layer is rebuilt only when pyproject.toml or the lock
# changes (README.md, which the project's metadata names, comes with the code: it changes often).
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the code, installed as a package (not editable): the migrations, the development copy
# of Ed-Fi's dbo tables and the template SQL are package data, found inside it.
COPY README.md ./
COPY services/ services/
COPY contracts/ contracts/
RUN uv sync --frozen --no-dev --no-editable

# The code stays owned by root (read-only for the service user); nothing here writes to /app.
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
ENV PATH="/app/.venv/bin:${PATH}"

# 8000: the gateway; 8080: GET /health of provisioner and status when EDFI_IM_HEALTH_PORT=8080.
EXPOSE 8000 8080

ENTRYPOINT ["/app/.venv/bin/edfi-im"]
CMD ["--help"]
