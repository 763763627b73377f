"""Seed 004's table for Python clients: how often ending an HTTP client leaves nothing of it running.

The Python twin of `crates/taskward-http/examples/close_table.rs`, trial for trial: each
trial gets a fresh event loop (`asyncio.Runner`; its task count before the client exists is
the baseline) and a fresh client (curl_cffi's `AsyncSession`, the client seed 004 is about,
or aiohttp's `ClientSession`) with a 250 ms timeout, which makes three keep-alive
requests, two requests that time out against an endpoint answering after 2 s, one request
still in flight on a task of the application's, and one streaming response left open. The
client is then ended by the row's method, the loop settles (64 yields), and the trial
counts what is left: the loop's tasks (`asyncio.all_tasks()`) and the sockets in
`/proc/self/fd`, above the baseline. A trial succeeds when both are back to it. "Time
until gone" is the median, over the successful trials, from the start of the ending until
the counts were back.

The server runs in another process (this script, re-run with `--server`): stdlib
`http.server`, HTTP/1.1 keep-alive; `/slow` answers after 2 s and `/stream` sends its
first chunk at once and its last after 2 s.

    bash scripts/bench-close-table [--trials 100]

(which builds the venv `target/bench-venv-client` with the pinned curl_cffi and aiohttp).
"""

import asyncio
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Per-request timeout of every client, and how long the slow endpoint and stream take:
# the Rust table's figures.
TIMEOUT = 0.25
SLOW = 2.0
# A trial whose set-up fails (a quick request timed out on a busy machine) is run again.
ATTEMPTS = 3


# ---------------------------------------------------------------- the server process


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def do_GET(self):
        try:
            if self.path == "/":
                self.reply(b"ok")
            elif self.path == "/slow":
                time.sleep(SLOW)
                self.reply(b"late")
            elif self.path == "/stream":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.chunk(b"first")
                time.sleep(SLOW)
                self.chunk(b"last")
                self.chunk(b"")
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout, a close): what this table is about.
            self.close_connection = True

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def serve():
    """Serves on 127.0.0.1:0, prints the port, and stops at stdin's end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


# ---------------------------------------------------------------- the clients


class Setup(Exception):
    """The trial could not be set up (not a result)."""


class TimedOut(Exception):
    pass


class CurlCffi:
    label = "curl_cffi AsyncSession"

    def __init__(self):
        from curl_cffi.requests import AsyncSession

        self.session = AsyncSession(timeout=TIMEOUT)

    async def get(self, url, whole):
        from curl_cffi.requests.exceptions import Timeout

        try:
            response = await self.session.get(url, stream=not whole)
        except Timeout as e:
            raise TimedOut() from e
        if whole:
            return None
        async for _chunk in response.aiter_content():
            break
        return response

    @staticmethod
    async def release(response):
        await response.aclose()

    async def close(self):
        await self.session.close()


class Aiohttp:
    label = "aiohttp ClientSession"

    def __init__(self):
        import aiohttp

        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))

    async def get(self, url, whole):
        try:
            response = await self.session.get(url)
            if whole:
                await response.read()
                return None
            await response.content.readany()
            return response
        except (asyncio.TimeoutError, TimeoutError) as e:
            raise TimedOut() from e

    @staticmethod
    async def release(response):
        response.close()

    async def close(self):
        await self.session.close()


# ---------------------------------------------------------------- one trial

ROWS = [
    (CurlCffi, "drop"),
    (CurlCffi, "close()"),
    (CurlCffi, "close() + sleep 1 s"),
    (Aiohttp, "drop"),
    (Aiohttp, "close()"),
    (Aiohttp, "close() + sleep 1 s"),
]


def sockets():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


async def trial(library, method, port):
    baseline = (len(asyncio.all_tasks()), sockets())

    def left():
        return (
            max(0, len(asyncio.all_tasks()) - baseline[0]),
            max(0, sockets() - baseline[1]),
        )

    def url(path):
        return f"http://127.0.0.1:{port}{path}"

    client = library()
    try:
        for _ in range(3):
            await client.get(url("/"), True)
    except Exception as e:
        raise Setup(f"GET /: {e!r}") from e
    for got in await asyncio.gather(
        client.get(url("/slow"), True), client.get(url("/slow"), True), return_exceptions=True
    ):
        if not isinstance(got, TimedOut):
            raise Setup(f"GET /slow did not time out: {got!r}")
    # The application's task, with a request in flight.
    in_flight = asyncio.create_task(client.get(url("/slow"), True))
    try:
        stream = await client.get(url("/stream"), False)
    except Exception as e:
        raise Setup(f"GET /stream: {e!r}") from e

    started = time.perf_counter()
    if method == "drop":
        del client
        gc.collect()
    else:
        await client.close()
    gone_after = None
    if method.endswith("sleep 1 s"):
        # The sleep, watched: note when the counts first come back.
        while time.perf_counter() - started < 1.0:
            await asyncio.sleep(0.01)
            if gone_after is None and left() == (0, 0):
                gone_after = time.perf_counter() - started
    for _ in range(64):
        await asyncio.sleep(0)
    tasks, open_sockets = left()
    if gone_after is None and (tasks, open_sockets) == (0, 0):
        gone_after = time.perf_counter() - started
    # Counted; now let go of what the application still held.
    try:
        await library.release(stream)
    except Exception:
        pass
    in_flight.cancel()
    return tasks, open_sockets, gone_after


def run_trial(library, method, port):
    with warnings.catch_warnings():
        # aiohttp warns about the sessions the "drop" rows leave unclosed: that is the row.
        warnings.simplefilter("ignore", ResourceWarning)
        with asyncio.Runner() as runner:
            # Closing the runner cancels what the trial left, so the next one starts clean.
            return runner.run(trial(library, method, port))


def run_row(library, method, port, trials):
    outcomes, failed = [], []
    for _ in range(trials):
        error = None
        for _ in range(ATTEMPTS):
            try:
                outcomes.append(run_trial(library, method, port))
                error = None
                break
            except Setup as e:
                error = str(e)
        if error is not None:
            failed.append(error)
        gc.collect()
    if not outcomes:
        raise SystemExit(f"{library.label}: {method}: no trial could be set up: {failed[:3]}")
    n = len(outcomes)
    clean = sum(1 for t, s, _ in outcomes if t == 0 and s == 0)
    gone = [g for _, _, g in outcomes if g is not None]
    median = f"{statistics.median(gone) * 1e3:.1f} ms" if gone else "never seen"
    setups = f" ({len(failed)} trials not set up, e.g. {failed[0]})" if failed else ""
    return (
        f"| {library.label}: {method}{setups} | {clean * 100 / n:.1f}% "
        f"| {sum(t for t, _, _ in outcomes) / n:.2f} | {sum(s for _, s, _ in outcomes) / n:.2f} "
        f"| {median} |"
    )


def main():
    args = sys.argv[1:]
    if args == ["--server"]:
        serve()
        return
    trials = 100
    if args:
        if len(args) != 2 or args[0] != "--trials" or not args[1].isdigit() or int(args[1]) < 1:
            raise SystemExit(f"close_table.py: expected [--trials N] (N > 0), found {' '.join(args)!r}")
        trials = int(args[1])
    server = subprocess.Popen(
        [sys.executable, __file__, "--server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()
        if not line.strip().isdigit():
            raise SystemExit(f"close_table.py: the server printed {line!r}, not a port")
        port = int(line)
        import aiohttp
        import curl_cffi

        print(
            f"\n{trials} trials per row; python {sys.version.split()[0]}, curl_cffi "
            f"{curl_cffi.__version__}, aiohttp {aiohttp.__version__}\n"
        )
        print("| Client, ended by | Success Rate | Avg. Remaining Tasks | Avg. Remaining Sockets "
              "| Time until gone (median) |\n|---|---|---|---|---|", flush=True)
        for library, method in ROWS:
            print(run_row(library, method, port, trials), flush=True)
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
