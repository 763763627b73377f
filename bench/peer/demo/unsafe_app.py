"""The FastAPI twin of `taskward-demo` written with the seed's "WRONG" pattern: the code the
seed's fix summary starts from, kept to show what it loses.

Run by `scripts/bench-demo` (crates/taskward-demo/benches/side_by_side.rs) as
`gunicorn -w 2 -k uvicorn.workers.UvicornWorker unsafe_app:app`, beside `app.py` (the seed's
safe pattern), whose database, cache, writer and routes it shares. What differs is only
what the seed lists as its root causes:

1. `asyncio.create_task()` called directly in the lifespan context manager;
2. no reference kept to the tasks;
3. no `await asyncio.sleep(0)` at shutdown;
4. no cancellation or wait for the tasks at shutdown;

and `POST /items` answers 201 once the item is queued (before the writer commits it), as
fire-and-forget code does: it cannot know the item's id, so its answer has none. Its writer
is the one `taskward-demo --unsafe-fire-and-forget` copies from the seed's service: an
unbounded queue, flushed in one transaction 200 ms after its first item arrives.

Whatever the writer still holds when a worker stops (a Gunicorn reload, `--max-requests`
recycling, the final SIGTERM) is lost although the client was told it was stored; pending
tasks the worker's event loop still held are destroyed with it.
"""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

import app as service

# Seconds between the first item of a batch and its commit.
FLUSH_EVERY = 0.2

# POST /items puts names here; unbounded, so a POST never waits.
_queue: asyncio.Queue = asyncio.Queue()


async def writer():
    """Commits what queued in the FLUSH_EVERY after a first item, in one transaction."""
    while True:
        names = [await _queue.get()]
        await asyncio.sleep(FLUSH_EVERY)
        while not _queue.empty():
            names.append(_queue.get_nowait())
        while service._db is None:
            await asyncio.sleep(0.01)
        try:
            items = await asyncio.to_thread(service._db.insert_batch, names)
        except Exception as e:
            service.logger.error(f"batch of {len(names)} not stored: {e}")
            continue
        for item in items:
            service._cache[item["id"]] = item


@asynccontextmanager
async def lifespan(_app):
    # ❌ WRONG (the seed's root causes): tasks created in the lifespan, their references
    # dropped at once, and nothing done for them at shutdown.
    asyncio.create_task(service.init_db())
    asyncio.create_task(service.warm_cache())
    asyncio.create_task(service.refresh_stats())
    asyncio.create_task(writer())
    yield


app = FastAPI(lifespan=lifespan)
app.add_exception_handler(RequestValidationError, service.bad_request)


@app.post("/items", status_code=201)
async def create_item(item: service.NewItem):
    if not 1 <= len(item.name.encode()) <= 1000:
        return service.error(400, "name: expected 1 to 1000 bytes")
    # ❌ WRONG: acknowledged as soon as it is queued; nobody hears whether it is stored.
    _queue.put_nowait(item.name)
    return {"name": item.name, "status": "queued"}


app.include_router(service.router)
