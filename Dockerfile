# The torch functions service. Build arguments (none names a host; see the README, "Deployment"):
#   TORCH_VARIANT        cpu (default) or cuda
#   TORCH_INDEX_URL      the pip index torch comes from, required: PyTorch's wheel index for the variant
#                        (listed on pytorch.org's Get Started page), or a local one (a file:// index on a
#                        build volume, or http://127.0.0.1:<port>/ served next to the builder)
#   PYTHON_IMAGE         the base image of both stages (default the official slim Python 3.11)
#   PIP_INDEX_URL        the index of every other dependency (default: pip's own, PyPI)
#   PIP_EXTRA_INDEX_URL  more indexes, space-separated (default: none)
# and one optional build secret, pip_ca: the CA bundle pip trusts (a mirror's or a proxy's CA).
# CPU:  docker build --build-arg TORCH_INDEX_URL=<PyTorch CPU wheel index> -t torchfn:cpu .
# CUDA: docker build --build-arg TORCH_VARIANT=cuda --build-arg TORCH_INDEX_URL=<PyTorch CUDA wheel index> -t torchfn:cuda .
# The build stops with a message when the index is missing or serves the other variant.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=""
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt constraints.txt /tmp/
# torch first, pinned to requirements.txt's version, alone from the index for the chosen variant;
# then the pinned runtime dependencies (torch's own included), which find that torch installed.
# The pip_ca secret, when given, is the CA bundle of both indexes; PIP_INDEX_URL and
# PIP_EXTRA_INDEX_URL reach pip as they are (empty: pip's default).
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && case "$TORCH_VARIANT" in \
        cpu|cuda) ;; \
        *) echo "error: TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac \
 && if [ -z "$TORCH_INDEX_URL" ]; then \
        echo "error: pass --build-arg TORCH_INDEX_URL=<PyTorch's $TORCH_VARIANT wheel index> (see the README, 'Deployment');" \
             "without it pip would install the multi-GB CUDA build from the default index" >&2; \
        exit 1; \
    fi \
 && torch_version="$(grep -E '^torch==' /tmp/requirements.txt | cut -d= -f3)" \
 && env -u PIP_EXTRA_INDEX_URL pip install --no-deps --index-url "$TORCH_INDEX_URL" "torch==${torch_version}" \
 && pip install -r /tmp/requirements.txt -c /tmp/constraints.txt \
 && python -c "import sys, torch; cuda = torch.version.cuda is not None; \
wanted = sys.argv[1] == 'cuda'; \
sys.exit(0 if cuda == wanted else f'error: torch {torch.__version__} is not a {sys.argv[1]} build; check TORCH_INDEX_URL')" \
        "$TORCH_VARIANT" \
 && pip uninstall --yes setuptools pip
# What the service never runs: torch's C++ test programs and protoc (torch/test, torch/bin but the
# torch_shm_manager that importing torch checks for), its C++ headers (torch/include, for compiling
# extensions: the image has no compiler), and the packages' own test suites (sympy's,
# numpy's, networkx's): about 250 MB of the CPU image.
RUN site="$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && rm -r "$site/torch/test" "$site/torch/include" \
 && find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -delete \
 && find "$site" -depth -type d -name tests -exec rm -r {} +

FROM ${PYTHON_IMAGE}
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="torch functions service" \
      org.opencontainers.image.description="Every torch.nn activation and loss function over HTTP" \
      io.torchfn.torch-variant="${TORCH_VARIANT}"
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /tmp app
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY app ./app
RUN python -m compileall -q app
# Everything the process writes goes under /tmp (a tmpfs or emptyDir), so the root filesystem
# can be read-only: home, caches of torch, its compilers and Python, multi-process metrics.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/torch \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    TRITON_CACHE_DIR=/tmp/triton \
    CUDA_CACHE_PATH=/tmp/nv \
    TMPDIR=/tmp \
    TORCHFN_HOST=0.0.0.0 \
    TORCHFN_PORT=8000 \
    TORCHFN_GRPC_PORT=8001 \
    TORCHFN_WORKERS=1 \
    TORCHFN_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["python", "-m", "app.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "app.serve"]
