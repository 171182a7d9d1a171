# The errands server in a small image: `errands serve` on 0.0.0.0:7733, as a non-root user,
# keeping its SQLite store on the /data volume unless ERRANDS_DB names a PostgreSQL database.
#
#   docker build -t errands .                 # compiles the server in the build stage
#   docker run -p 7733:7733 -v errands-data:/data errands
#
# Every `errands serve` flag that has an ERRANDS_* variable (README.md, "Serving options") can be
# set with `-e`, e.g. `-e ERRANDS_DB=postgres://user:pass@db/errands -e ERRANDS_TOKEN=...`.
#
# With a server binary built already (glibc no newer than the runtime's Debian 12), skip the
# compile: put it alone in a directory and use that as the context:
#
#   docker build --build-arg BINARY=prebuilt -f Dockerfile DIR   # DIR holds `errands`
#
# scripts/test-image.sh builds it that way with podman and runs the image's filesystem.

# Which stage provides /errands: `build` (compile here) or `prebuilt` (take it from the context).
ARG BINARY=build

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Stripped: the release profile keeps line tables for profiling, which the image has no use for.
RUN cargo build --release --locked -p errands \
    && install -s target/release/errands /errands

FROM scratch AS prebuilt
COPY errands /errands

# A stage chosen by the build argument (only that one is built).
FROM ${BINARY} AS binary

FROM docker.io/library/debian:bookworm-slim
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin errands \
    && mkdir -p /data \
    && chown errands:errands /data
COPY --from=binary /errands /usr/local/bin/errands
USER errands
WORKDIR /data
VOLUME /data
# Listen on every interface inside the container. ERRANDS_URL is where the command-line client
# (and so the HEALTHCHECK) finds the server: keep its port in step with ERRANDS_LISTEN's.
ENV ERRANDS_LISTEN=0.0.0.0:7733 \
    ERRANDS_DB=/data/errands.db \
    ERRANDS_URL=http://127.0.0.1:7733
EXPOSE 7733
# `errands check` asks /readyz: the process answers and its store accepts writes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["errands", "check"]
STOPSIGNAL SIGTERM
CMD ["errands", "serve"]
