# The Python side of examples/compose: the errands wheel (SDK, `errands-worker`, and the server
# binary it carries) plus the FastAPI example. One image, two services: the worker and the web app.
# Built by compose with the repository as its context; not built by the test command.

FROM docker.io/library/rust:1-bookworm AS wheel
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /maturin \
    && /maturin/bin/pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src
COPY . .
RUN cd python && /maturin/bin/maturin build --release --strip --out /wheels

FROM docker.io/library/python:3.12-slim-bookworm
COPY --from=wheel /wheels /wheels
# The example's requirements.txt names the SDK as ../../python (a source build, which needs
# Rust); here the SDK is the wheel built above, and the rest of that list comes next to it.
RUN pip install --no-cache-dir /wheels/errands-*.whl fastapi "uvicorn[standard]" python-multipart \
    && useradd --system --uid 10001 --user-group --no-create-home app
COPY examples/fastapi /app
WORKDIR /app
USER app
ENV ERRANDS_URL=http://errands:7733
CMD ["errands-worker", "compiler_app.tasks:app"]
