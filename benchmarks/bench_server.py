"""Load benchmark: our rollout server (server_core.create_app) against the thinnest baseline.

Run with `uv run python benchmarks/bench_server.py [--quick]`; it prints one table.

Processes (this machine has 2 cores; each role gets a realistic core budget):
- the rollout server under test: a real uvicorn server on 127.0.0.1 (log_config=None, access log
  off), serving either ``server_core.create_app(agent)`` ("ours") or the baseline, pinned to core 0;
- the load process, pinned to core 1: the fake trainer (uvicorn + a raw ASGI app answering
  /v1/chat/completions and counting /v1/rollout/completed) and the load generator (a minimal
  keep-alive HTTP/1.1 client over asyncio streams) in one uvloop event loop;
- this orchestrator, also on core 1, mostly asleep: it polls GET /health every 20 ms on its own
  keep-alive connection (so the generator's loop delays do not leak into the latency figures).

Every rollout is the same exchange for both servers: init -> 202 {rollout_id, tools} -> chat
callback -> completed callback. "Ours" is ``server_core.create_app(agent)`` as shipped, with its
own TrainerClient (aiohttp; chat pool M = max(100, max_concurrent)). The baseline is the
thinnest FastAPI + uvicorn + httpx server: one shared httpx.AsyncClient with Limits(M, M), the
same M as ours (or --pool). Variants for comparison: ``--ours-client httpx`` (our TrainerClient
over an httpx transport with Limits(M, M)) and ``--baseline-client aiohttp`` (the baseline with
ours's client library, to isolate server_core's own overhead).
"""

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

import _benchkit as kit  # noqa: E402

logger = logging.getLogger("bench_server")

SERVER_CPU = 0
LOAD_CPU = 1
STEADY_NS = (16, 128, 1024)

# ---- the servers under test ------------------------------------------------------------------


def callback_pool(max_concurrent: int | None) -> int:
    """The chat pool size ``create_app`` gives its default client: max(100, max_concurrent)."""
    return max(100, max_concurrent if max_concurrent is not None else 100)


def build_ours(max_concurrent: int | None, pool: int | None, client: str = "default") -> Any:
    """``server_core.create_app`` serving the one-chat benchmark agent.

    ``client="default"``: the app exactly as shipped, ``create_app(agent)`` with its own
    ``TrainerClient`` (aiohttp, chat pool max(100, max_concurrent), completions a pool of
    their own); ``pool`` only passes ``client_config=TrainerClientConfig(max_connections=M)``.
    ``client="httpx"``: for comparison, the same ``TrainerClient`` routed through httpx, one
    ``httpx.AsyncHTTPTransport(limits=Limits(M, M))`` shared by chat and completions.
    """
    from server_core import RolloutAgentLoop, TrainerClient, TrainerClientConfig, create_app

    class BenchAgent(RolloutAgentLoop):
        name = "bench"

        def get_tools(self, request: Any) -> list[dict]:
            return kit.BENCH_TOOLS

        async def run(self, ctx: Any) -> Any:
            messages = list(ctx.request.messages)
            answer = await ctx.chat(messages)
            return ctx.complete([*messages, answer.message])

    kwargs: dict[str, Any] = {}
    if max_concurrent is not None:
        kwargs["max_concurrent"] = max_concurrent
    if client == "httpx":
        import httpx

        m = pool or callback_pool(max_concurrent)
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=m, max_keepalive_connections=m)
        )
        kwargs["client"] = TrainerClient(
            TrainerClientConfig(max_connections=m), transport=transport
        )
    elif client != "default":
        raise ValueError(f"unknown client variant {client!r}")
    elif pool is not None:
        kwargs["client_config"] = TrainerClientConfig(max_connections=pool)
    return create_app(BenchAgent(), **kwargs)


def build_baseline(pool: int, client_kind: str = "httpx") -> Any:
    """The thinnest FastAPI + uvicorn + httpx server doing the same exchanges.

    ``client_kind="aiohttp"`` swaps the shared httpx.AsyncClient for an aiohttp.ClientSession
    (to measure server_core's own overhead against a baseline with the same client as ours).
    """
    from contextlib import asynccontextmanager

    import httpx
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    state = {"active": 0, "completed": 0}
    tasks: set[asyncio.Task] = set()
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if client_kind == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=pool),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=300.0),
            )

            async def post(url: str, body: dict) -> dict:
                async with session.post(url, json=body) as response:
                    return await response.json()

            holder["post"], holder["close"] = post, session.close
        else:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(300.0, connect=10.0),
                limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            )

            async def post(url: str, body: dict) -> dict:
                return (await client.post(url, json=body)).json()

            holder["post"], holder["close"] = post, client.aclose
        yield
        await holder["close"]()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def run(req: dict) -> None:
        post = holder["post"]
        url = req["server_url"].rstrip("/")
        messages = req["messages"]
        try:
            chat = {
                "model": "default",
                "messages": messages,
                "rollout_id": req["rollout_id"],
                "temperature": 1.0,
                "top_p": 1.0,
                "logprobs": True,
                **req.get("completion_params", {}),
            }
            answer = (await post(f"{url}/v1/chat/completions", chat))["choices"][0]["message"]
            await post(
                f"{url}/v1/rollout/completed",
                {
                    "rollout_id": req["rollout_id"],
                    "status": "COMPLETED",
                    "final_messages": [*messages, answer],
                    "finish_reason": "stop",
                    "metrics": {},
                },
            )
        finally:
            state["active"] -= 1
            state["completed"] += 1

    @app.post("/v1/rollout/init", status_code=202)
    async def init(request: Request) -> JSONResponse:
        req = await request.json()
        state["active"] += 1
        task = asyncio.create_task(run(req))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JSONResponse({"rollout_id": req["rollout_id"], "tools": kit.BENCH_TOOLS}, 202)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(
            {
                "status": "healthy",
                "agent_loop": "baseline",
                "active_rollouts": state["active"],
                "completed_rollouts": state["completed"],
            }
        )

    return app


def server_main(args: argparse.Namespace) -> None:
    kit.pin_to_cpu(args.cpu)
    kit.raise_fd_limit()
    import uvicorn

    pool = args.pool or callback_pool(args.max_concurrent)
    if args.kind == "ours":
        app = build_ours(args.max_concurrent, args.pool, args.ours_client)
    else:
        app = build_baseline(pool, args.baseline_client)
    profiler = None
    if args.profile:
        import cProfile

        # uvicorn re-raises the SIGTERM it stopped on once it has shut down: exit through
        # Python so the profile gets written (a killed server leaves none).
        def _exit(signum: int, frame: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, _exit)
        profiler = cProfile.Profile()
        profiler.enable()
    try:
        uvicorn.run(
            app,
            host=kit.HOST,
            port=args.port,
            log_config=None,
            access_log=False,
            log_level="warning",
            backlog=8192,
        )
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


# ---- the load process: fake trainer + load generator ------------------------------------------


def init_body_factory(trainer_port: int):
    prefix = b'{"rollout_id":"'
    suffix = (
        b'","server_url":"http://' + f"{kit.HOST}:{trainer_port}".encode() + b'",'
        b'"messages":[{"role":"user","content":"What is 2 + 2?"}],'
        b'"completion_params":{"temperature":1.0,"max_tokens":64},'
        b'"max_turns":1,"metadata":{"ground_truth":"4"}}'
    )
    return lambda rollout_id: prefix + rollout_id.encode() + suffix


class Generator:
    """Keeps rollouts in flight against the server; learns of completions from the trainer."""

    def __init__(self, server_port: int, trainer_port: int, connections: int) -> None:
        self.pool = kit.RawPool(kit.HOST, server_port, connections)
        self.body = init_body_factory(trainer_port)
        self.waiters: dict[str, asyncio.Future] = {}
        self.accepted: list[str] = []
        self.completion_times: list[float] = []
        self.refused: dict[int, int] = {}
        self.init_errors = 0
        self.stop = False
        self._seq = itertools.count()
        self.in_flight = 0
        self.finished = 0
        self.peak_in_flight = 0
        self.init_latencies: list[float] = []

    def on_completed(self, rollout_id: str) -> None:
        self.completion_times.append(time.monotonic())
        future = self.waiters.pop(rollout_id, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def one_rollout(self, tag: str) -> bool:
        """Init one rollout and wait for its completion; False if it was never accepted."""
        loop = asyncio.get_running_loop()
        rollout_id = f"{tag}{next(self._seq):08d}"
        body = self.body(rollout_id)
        # Registered once: a retried init (same rollout_id) is deduplicated by the server, and
        # its completion may even arrive before the 202 is read.
        future = loop.create_future()
        self.waiters[rollout_id] = future
        for _ in range(50):
            started = time.monotonic()
            try:
                status, _ = await self.pool.request("POST", "/v1/rollout/init", body)
            except kit.HTTPError:
                self.init_errors += 1
                await asyncio.sleep(0.05)
                continue
            if status != 202:
                self.refused[status] = self.refused.get(status, 0) + 1
                await asyncio.sleep(0.05)
                continue
            self.init_latencies.append(time.monotonic() - started)
            self.accepted.append(rollout_id)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                await future
            finally:
                self.in_flight -= 1
                self.finished += 1
            return True
        self.waiters.pop(rollout_id, None)
        return False

    async def worker(self, tag: str) -> None:
        while not self.stop:
            await self.one_rollout(tag)


async def load_main_async(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gen = Generator(args.server_port, args.trainer_port, args.connections)
    trainer = kit.FakeTrainer(0.0, gen.on_completed)
    await kit.start_uvicorn(kit.trainer_config(trainer, args.trainer_port))
    await kit.wait_healthy(kit.HOST, args.server_port)
    result: dict[str, Any] = {}
    if args.mode == "steady":
        trainer.chat_latency_s = args.latency
        workers = [loop.create_task(gen.worker("s")) for _ in range(args.inflight)]
        await asyncio.sleep(args.warmup)
        t0, c0 = time.monotonic(), len(gen.completion_times)
        cpu0, scpu0 = time.process_time(), kit.cpu_seconds(args.server_pid)
        ocpu0, busy0 = kit.cpu_seconds(os.getppid()), kit.machine_busy_seconds()
        await asyncio.sleep(args.duration)
        t1, c1 = time.monotonic(), len(gen.completion_times)
        cpu1, scpu1 = time.process_time(), kit.cpu_seconds(args.server_pid)
        ocpu1, busy1 = kit.cpu_seconds(os.getppid()), kit.machine_busy_seconds()
        ours = (cpu1 - cpu0) + (scpu1 - scpu0) + (ocpu1 - ocpu0)
        gen.stop = True
        _, pending = await asyncio.wait(workers, timeout=args.drain)
        for task in pending:
            task.cancel()
        window = t1 - t0
        result.update(
            timed_out=bool(pending),
            drain_s=time.monotonic() - t1,
            rollouts_per_s=(c1 - c0) / window,
            window=[t0, t1],
            load_cpu_pct=100 * (cpu1 - cpu0) / window,
            server_cpu_pct=100 * (scpu1 - scpu0) / window,
            server_cpu_ms_per_rollout=1000 * (scpu1 - scpu0) / max(1, c1 - c0),
            other_cpu_pct=max(0.0, 100 * ((busy1 - busy0) - ours) / window),
            server_rss_mb=kit.rss_bytes(args.server_pid) / 2**20,
        )
    else:  # burst: exactly args.total rollouts at once
        # Warm the server's code paths and its callback pool at zero latency first.
        warm = [loop.create_task(gen.one_rollout("w")) for _ in range(200)]
        await asyncio.wait(warm)
        await asyncio.sleep(0.5)
        rss_before = kit.rss_bytes(args.server_pid)
        trainer.chat_latency_s = args.latency
        peak = {"rss": rss_before, "in_flight_at_peak": 0}
        done = asyncio.Event()

        async def sample_rss() -> None:
            while not done.is_set():
                rss = kit.rss_bytes(args.server_pid)
                if rss > peak["rss"]:
                    peak["rss"], peak["in_flight_at_peak"] = rss, gen.in_flight
                await asyncio.sleep(0.05)

        sampler = loop.create_task(sample_rss())
        gen.accepted.clear()
        gen.finished = 0
        t0 = time.monotonic()
        cpu0, scpu0 = time.process_time(), kit.cpu_seconds(args.server_pid)
        tasks = [loop.create_task(gen.one_rollout("b")) for _ in range(args.total)]
        all_accepted_at = None
        while True:
            await asyncio.sleep(0.05)
            if all_accepted_at is None and len(gen.accepted) >= args.total:
                all_accepted_at = time.monotonic() - t0
            if gen.finished >= args.total or time.monotonic() - t0 > args.drain:
                break
        t1 = time.monotonic()
        timed_out = gen.finished < args.total
        cpu1, scpu1 = time.process_time(), kit.cpu_seconds(args.server_pid)
        done.set()
        await sampler
        for task in tasks:
            task.cancel()
        # What stays after every rollout finished: the records kept for the idempotency TTL.
        await asyncio.sleep(1.0)
        rss_after = kit.rss_bytes(args.server_pid)
        result.update(
            rss_after_mb=rss_after / 2**20,
            timed_out=timed_out,
            wall_s=t1 - t0,
            all_accepted_s=all_accepted_at,
            window=[t0, t1],
            rss_before_mb=rss_before / 2**20,
            rss_peak_mb=peak["rss"] / 2**20,
            in_flight_at_rss_peak=peak["in_flight_at_peak"],
            load_cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0),
            server_cpu_pct=100 * (scpu1 - scpu0) / (t1 - t0),
        )
    completions = trainer.completions
    accepted = gen.accepted
    result.update(
        accepted=len(accepted),
        completed=sum(1 for r in accepted if completions.get(r, 0) > 0),
        lost=sum(1 for r in accepted if completions.get(r, 0) == 0),
        duplicates=sum(c - 1 for c in completions.values() if c > 1),
        error_completions=trainer.bad_completions,
        refused=gen.refused,
        init_errors=gen.init_errors,
        reconnects=gen.pool.reconnects,
        peak_in_flight=gen.peak_in_flight,
        init_p50_ms=1000 * kit.percentile(gen.init_latencies, 0.5),
        init_p99_ms=1000 * kit.percentile(gen.init_latencies, 0.99),
    )
    return result


def load_main(args: argparse.Namespace) -> None:
    kit.pin_to_cpu(args.cpu)
    kit.raise_fd_limit()
    kit.install_uvloop()
    gc.freeze()
    result = asyncio.run(load_main_async(args))
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)  # skip uvicorn's graceful shutdown of the trainer


# ---- the orchestrator -----------------------------------------------------------------------


async def probe_health(port: int, stop: asyncio.Event, samples: list, period: float = 0.02):
    """GET /health every ``period`` s on one keep-alive connection: (t, latency_s, active)."""
    conn = kit.RawConnection(kit.HOST, port)
    next_at = time.monotonic()
    while not stop.is_set():
        sent = time.monotonic()
        try:
            status, body = await conn.request("GET", "/health")
            latency = time.monotonic() - sent
            active = None
            if status == 200:
                with contextlib.suppress(ValueError):
                    active = json.loads(body).get("active_rollouts")
            samples.append((sent, latency, active, status))
        except kit.HTTPError:
            samples.append((sent, time.monotonic() - sent, None, 0))
            await asyncio.sleep(period)
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_at = time.monotonic()
    conn.close()


def _child_cmd(*extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *extra]


async def run_case(
    kind: str,
    *,
    mode: str,
    inflight: int = 0,
    total: int = 0,
    latency: float = 0.0,
    warmup: float = 2.0,
    duration: float = 10.0,
    drain: float = 6.0,
    max_concurrent: int | None = None,
    pool: int | None = None,
    connections: int | None = None,
    ours_client: str = "default",
    baseline_client: str = "httpx",
    logdir: Path,
    profile: bool = False,
) -> dict[str, Any]:
    """One server process + one load process; returns the load process's figures + /health."""
    sport, tport = kit.free_port(), kit.free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    server_log = open(logdir / f"server-{kind}-{mode}-{inflight or total}.log", "wb")  # noqa: SIM115 - the server process writes it until it ends
    server_args = [
        "--role",
        "server",
        "--kind",
        kind,
        "--port",
        str(sport),
        "--cpu",
        str(SERVER_CPU),
    ]
    if max_concurrent is not None:
        server_args += ["--max-concurrent", str(max_concurrent)]
    if pool is not None:
        server_args += ["--pool", str(pool)]
    server_args += ["--ours-client", ours_client, "--baseline-client", baseline_client]
    if profile:
        server_args += ["--profile", str(logdir / f"server-{kind}-{mode}-{inflight or total}.prof")]
    server = subprocess.Popen(
        _child_cmd(*server_args), cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT
    )
    if connections is None:
        connections = min(max(inflight, 1), 256) if mode == "steady" else 256
    conns = connections
    load_args = [
        "--role",
        "load",
        "--mode",
        mode,
        "--server-port",
        str(sport),
        "--trainer-port",
        str(tport),
        "--server-pid",
        str(server.pid),
        "--inflight",
        str(inflight),
        "--total",
        str(total),
        "--latency",
        str(latency),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--drain",
        str(drain),
        "--connections",
        str(conns),
        "--cpu",
        str(LOAD_CPU),
    ]
    load_log = logdir / f"load-{kind}-{mode}-{inflight or total}.log"
    load = await asyncio.create_subprocess_exec(
        *_child_cmd(*load_args),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=open(load_log, "wb"),  # noqa: SIM115 - the load process writes it until it ends
    )
    samples: list = []
    stop = asyncio.Event()
    prober = None
    out = b""
    try:
        await kit.wait_healthy(kit.HOST, sport, timeout_s=60)
        prober = asyncio.create_task(probe_health(sport, stop, samples))
        out, _ = await load.communicate()
    finally:
        stop.set()
        if prober is not None:
            await prober
        if load.returncode is None:
            load.kill()
        if b'"timed_out": true' in out:
            server.kill()  # thousands still queued: its graceful drain would only add minutes
        else:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server_log.close()
    line = next((x for x in out.decode().splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(
            f"load process for {kind}/{mode} printed no result; see {load_log}:\n"
            + load_log.read_text()[-2000:]
        )
    result = json.loads(line[len("RESULT ") :])
    t0, t1 = result["window"]
    window = [s for s in samples if t0 <= s[0] <= t1]
    lat = [s[1] for s in window]
    actives = [s[2] for s in samples if s[2] is not None]
    result.update(
        health_n=len(lat),
        health_p50_ms=1000 * kit.percentile(lat, 0.5),
        health_p99_ms=1000 * kit.percentile(lat, 0.99),
        health_max_ms=1000 * max(lat) if lat else float("nan"),
        health_errors=sum(1 for s in window if s[3] != 200),
        health_peak_active=max(actives) if actives else None,
    )
    return result


# ---- start-up time --------------------------------------------------------------------------

_STANDIN = (
    "import sys, uvicorn\n"
    "from sample_project.server import app\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_config=None,"
    " access_log=False, log_level='warning')\n"
)


def _osmosis_cli() -> Path | None:
    exe = Path(sys.executable).parent / "osmosis"
    if exe.exists() and (ROOT / "osmosis_workbench" / "cli.py").exists():
        return exe
    return None


async def time_to_health(cmd: list[str], port: int) -> float | None:
    """Seconds from spawning ``cmd`` to its first 200 on /health (None if it never answers)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < 20:
            if proc.poll() is not None:
                return None
            conn = kit.RawConnection(kit.HOST, port)
            try:
                status, _ = await conn.request("GET", "/health")
                if status == 200:
                    return time.perf_counter() - started
            except kit.HTTPError:
                pass
            finally:
                conn.close()
            await asyncio.sleep(0.005)
        return None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def measure_startup(reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    python_only = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python_only.append(time.perf_counter() - t)
    out["python_pass_s"] = kit.percentile(python_only, 0.5)
    cli = _osmosis_cli()
    if cli is not None:
        times = []
        for _ in range(reps):
            port = kit.free_port()
            times.append(
                await time_to_health(
                    [
                        str(cli),
                        "serve",
                        "-m",
                        "sample_project.server:agent_loop",
                        "--local",
                        "--host",
                        kit.HOST,
                        "--port",
                        str(port),
                    ],
                    port,
                )
            )
        if all(t is not None for t in times):
            out["osmosis_serve"] = times
            return out
    # No working `osmosis serve`: time a stand-in serving the same app instead.
    standin = []
    for _ in range(reps):
        port = kit.free_port()
        standin.append(await time_to_health([sys.executable, "-c", _STANDIN, str(port)], port))
    out["standin"] = standin
    return out


# ---- the table ------------------------------------------------------------------------------


def _f(value: Any, fmt: str = "{:.0f}") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return fmt.format(value)


def machine_line() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def _lost(r: dict | None) -> str:
    if not r:
        return "-"
    if r.get("timed_out"):
        return f"{r['lost']} unfinished"
    return str(r["lost"])


def print_tables(steady: dict, burst: dict | None, startup: dict | None, meta: dict) -> None:
    print()
    print(machine_line())
    ours_client = {
        "default": "create_app(agent) as shipped (its TrainerClient: aiohttp, "
        "TCPConnector(limit=M) for chat + a pool of max(8, M/8) for completions)",
        "httpx": "create_app(agent, client=TrainerClient(config, "
        "transport=httpx.AsyncHTTPTransport(limits=Limits(M, M))))",
    }[meta["ours_client"]]
    baseline_client = {
        "httpx": "one httpx.AsyncClient, Limits(M, M)",
        "aiohttp": "one aiohttp.ClientSession, TCPConnector(limit=M)",
    }[meta["baseline_client"]]
    print(
        f"server on core {SERVER_CPU}; fake trainer + load generator + /health prober on core "
        f"{LOAD_CPU}; {meta['warmup']:g} s warm-up + {meta['duration']:g} s measured per cell;"
        f" callback pool M={meta['pool']} for both servers; baseline: {baseline_client}; ours:"
        f" {ours_client}, max_concurrent={meta['max_concurrent']}"
    )
    print()
    head = (
        "| in flight | baseline r/s | ours r/s | ours/baseline | CPU per rollout b / o (ms) "
        "| /health p50 / p99 ms baseline | /health p50 / p99 ms ours | lost b / o "
        "| server CPU % b / o | load CPU % b / o | other processes' CPU % b / o |"
    )
    verdicts = []
    if steady:
        print(head)
        print("|" + "---:|" * (head.count("|") - 1))
    for n, pair in steady.items():
        b, o = pair.get("baseline"), pair.get("ours")
        ratio = None
        if b and o:
            ratio = (
                o["rollouts_per_s"] / b["rollouts_per_s"]
                if b["rollouts_per_s"]
                else (float("inf") if o["rollouts_per_s"] else None)
            )
        print(
            f"| {n} | {_f(b and b['rollouts_per_s'])} | {_f(o and o['rollouts_per_s'])} | "
            f"{_f(ratio and 100 * ratio, '{:.0f}%') if ratio != float('inf') else 'baseline 0'} | "
            f"{_f(b and b['server_cpu_ms_per_rollout'], '{:.2f}')} / "
            f"{_f(o and o['server_cpu_ms_per_rollout'], '{:.2f}')} | "
            f"{_f(b and b['health_p50_ms'], '{:.1f}')} / {_f(b and b['health_p99_ms'], '{:.1f}')}"
            f" | {_f(o and o['health_p50_ms'], '{:.1f}')} / "
            f"{_f(o and o['health_p99_ms'], '{:.1f}')} | "
            f"{_lost(b)} / {_lost(o)} | "
            f"{_f(b and b['server_cpu_pct'])} / {_f(o and o['server_cpu_pct'])} | "
            f"{_f(b and b['load_cpu_pct'])} / {_f(o and o['load_cpu_pct'])} | "
            f"{_f(b and b['other_cpu_pct'])} / {_f(o and o['other_cpu_pct'])} |"
        )
        if ratio is not None:
            ok = ratio >= 0.9 and o["health_p99_ms"] < 50 and o["lost"] == 0 and not o["timed_out"]
            share = (
                f"{100 * ratio:.0f}% of baseline"
                if ratio != float("inf")
                else "the baseline completed none"
            )
            verdicts.append(
                f"N={n}: {'PASS' if ok else 'FAIL'} ({share}, "
                f"/health p99 {o['health_p99_ms']:.1f} ms, lost {_lost(o)})"
            )
    if burst:
        print()
        print(
            f"{meta['total']:,} rollouts at once, trainer chat latency {meta['latency']:g} s "
            f"(completed callback: no latency), ours with create_app(agent, "
            f"max_concurrent={meta['total']}), "
            f"{'its own client (aiohttp)' if meta['ours_client'] == 'default' else 'httpx client'}"
            f", chat pool {meta['burst_pool']}, time limit "
            f"{meta['burst_timeout']:g} s:"
        )
        print(
            "| server | accepted | completed | lost | dup | wall s | all accepted after s | "
            "peak in flight | RSS before / peak / after MB | KiB per in-flight rollout | "
            "/health p50 / p99 / max ms |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for kind, r in burst.items():
            peak_in_flight = max(r["peak_in_flight"], r.get("health_peak_active") or 0)
            grown_kib = (r["rss_peak_mb"] - r["rss_before_mb"]) * 1024
            per = f"{grown_kib / max(1, peak_in_flight):.1f}"
            if peak_in_flight != meta["total"]:
                per += f" ({grown_kib / meta['total']:.1f} per {meta['total']:,})"
            lost = f"{r['lost']} unfinished at the limit" if r.get("timed_out") else str(r["lost"])
            print(
                f"| {kind} | {r['accepted']} | {r['completed']} | {lost} | "
                f"{r['duplicates']} | {r['wall_s']:.1f} | {_f(r['all_accepted_s'], '{:.1f}')} | "
                f"{peak_in_flight} | {r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / "
                f"{r['rss_after_mb']:.0f} | "
                f"{per} | {r['health_p50_ms']:.1f} / {r['health_p99_ms']:.1f} / "
                f"{r['health_max_ms']:.0f} |"
            )
            if kind == "ours":
                ok = r["completed"] == meta["total"] and r["lost"] == 0 and not r["timed_out"]
                verdicts.append(
                    f"{meta['total']:,} in flight, {meta['latency']:g} s trainer: "
                    f"{'PASS' if ok else 'FAIL'} ({r['completed']:,} of {meta['total']:,} "
                    f"completed in {r['wall_s']:.0f} s)"
                )
    if startup:
        print()
        print(
            f"start-up to first /health 200 (python -c pass alone: "
            f"{startup['python_pass_s']:.2f} s):"
        )
        print("| command | runs s | median s | max s |")
        print("|---|---|---:|---:|")
        rows = []
        if "osmosis_serve" in startup:
            rows.append(
                (
                    "osmosis serve -m sample_project.server:agent_loop --local",
                    startup["osmosis_serve"],
                )
            )
        if "standin" in startup:
            rows.append(
                ("stand-in: python -c uvicorn.run(sample_project.server.app)", startup["standin"])
            )
        for name, times in rows:
            ok = [t for t in times if t is not None]
            runs = ", ".join("-" if t is None else f"{t:.2f}" for t in times)
            print(
                f"| {name} | {runs} | {_f(kit.percentile(ok, 0.5), '{:.2f}')} | "
                f"{_f(max(ok) if ok else None, '{:.2f}')} |"
            )
        if "osmosis_serve" not in startup:
            print("(`osmosis serve` not available: the stand-in is the figure)")
        name, times = rows[0]
        ok = [t for t in times if t is not None]
        median = kit.percentile(ok, 0.5)
        verdicts.append(
            f"start-up ({'osmosis serve' if 'osmosis_serve' in startup else 'stand-in'}"
            f"): {'PASS' if ok and median < 1.5 else 'FAIL'} (median "
            f"{_f(median, '{:.2f}')} s)"
        )
    if verdicts:
        print()
        print("bar: " + "; ".join(verdicts))


async def orchestrate(args: argparse.Namespace) -> None:
    kit.pin_to_cpu(LOAD_CPU)
    kit.raise_fd_limit()
    warmup, duration = (1.0, 3.0) if args.quick else (args.warmup, args.duration)
    total = args.total if args.total else (2_000 if args.quick else 10_000)
    pool = args.pool or callback_pool(args.max_concurrent)
    kinds = args.kinds.split(",")
    ns = [int(n) for n in args.ns.split(",")] if args.ns else list(STEADY_NS)
    if args.skip_steady:
        ns = []
    logdir = Path(tempfile.mkdtemp(prefix="bench_server-"))
    burst_timeout = args.burst_timeout or (45.0 if args.quick else 100.0)
    meta = {
        "warmup": warmup,
        "duration": duration,
        "pool": pool,
        "total": total,
        "latency": args.latency,
        "max_concurrent": args.max_concurrent or 100,
        "ours_client": args.ours_client,
        "baseline_client": args.baseline_client,
        "burst_pool": args.burst_pool or args.pool or callback_pool(total),
        "burst_timeout": burst_timeout,
    }
    steady: dict[int, dict] = {}
    raw: dict[str, Any] = {"meta": meta, "steady": steady}
    for n in ns:
        steady[n] = {}
        for kind in kinds:
            r = await run_case(
                kind,
                mode="steady",
                inflight=n,
                warmup=warmup,
                duration=duration,
                max_concurrent=args.max_concurrent,
                pool=args.pool,
                ours_client=args.ours_client,
                baseline_client=args.baseline_client,
                logdir=logdir,
                profile=args.profile_servers,
            )
            steady[n][kind] = r
            print(
                f"  {kind:8s} N={n:5d}: {r['rollouts_per_s']:7.0f} rollouts/s, /health p99 "
                f"{r['health_p99_ms']:.1f} ms, lost {r['lost']}, server CPU "
                f"{r['server_cpu_pct']:.0f}%, load CPU {r['load_cpu_pct']:.0f}%",
                file=sys.stderr,
                flush=True,
            )
    burst = None
    if not args.skip_burst:
        burst = {}
        burst_kinds = kinds if args.burst_baseline else [k for k in kinds if k == "ours"]
        for kind in burst_kinds:
            r = await run_case(
                kind,
                mode="burst",
                total=total,
                latency=args.latency,
                drain=burst_timeout,
                max_concurrent=total,
                pool=args.burst_pool or args.pool,
                ours_client=args.ours_client,
                baseline_client=args.baseline_client,
                logdir=logdir,
                profile=args.profile_servers,
            )
            burst[kind] = r
            print(
                f"  {kind:8s} burst {total}: completed {r['completed']}/{r['accepted']}, "
                f"wall {r['wall_s']:.1f} s, RSS {r['rss_before_mb']:.0f} -> "
                f"{r['rss_peak_mb']:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
        raw["burst"] = burst
    startup = None
    if not args.skip_startup:
        startup = await measure_startup(args.startup_reps)
        raw["startup"] = startup
    print_tables(steady, burst, startup, meta)
    (logdir / "results.json").write_text(json.dumps(raw, indent=1))
    print(f"\n(raw figures and process logs: {logdir})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, 2,000-rollout burst")
    parser.add_argument(
        "--role", choices=["main", "server", "load"], default="main", help=argparse.SUPPRESS
    )
    parser.add_argument("--kinds", default="baseline,ours", help="servers to run")
    parser.add_argument("--ns", default="", help="rollouts in flight, comma-separated")
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument(
        "--pool",
        type=int,
        default=None,
        help="callback pool M for both servers (default: create_app's, max(100, max_concurrent))",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="ours: create_app max_concurrent for the steady runs",
    )
    parser.add_argument("--total", type=int, default=0, help="burst size (default 10,000)")
    parser.add_argument("--latency", type=float, default=1.0, help="burst: trainer chat latency")
    parser.add_argument(
        "--burst-timeout",
        type=float,
        default=0.0,
        help="burst time limit in s (default 100; --quick 45)",
    )
    parser.add_argument(
        "--burst-baseline", action="store_true", help="also run the burst against the baseline"
    )
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument(
        "--burst-pool",
        type=int,
        default=None,
        help="callback pool size for the burst run (default: --pool)",
    )
    parser.add_argument(
        "--ours-client",
        choices=["default", "httpx"],
        default="default",
        help="ours: create_app's own client as shipped (aiohttp), or TrainerClient over httpx",
    )
    parser.add_argument(
        "--baseline-client",
        choices=["httpx", "aiohttp"],
        default="httpx",
        help="baseline's shared client (the bar's baseline is httpx; aiohttp: same client as ours)",
    )
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument(
        "--profile-servers",
        action="store_true",
        help="run each server under cProfile (slower); .prof files go to the log directory",
    )
    parser.add_argument("--profile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--startup-reps", type=int, default=5, help="start-up runs (median)")
    parser.add_argument("--skip-steady", action="store_true")
    # child roles
    parser.add_argument("--kind", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["steady", "burst"], help=argparse.SUPPRESS)
    parser.add_argument("--server-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trainer-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inflight", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--drain", type=float, default=20.0, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        server_main(args)
    elif args.role == "load":
        load_main(args)
    else:
        kit.install_uvloop()
        asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
