"""Benchmark: which HTTP client, and which pool limits, for the trainer callbacks.

Run with `uv run python benchmarks/bench_http_client.py [--quick]`; it prints the tables.

A fake trainer (uvicorn + a raw ASGI app, zero latency) runs in its own process pinned to core 1;
each measurement runs in a fresh client process pinned to core 0, which keeps C requests in flight
(C = 16, 128, 1024) posting the chat callback body for a fixed window, then prints requests/s,
client CPU per request and latency, and exits without cleaning up (closing a pool with a
thousand queued requests can take longer than the measurement).

Clients:
- httpx.AsyncClient, Limits(max_connections=M, max_keepalive_connections=M) (server_core today);
- the same behind an asyncio.Semaphore(M), so httpx's pool never holds queued requests;
- aiohttp.ClientSession with TCPConnector(limit=M).
And the cost of a client per request (the 0.2.x way) against one shared client.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchkit as kit

CLIENT_CPU = 0
TRAINER_CPU = 1
POOL_SIZES = (10, 50, 100, 200, 500, 1000)
CONCURRENCY = (16, 128, 1024)
HEADERS = {"content-type": "application/json"}


# ---- the trainer process ---------------------------------------------------------------------


def trainer_main(args: argparse.Namespace) -> None:
    kit.pin_to_cpu(TRAINER_CPU)
    kit.raise_fd_limit()
    import uvicorn

    kit.install_uvloop()
    config = kit.trainer_config(kit.FakeTrainer(args.latency), args.port)
    uvicorn.Server(config).run()


# ---- one measurement, in its own process ------------------------------------------------------


def make_poster(lib: str, pool: int) -> tuple[Any, Any]:
    """(post(url) coroutine function, the client) for one client configuration."""
    if lib in ("httpx", "httpx+sem"):
        import httpx

        client = httpx.AsyncClient(
            timeout=httpx.Timeout(300.0, connect=10.0),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        )

        async def post(url: str) -> int:
            response = await client.post(url, content=kit.CHAT_BODY, headers=HEADERS)
            response.content  # noqa: B018  (read, as the SDK does)
            return response.status_code

        if lib == "httpx+sem":
            gate = asyncio.Semaphore(pool)
            ungated = post

            async def post(url: str) -> int:
                async with gate:
                    return await ungated(url)

        return post, client
    if lib == "aiohttp":
        import aiohttp

        client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool),
            timeout=aiohttp.ClientTimeout(total=300.0, connect=10.0),
        )

        async def post(url: str) -> int:
            async with client.post(url, data=kit.CHAT_BODY, headers=HEADERS) as response:
                await response.read()
                return response.status

        return post, client
    raise ValueError(lib)


def client_run(args: argparse.Namespace) -> None:
    """Keep ``args.concurrency`` posts in flight; a watchdog thread owns the window.

    The window is timed by a thread, not by the event loop: a pool that stalls the loop for
    seconds must not stretch the measurement. The thread prints the result and ends the process.
    """
    url = f"http://{kit.HOST}:{args.port}/v1/chat/completions"
    state = {"count": 0, "errors": 0, "measuring": False}
    latencies: list[float] = []

    def watchdog() -> None:
        time.sleep(args.warmup)
        state["measuring"] = True
        t0, cpu0 = time.perf_counter(), time.process_time()
        tcpu0 = kit.cpu_seconds(args.trainer_pid)
        time.sleep(args.duration)
        t1, cpu1 = time.perf_counter(), time.process_time()
        tcpu1 = kit.cpu_seconds(args.trainer_pid)
        count, window = state["count"], t1 - t0
        done = list(latencies[:count])
        result = {
            "rps": count / window,
            "cpu_us_per_req": 1e6 * (cpu1 - cpu0) / max(1, count),
            "client_cpu_pct": 100 * (cpu1 - cpu0) / window,
            "trainer_cpu_pct": 100 * (tcpu1 - tcpu0) / window,
            "p50_ms": 1000 * kit.percentile(done, 0.5),
            "p99_ms": 1000 * kit.percentile(done, 0.99),
            "errors": state["errors"],
            "count": count,
        }
        print("RESULT " + json.dumps(result), flush=True)
        os._exit(0)  # no clean-up: closing a pool with a thousand queued requests is slow

    async def main() -> None:
        post, _client = make_poster(args.lib, args.pool)

        async def worker() -> None:
            while True:
                started = time.perf_counter()
                try:
                    status = await post(url)
                except Exception:
                    state["errors"] += 1
                    await asyncio.sleep(0.01)
                    continue
                if state["measuring"]:
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                        state["count"] += 1
                    else:
                        state["errors"] += 1

        threading.Thread(target=watchdog, daemon=True).start()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    asyncio.run(main())


async def per_request_run(args: argparse.Namespace) -> dict[str, Any]:
    """Sequential requests: a shared client vs a new client per request (0.2.x), per library."""
    url = f"http://{kit.HOST}:{args.port}/v1/chat/completions"
    n = args.requests
    out: dict[str, Any] = {}

    async def timed(name: str, fn: Any, reps: int) -> None:
        await fn()  # warm
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            await fn()
        out[name] = {
            "wall_ms": 1000 * (time.perf_counter() - t0) / reps,
            "cpu_ms": 1000 * (time.process_time() - cpu0) / reps,
        }

    import aiohttp
    import httpx

    shared = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))

    async def httpx_shared() -> None:
        (await shared.post(url, content=kit.CHAT_BODY, headers=HEADERS)).content  # noqa: B018

    async def httpx_new() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)) as client:
            (await client.post(url, content=kit.CHAT_BODY, headers=HEADERS)).content  # noqa: B018

    async def httpx_create_only() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)):
            pass

    session = aiohttp.ClientSession()

    async def aiohttp_shared() -> None:
        async with session.post(url, data=kit.CHAT_BODY, headers=HEADERS) as response:
            await response.read()

    async def aiohttp_new() -> None:
        async with (
            aiohttp.ClientSession() as own,
            own.post(url, data=kit.CHAT_BODY, headers=HEADERS) as response,
        ):
            await response.read()

    await timed("httpx, one shared client", httpx_shared, n)
    await timed("httpx, new client per request (0.2.x)", httpx_new, max(10, n // 10))
    await timed("httpx, AsyncClient() + aclose() alone", httpx_create_only, max(10, n // 10))
    await timed("aiohttp, one shared session", aiohttp_shared, n)
    await timed("aiohttp, new session per request", aiohttp_new, max(10, n // 10))
    await shared.aclose()
    await session.close()
    return out


def client_main(args: argparse.Namespace) -> None:
    kit.pin_to_cpu(CLIENT_CPU)
    kit.raise_fd_limit()
    kit.install_uvloop()
    if args.lib != "per-request":
        client_run(args)  # prints its result and exits
        return
    result = asyncio.run(per_request_run(args))
    print("RESULT " + json.dumps(result), flush=True)


# ---- the orchestrator -----------------------------------------------------------------------


def _child(*extra: str, timeout: float = 120.0) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{' '.join(extra)} printed no result:\n{done.stderr[-2000:]}")
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pool sizes, shorter windows")
    parser.add_argument("--libs", default="httpx,httpx+sem,aiohttp")
    parser.add_argument("--pools", default="")
    parser.add_argument("--concurrency", default="")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--requests", type=int, default=300, help="per-request comparison size")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--conc", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trainer-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "trainer":
        trainer_main(args)
        return
    if args.role == "client":
        args.concurrency = args.conc
        client_main(args)
        return

    pools = (
        [int(x) for x in args.pools.split(",")]
        if args.pools
        else ([10, 100, 1000] if args.quick else list(POOL_SIZES))
    )
    concs = [int(x) for x in args.concurrency.split(",")] if args.concurrency else list(CONCURRENCY)
    duration = 1.0 if args.quick else args.duration
    libs = args.libs.split(",")
    port = kit.free_port()
    trainer = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--role", "trainer", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(kit.wait_listening(kit.HOST, port))
        results: dict[str, dict] = {}
        for lib in libs:
            for pool in pools:
                for conc in concs:
                    if lib == "httpx+sem" and pool >= conc:
                        continue  # the gate never waits: same as plain httpx
                    cell_started = time.perf_counter()
                    r = _child(
                        "--role",
                        "client",
                        "--lib",
                        lib,
                        "--pool",
                        str(pool),
                        "--conc",
                        str(conc),
                        "--port",
                        str(port),
                        "--trainer-pid",
                        str(trainer.pid),
                        "--warmup",
                        str(args.warmup),
                        "--duration",
                        str(duration),
                    )
                    results[f"{lib}|{pool}|{conc}"] = r
                    print(
                        f"  {lib:9s} M={pool:4d} C={conc:4d}: {r['rps']:6.0f} req/s, "
                        f"{r['cpu_us_per_req']:6.0f} us CPU/req, client CPU "
                        f"{r['client_cpu_pct']:3.0f}%, trainer CPU {r['trainer_cpu_pct']:3.0f}%"
                        f", p99 {r['p99_ms']:.0f} ms ({time.perf_counter() - cell_started:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
        per_request = _child(
            "--role",
            "client",
            "--lib",
            "per-request",
            "--port",
            str(port),
            "--requests",
            str(100 if args.quick else args.requests),
        )
    finally:
        trainer.terminate()
        trainer.wait(timeout=15)

    print()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; client process "
        f"on core {CLIENT_CPU}, fake trainer (zero latency) on core {TRAINER_CPU}; "
        f"{args.warmup:g} s warm-up + {duration:g} s per cell"
    )
    print()
    print("requests/s (client CPU us per request) [p99 ms] with C requests in flight:")
    head = "| client | M | " + " | ".join(f"C={c}" for c in concs) + " |"
    print(head)
    print("|---|---:|" + "---:|" * len(concs))
    for lib in libs:
        for pool in pools:
            cells = []
            for conc in concs:
                r = results.get(f"{lib}|{pool}|{conc}")
                cells.append(
                    "(= httpx)"
                    if r is None
                    else f"{r['rps']:.0f} ({r['cpu_us_per_req']:.0f}) [{r['p99_ms']:.0f}]"
                )
            name = {
                "httpx": "httpx Limits(M, M)",
                "httpx+sem": "httpx Limits(M, M) + Semaphore(M)",
                "aiohttp": "aiohttp TCPConnector(limit=M)",
            }[lib]
            print(f"| {name} | {pool} | " + " | ".join(cells) + " |")
    print()
    print("one request at a time (C=1): shared client vs a client per request:")
    print("| how | wall ms per request | CPU ms per request |")
    print("|---|---:|---:|")
    for name, r in per_request.items():
        print(f"| {name} | {r['wall_ms']:.2f} | {r['cpu_ms']:.2f} |")


if __name__ == "__main__":
    main()
