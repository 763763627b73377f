"""The FastAPI twin of `taskward-demo`: the seed's service, written with the seed's "safe pattern".

Run by `scripts/bench-demo` (crates/taskward-demo/benches/side_by_side.rs) as
`gunicorn -w 2 -k uvicorn.workers.UvicornWorker app:app --bind 127.0.0.1:PORT`, with
`DEMO_DB` naming the SQLite file (default `demo.sqlite3`, created if missing):

    POST /items {"name": ...} -> 201 {"id", "name"}, sent after the batch holding it commits
                                 (group commit: a batch is what queued during the last one)
    GET /items/{id}           -> 200 {"id", "name"} (through the cache), 404 if unknown
    GET /items?limit=N        -> 200 {"items": [...]}, newest first (default 20, 1 to 1000)
    GET /stats                -> the cache's statistics (refreshed every second)
    GET /upstream             -> calls /builtin on this server (or DEMO_UPSTREAM), 504 on timeout
    GET /healthz, GET /readyz -> 200; /readyz is 503 until init_db and warm_cache are done

The lifecycle is the seed's, on purpose, and not improved on: startup launches `init_db`,
`warm_cache`, a periodic stats job and the batching writer as tasks tracked in a global list;
shutdown cancels them, gathers them with a 5 s timeout, then `await asyncio.sleep(0)`.
Whatever that loses (an item still queued for the writer when it is cancelled is never
committed; its request waits for an answer that never comes) it loses. `unsafe_app.py` is
the same service written with the seed's "WRONG" pattern; it imports this module.
"""

import asyncio
import logging
import os
import sqlite3
import threading
import urllib.request

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

logger = logging.getLogger("demo")

DB_PATH = os.environ.get("DEMO_DB", "demo.sqlite3")
UPSTREAM = os.environ.get("DEMO_UPSTREAM")
UPSTREAM_TIMEOUT = int(os.environ.get("DEMO_UPSTREAM_TIMEOUT_MS", "500")) / 1000
# Items per transaction at most: the Rust writer's figure.
BATCH = 64

app = FastAPI()
# Every route but POST /items, shared with the unsafe twin (unsafe_app.py), which answers
# POST /items its own way.
router = APIRouter()

# Global task references for proper cleanup (the seed's pattern).
_background_tasks = []

# Set by init_db; None until then.
_db = None
# Items by id, and the statistics the periodic job refreshes.
_cache = {}
_stats = {"items": 0, "hits": 0, "misses": 0}
_counters = {"hits": 0, "misses": 0}
_warm = asyncio.Event()
# POST /items hands (name, future) to the writer here.
_queue: asyncio.Queue = asyncio.Queue(maxsize=4 * BATCH)


class Db:
    """One connection for the writer, one for readers (WAL lets them run side by side)."""

    def __init__(self, path):
        self.writer = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self.writer.execute("PRAGMA journal_mode=WAL")
        self.writer.execute("PRAGMA synchronous=NORMAL")
        self.writer.execute("BEGIN IMMEDIATE")
        try:
            self.writer.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            self.writer.execute("CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            self.writer.execute("COMMIT")
        except BaseException:
            self.writer.execute("ROLLBACK")
            raise
        self.reader = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self.writer_lock = threading.Lock()
        self.reader_lock = threading.Lock()

    def insert_batch(self, names):
        """Inserts `names` in one transaction; their (id, name), once committed."""
        with self.writer_lock:
            self.writer.execute("BEGIN")
            try:
                items = []
                for name in names:
                    cursor = self.writer.execute("INSERT INTO items (name) VALUES (?)", (name,))
                    items.append({"id": cursor.lastrowid, "name": name})
                self.writer.execute("COMMIT")
            except BaseException:
                self.writer.execute("ROLLBACK")
                raise
            return items

    def get(self, item_id):
        with self.reader_lock:
            row = self.reader.execute("SELECT id, name FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else {"id": row[0], "name": row[1]}

    def latest(self, limit):
        with self.reader_lock:
            rows = self.reader.execute("SELECT id, name FROM items ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "name": r[1]} for r in rows]


async def init_db():
    """Opens the database (created if missing); retried with backoff, as the Rust one is."""
    global _db
    delay = 0.1
    while True:
        try:
            _db = await asyncio.to_thread(Db, DB_PATH)
            return
        except sqlite3.Error as e:
            logger.error(f"init_db failed, retrying in {delay:.1f} s: {e}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def safe_background_init():
    """Safe background initialization with error handling (the seed's wrapper)."""
    try:
        await init_db()
    except Exception as e:
        logger.error(f"Background init failed: {e}")


async def warm_cache():
    """Loads the newest items into the cache once the database is there."""
    while _db is None:
        await asyncio.sleep(0.01)
    for item in await asyncio.to_thread(_db.latest, 10_000):
        _cache[item["id"]] = item
    _warm.set()


async def safe_warm_cache():
    try:
        await warm_cache()
    except Exception as e:
        logger.error(f"warm_cache failed: {e}")


async def refresh_stats():
    """The periodic job: refreshes the cache statistics every second."""
    while True:
        _stats.update(items=len(_cache), **_counters)
        await asyncio.sleep(1)


async def writer():
    """Group commit: takes whatever is queued (up to BATCH), commits it in one transaction,
    answers each POST, and again; what queues during a commit forms the next batch. No
    write waits for company."""
    while True:
        batch = [await _queue.get()]
        while len(batch) < BATCH:
            try:
                batch.append(_queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        while _db is None:
            await asyncio.sleep(0.01)
        try:
            items = await asyncio.to_thread(_db.insert_batch, [name for name, _ in batch])
        except sqlite3.Error as e:
            for _, done in batch:
                if not done.done():
                    done.set_exception(e)
            continue
        for item, (_, done) in zip(items, batch):
            _cache[item["id"]] = item
            if not done.done():
                done.set_result(item)


@app.on_event("startup")
async def startup():
    """Startup event handler with safe background task creation."""
    for job in (safe_background_init(), safe_warm_cache(), refresh_stats(), writer()):
        task = asyncio.create_task(job)
        _background_tasks.append(task)


@app.on_event("shutdown")
async def shutdown():
    """Shutdown handler to allow tasks to close cleanly (the seed's, as written)."""
    # Cancel background tasks
    for task in _background_tasks:
        if not task.done():
            task.cancel()

    # Wait for all background tasks to complete (with timeout)
    if _background_tasks:
        try:
            await asyncio.wait_for(asyncio.gather(*_background_tasks, return_exceptions=True), timeout=5.0)
        except asyncio.TimeoutError:
            logger.warning("Some background tasks did not complete in time")

    # Allow remaining pending tasks to complete
    await asyncio.sleep(0)


def error(status, message):
    return JSONResponse({"error": message}, status_code=status)


@app.exception_handler(RequestValidationError)
async def bad_request(_request: Request, exc: RequestValidationError):
    """A 400 with a JSON body, as the Rust demo answers bad requests."""
    return error(400, str(exc.errors()))


class NewItem(BaseModel):
    name: str


@app.post("/items", status_code=201)
async def create_item(item: NewItem):
    if not 1 <= len(item.name.encode()) <= 1000:
        return error(400, "name: expected 1 to 1000 bytes")
    done = asyncio.get_running_loop().create_future()
    await _queue.put((item.name, done))
    try:
        return await done
    except sqlite3.Error as e:
        return error(500, str(e))


@router.get("/items/{item_id}")
async def get_item(item_id: int):
    item = _cache.get(item_id)
    if item is not None:
        _counters["hits"] += 1
        return item
    _counters["misses"] += 1
    if _db is None:
        return error(503, "starting: the database is not ready")
    item = await asyncio.to_thread(_db.get, item_id)
    if item is None:
        return error(404, f"no item {item_id}")
    _cache[item_id] = item
    return item


@router.get("/items")
async def list_items(limit: int = 20):
    if not 1 <= limit <= 1000:
        return error(400, "limit: expected 1 to 1000")
    if _db is None:
        return error(503, "starting: the database is not ready")
    return {"items": await asyncio.to_thread(_db.latest, limit)}


@router.get("/stats")
async def stats():
    return dict(_stats)


@router.get("/upstream", response_class=PlainTextResponse)
async def upstream(request: Request):
    # This worker's own address, never one taken from the request's Host header.
    host, port = request.scope.get("server") or ("127.0.0.1", 80)
    url = UPSTREAM or f"http://{host}:{port}/builtin"

    def call():
        with urllib.request.urlopen(url, timeout=UPSTREAM_TIMEOUT) as response:
            return response.status, response.read().decode(errors="replace")

    try:
        status, body = await asyncio.to_thread(call)
    except TimeoutError:
        return error(504, f"upstream {url}: no answer within {UPSTREAM_TIMEOUT} s")
    except Exception as e:
        if isinstance(getattr(e, "reason", None), TimeoutError):
            return error(504, f"upstream {url}: no answer within {UPSTREAM_TIMEOUT} s")
        return error(502, f"upstream {url}: {e}")
    return f"upstream answered {status}: {body}"


@router.get("/builtin", response_class=PlainTextResponse)
async def builtin(ms: int = 5):
    if ms > 2_000:
        return error(400, "ms: expected at most 2000")
    await asyncio.sleep(ms / 1000)
    return "ok"


@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz():
    if _db is None or not _warm.is_set():
        return error(503, "not ready: init_db or warm_cache still running")
    return {"status": "ready"}


app.include_router(router)
