"""arq's demo app (download_content with a shared HTTP session) as an errands app.

docs/migrating-from-arq.md quotes this file. Run it from examples/from_arq with:

    errands-worker crawler.tasks:app --concurrency 10
"""

from __future__ import annotations

import aiohttp

import errands

app = errands.App()  # ERRANDS_URL (default http://127.0.0.1:7733), ERRANDS_TOKEN


@app.on_startup
async def startup(state: errands.State) -> None:
    state.session = aiohttp.ClientSession()


@app.on_shutdown
async def shutdown(state: errands.State) -> None:
    await state.session.close()


@app.task(timeout=300, max_attempts=5, retention=3600)
async def download_content(ctx: errands.Context, url: str) -> int:
    async with ctx.state.session.get(url) as response:
        if response.status != 200:
            # retry with a growing delay: 5 s, 10 s, 15 s, 20 s, then the job is dead
            raise errands.Retry(delay=ctx.attempt * 5)
        return len(await response.text())


@app.cron("12 9,12,18 * * *", tz="Europe/London")
@app.task
async def run_regularly(ctx: errands.Context) -> None:
    print("run foo job at 9.12am, 12.12pm and 6.12pm")
