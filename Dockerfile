# sipmesh: one image for every service.
#   docker build -t sipmesh:dev .
#   docker run --rm sipmesh:dev sipmesh_registrar      # python -m sipmesh_registrar
# The Helm chart (deploy/k8s) and the compose file (deploy/compose) run it this way.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs/sipmsg/src libs/sipmsg/src
COPY libs/bus/src libs/bus/src
COPY services/edge/src services/edge/src
COPY services/registrar/src services/registrar/src
COPY services/router/src services/router/src
COPY services/media/src services/media/src
COPY services/cdr/src services/cdr/src
COPY src src
# A wheel of the project and of every dependency: the runtime stage installs
# them without a compiler or network. (A .so from the build context would be
# a foreign build: only this stage's compile below counts.)
RUN find . -name '*.so' -delete && pip wheel --wheel-dir /wheels .
# sipmsg and the registrar's and router's pure modules compiled with mypyc
# (scripts/compile.py, TARGETS: the one list of compiled modules): the C
# extensions are built here, with gcc, and every .so under a src root is copied
# beside the installed .py files below. --require: never a silent fallback.
# (.dockerignore lets scripts/compile.py in and keeps local .so builds out.)
COPY scripts/compile.py scripts/compile.py
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && pip install "$(grep -o '"mypy==[^"]*"' pyproject.toml | tr -d '"' | sed 's/^mypy/mypy[mypyc]/')" \
    && python scripts/compile.py --require

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src,target=/compiled \
    pip install --no-index --find-links=/wheels sipmesh \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && for src in /compiled/libs/*/src /compiled/services/*/src; do \
         (cd "$src" && find . -name '*.so' -exec cp --parents {} "$site" \;); done \
    && python -c 'import sipmsg, sys; sys.exit(not sipmsg.COMPILED)' \
    && python -c 'import sipmesh_router.core as m, sys; sys.exit(not m.__file__.endswith(".so"))' \
    && groupadd --system --gid 10001 sipmesh \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home sipmesh \
    && mkdir -p /data && chown 10001:10001 /data
WORKDIR /data
USER 10001:10001
# SIP (UDP/TCP), SIP over TLS, WebSocket, metrics/health, CDR API.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp 9090/tcp 8081/tcp
# The argument is the service's module: sipmesh_edge, sipmesh_registrar, ...
ENTRYPOINT ["python", "-m"]
CMD ["sipmesh_edge"]
