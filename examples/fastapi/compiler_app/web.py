"""The web side: upload a file, get a job id, watch its progress over a WebSocket.

Run it with:  uvicorn compiler_app.web:api --port "${WEB_PORT:-8000}"
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

import errands

from .tasks import app as errands_app
from .tasks import compile_source

# Job args travel through the server (limit 1 MiB); keep well under it.
MAX_UPLOAD = 256 * 1024


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await errands_app.close()


api = FastAPI(title="errands FastAPI example", lifespan=lifespan)


def _view(job: errands.Job[Any]) -> dict[str, Any]:
    """What the browser needs to know about a job, from what the handle last saw of it."""
    progress = job.progress
    view: dict[str, Any] = {
        "id": job.id,
        "state": job.state.value if job.state else "unknown",
        "percent": progress.percent if progress else None,
        "message": progress.message if progress else None,
    }
    info = job.info  # the last snapshot: fetched on subscribing, and again once finished
    if job.state is errands.JobState.COMPLETED and info is not None:
        view["result"] = info.result
    elif job.state is errands.JobState.DEAD and info is not None and info.errors:
        view["error"] = f"{info.errors[-1].type}: {info.errors[-1].message}"
    return view


@api.post("/uploads", status_code=202)
async def upload(file: UploadFile) -> dict[str, str]:
    """Store nothing locally: the source goes to the worker inside the job's arguments."""
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"source larger than {MAX_UPLOAD} bytes")
    try:
        source = data.decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "source must be UTF-8 text") from None
    job = await compile_source.enqueue(file.filename or "upload", source)
    return {"job_id": job.id, "status": f"/jobs/{job.id}", "progress": f"/jobs/{job.id}/progress"}


@api.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, Any]:
    """The job's state, progress and (when finished) result or error."""
    job = errands_app.job(job_id)
    try:
        await job.status()
    except errands.NotFound:
        raise HTTPException(404, "no such job") from None
    return _view(job)


@api.websocket("/jobs/{job_id}/progress")
async def job_progress(ws: WebSocket, job_id: str) -> None:
    """Send the job's view each time it changes, until it is finished; then close.

    ``job.events()`` follows the errands server's event stream: the job as it is now first,
    then each state change and progress report as it happens. Nothing is polled.
    """
    await ws.accept()
    job = errands_app.job(job_id)
    last: dict[str, Any] | None = None
    try:
        try:
            async with job.events() as events:
                async for _ in events:
                    view = _view(job)
                    if view != last:
                        await ws.send_json(view)
                        last = view
        except errands.NotFound:
            await ws.send_json({"id": job_id, "state": "unknown"})
        await ws.close()
    except WebSocketDisconnect:
        pass  # the browser went away; leaving the block closed the subscription


PAGE = """<!doctype html>
<meta charset="utf-8"><title>errands: compile</title>
<style>body{font:16px system-ui;margin:3em}progress{width:24em}</style>
<h1>Compile a source file</h1>
<form id="f"><input type="file" name="file" required> <button>Upload</button></form>
<p><progress id="bar" max="100" value="0"></progress> <span id="msg"></span></p>
<pre id="out"></pre>
<script>
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/uploads", {method: "POST", body: new FormData(e.target)});
  const {job_id, progress} = await r.json();
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + progress);
  ws.onmessage = (m) => {
    const v = JSON.parse(m.data);
    if (v.percent !== null) document.getElementById("bar").value = v.percent;
    document.getElementById("msg").textContent = v.state + (v.message ? ": " + v.message : "");
    if (v.result || v.error) document.getElementById("out").textContent =
      JSON.stringify(v.result || v.error, null, 2);
  };
};
</script>
"""


@api.get("/", response_class=HTMLResponse)
async def index() -> str:
    """A one-page UI: upload, then a progress bar fed by the WebSocket."""
    return PAGE
