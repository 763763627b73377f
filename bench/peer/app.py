"""The FastAPI twin of `taskward-hello`, for comparing `taskward serve` with Gunicorn.

Run by `scripts/bench-serve` as
`gunicorn -w 2 -k uvicorn.workers.UvicornWorker app:app --bind 127.0.0.1:PORT`:

    GET /          -> "hello from <pid>\n"    (text/plain)
    GET /slow/{ms} -> "slept <ms> ms\n" after <ms> milliseconds
"""

import asyncio
import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello() -> str:
    """Says which worker process answered, as taskward-hello does."""
    return f"hello from {os.getpid()}\n"


@app.get("/slow/{ms}", response_class=PlainTextResponse)
async def slow(ms: int) -> str:
    """Answers after `ms` milliseconds."""
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms\n"
