# matchcore in a container: any role, one image.
#
#   docker build -t matchcore .
#   docker run --rm matchcore --version
#   docker run -d --name a --network host -v /etc/matchcore:/etc/matchcore:ro \
#       -v matchcore-a:/var/lib/matchcore matchcore primary --config /etc/matchcore/group.toml --node a
#
# The build stage compiles the Cython extensions into a wheel; the runtime stage installs only
# that wheel and its dependencies (no compiler, no sources). docs/operations.md, "Running in a
# container", covers the group file, volumes and ports.

# ---- build: the wheel, extensions compiled -------------------------------------------------
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE CHANGELOG.md ./
COPY matching ./matching
COPY replication ./replication
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir "setuptools>=77" wheel "Cython>=3.0" "numpy>=1.24" \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels .

# ---- runtime: the installed wheel, run as an unprivileged user ------------------------------
FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/matchcore-*.whl \
    && rm -rf /wheels \
    && useradd --system --home-dir /var/lib/matchcore --create-home matchcore
# A node does no linear algebra: one BLAS thread keeps the process small.
ENV OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
USER matchcore
WORKDIR /var/lib/matchcore
VOLUME ["/var/lib/matchcore"]
# The ports are the group file's: each node's endpoint, its stream at +100, and the witness's.
ENTRYPOINT ["matchcore"]
CMD ["--help"]
