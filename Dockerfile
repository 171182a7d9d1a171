# errands serve in a small image. Not built by the test command (no container runtime on the
# CI machine); see examples/postgres-nodes/compose.yaml for how it is meant to be used.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p errands && cp target/release/errands /usr/local/bin/errands

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data errands \
    && mkdir -p /data && chown errands /data
COPY --from=build /usr/local/bin/errands /usr/local/bin/errands
USER errands
WORKDIR /data
VOLUME /data
# Listen on every interface inside the container; keep the SQLite file on the volume unless
# ERRANDS_DB names a PostgreSQL database.
ENV ERRANDS_LISTEN=0.0.0.0:7733 \
    ERRANDS_DB=/data/errands.db \
    ERRANDS_URL=http://127.0.0.1:7733
EXPOSE 7733
HEALTHCHECK --interval=10s --timeout=3s CMD ["errands", "check"]
CMD ["errands", "serve"]
