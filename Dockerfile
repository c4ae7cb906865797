# neonsign serving image: FastAPI + uvicorn on the native engine, no PyTorch.
#
#   docker buildx build --platform linux/arm64,linux/amd64 -t neonsign-serve .
#   docker run -p 8000:8000 -v "$PWD/runs/model:/models/current:ro" neonsign-serve
#
# The model directory (model.safetensors + model_card.json) is mounted at /models/current, or
# baked into a derived image (FROM neonsign-serve + COPY model /models/current). Settings are
# NEONSIGN_* environment variables (see `neonsign serve --help`); `docker kill -s HUP` reloads
# the model without dropping requests.
#
# POST /admin/reload is disabled (403) in this image: it binds 0.0.0.0 and sets no admin token.
# Opt in explicitly with a token, e.g. -e NEONSIGN_ADMIN_TOKEN="$(openssl rand -hex 32)"; the
# endpoint then needs `Authorization: Bearer <token>` (docs/serving.md).
ARG PYTHON_VERSION=3.11

# ---- builder: compile the C extension into a wheel (per target architecture) ----------------
FROM python:${PYTHON_VERSION}-slim AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml meson.build constraints.txt README.md LICENSE ./
COPY csrc ./csrc
COPY python ./python
ENV PIP_CONSTRAINT=/src/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime: the wheel with the serve extra, non-root -------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
COPY --from=builder /wheels /wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --disable-pip-version-check -c /tmp/constraints.txt \
        "$(find /wheels -name 'neonsign-*.whl')[serve]" \
    && rm -rf /wheels /tmp/constraints.txt \
    && groupadd --system --gid 10001 neonsign \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin neonsign
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NEONSIGN_MODEL=/models/current \
    NEONSIGN_HOST=0.0.0.0 \
    NEONSIGN_PORT=8000 \
    NEONSIGN_WORKERS=1
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('NEONSIGN_PORT', '8000'), timeout=4)"]
CMD ["neonsign", "serve"]
