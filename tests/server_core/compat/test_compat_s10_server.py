"""SDK-0.2-API.md §10: create_app and its HTTP surface, serve_agent_loop, validate_and_report,
the constants and the API-key helpers.

Served rollouts call back a trainer on a real loopback socket (``lb_trainer``); the rollout
server is driven through ``fastapi.testclient.TestClient`` as 0.2 users' tests do.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from typing import Any

import pytest
from compat_support import init_body, new_id, settle, walk_nulls
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server_core import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    AgentLoopValidationError,
    LLMClientProtocol,
    OpenAIFunctionParametersSchema,
    OpenAIFunctionPropertySchema,
    OpenAIFunctionSchema,
    OpenAIFunctionToolSchema,
    RolloutAgentLoop,
    RolloutContext,
    RolloutResult,
    ServeError,
    ValidationResult,
    create_app,
    generate_api_key,
    serve_agent_loop,
    validate_and_report,
    validate_api_key,
)

MODEL_TOOLS = [
    OpenAIFunctionToolSchema(
        type="function",
        function=OpenAIFunctionSchema(
            name="add",
            description="Add two numbers",
            parameters=OpenAIFunctionParametersSchema(
                type="object",
                properties={
                    "a": OpenAIFunctionPropertySchema(type="number", description="First"),
                    "b": OpenAIFunctionPropertySchema(type="number"),
                },
                required=["a", "b"],
            ),
        ),
    )
]


class CompatAgent(RolloutAgentLoop):
    """Counts get_tools and runs; ``run_fn(ctx)`` replaces the default one-chat run."""

    name = "compat-agent"

    def __init__(self, tools=None, run_fn=None, get_tools_fn=None):
        self.tools = tools if tools is not None else []
        self.run_fn = run_fn
        self.get_tools_fn = get_tools_fn
        self.get_tools_calls = 0
        self.runs: list[str] = []
        self.contexts: list[RolloutContext] = []
        self.returned_tools: list = []

    def get_tools(self, request):
        self.get_tools_calls += 1
        tools = self.get_tools_fn(request) if self.get_tools_fn else self.tools
        self.returned_tools.append(tools)
        return tools

    async def run(self, ctx: RolloutContext) -> RolloutResult:
        self.runs.append(ctx.request.rollout_id)
        self.contexts.append(ctx)
        if self.run_fn is not None:
            return await self.run_fn(ctx)
        messages = list(ctx.request.messages)
        result = await ctx.chat(messages)
        messages.append(result.message)
        return ctx.complete(messages, reward=1.0)


# ---- §10.1 create_app -----------------------------------------------------------------------

CREATE_APP_PARAMS = [
    "agent_loop",
    "max_concurrent",
    "record_ttl_seconds",
    "settings",
    "credentials",
    "server_host",
    "server_port",
    "api_key",
    "debug_dir",
    "on_startup",
    "on_shutdown",
]


def test_create_app_signature():
    params = list(inspect.signature(create_app).parameters.values())
    assert [p.name for p in params[: len(CREATE_APP_PARAMS)]] == CREATE_APP_PARAMS
    for p in params[: len(CREATE_APP_PARAMS)]:
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, p.name
    assert params[0].default is inspect.Parameter.empty
    assert all(p.default is None for p in params[1 : len(CREATE_APP_PARAMS)])


def test_create_app_returns_a_titled_fastapi_app():
    app = create_app(CompatAgent())
    assert isinstance(app, FastAPI)
    assert app.title == "Osmosis RolloutServer (compat-agent)"


def test_create_app_accepts_every_02_keyword_positionally(tmp_path):
    async def hook():
        pass

    app = create_app(
        CompatAgent(), 5, 120.0, None, None, None, None, "k", str(tmp_path), hook, hook
    )
    assert isinstance(app, FastAPI)


def test_health():
    with TestClient(create_app(CompatAgent())) as client:
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["agent_loop"] == "compat-agent"
    assert body["active_rollouts"] == 0
    assert body["completed_rollouts"] == 0


def test_platform_health_is_404_without_an_api_key():
    with TestClient(create_app(CompatAgent())) as client:
        response = client.get("/platform/health")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found"}


def test_platform_health_with_an_api_key():
    with TestClient(create_app(CompatAgent(), api_key="sekret")) as client:
        missing = client.get("/platform/health")
        wrong = client.get("/platform/health", headers={"Authorization": "Bearer nope"})
        right = client.get("/platform/health", headers={"Authorization": "Bearer sekret"})
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Invalid or missing API key"}
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert {"status", "agent_loop", "active_rollouts", "completed_rollouts"} <= set(right.json())


def test_openapi_and_docs_are_the_fastapi_defaults():
    with TestClient(create_app(CompatAgent())) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


# ---- §10.2 init --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Bearer sekret"}, 202),
        ({"Authorization": "bearer sekret"}, 202),
        ({"Authorization": "BEARER sekret"}, 202),
        ({"Authorization": "sekret"}, 202),
    ],
)
def test_init_auth(lb_trainer, headers, status):
    agent = CompatAgent()
    with TestClient(create_app(agent, api_key="sekret")) as client:
        rid = new_id("auth")
        response = client.post(
            "/v1/rollout/init", json=init_body(lb_trainer.url, rid), headers=headers
        )
        assert response.status_code == status, response.text
        if status == 401:
            assert response.json() == {"detail": "Invalid or missing API key"}
        else:
            lb_trainer.wait_for_completion(rid)


def test_init_auth_comes_before_body_validation():
    with TestClient(create_app(CompatAgent(), api_key="sekret")) as client:
        response = client.post("/v1/rollout/init", json={"bad": "body"})
    assert response.status_code == 401


def test_init_validation_error_is_fastapis_422():
    with TestClient(create_app(CompatAgent())) as client:
        response = client.post(
            "/v1/rollout/init",
            json={"server_url": "http://t", "messages": [], "completion_params": {}},
        )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    missing = [d for d in detail if d["loc"] == ["body", "rollout_id"]]
    assert missing and missing[0]["type"] == "missing"
    assert {"type", "loc", "msg", "input"} <= set(missing[0])


def test_init_rejects_a_bad_server_url_with_422():
    with TestClient(create_app(CompatAgent())) as client:
        response = client.post("/v1/rollout/init", json=init_body("ftp://trainer"))
    assert response.status_code == 422
    assert "server_url must use http or https scheme" in response.text


def test_init_answers_202_with_rollout_id_and_tools_without_nulls(lb_trainer):
    agent = CompatAgent(tools=MODEL_TOOLS)
    with TestClient(create_app(agent)) as client:
        rid = new_id("init")
        response = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        assert response.status_code == 202
        body = response.json()
        lb_trainer.wait_for_completion(rid)
    assert body["rollout_id"] == rid
    (tool,) = body["tools"]
    assert tool["type"] == "function"
    fn = tool["function"]
    assert fn["name"] == "add" and fn["description"] == "Add two numbers"
    assert fn["parameters"]["type"] == "object"
    assert fn["parameters"]["required"] == ["a", "b"]
    assert fn["parameters"]["properties"]["a"] == {"type": "number", "description": "First"}
    assert fn["parameters"]["properties"]["b"] == {"type": "number"}
    assert walk_nulls(body) == [], "§15.3: no null-valued keys in the tools sent at init"


def test_served_rollout_completes_with_the_agents_result(lb_trainer):
    agent = CompatAgent()
    with TestClient(create_app(agent)) as client:
        rid = new_id("served")
        body = init_body(lb_trainer.url, rid, api_key="cb-key")
        assert client.post("/v1/rollout/init", json=body).status_code == 202
        completion = lb_trainer.wait_for_completion(rid)
    assert agent.runs == [rid]
    assert completion["status"] == "COMPLETED"
    assert completion["finish_reason"] == "stop"
    assert completion["reward"] == 1.0
    assert completion["final_messages"] == [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "done"},
    ]
    metrics = completion["metrics"]
    assert metrics["num_llm_calls"] == 1
    assert metrics["prompt_tokens"] == 10 and metrics["response_tokens"] == 5
    assert metrics["total_latency_ms"] > 0
    # Both callbacks carry the request's api_key as a bearer token.
    (chat,) = lb_trainer.chats_for(rid)
    index = lb_trainer.chat_requests.index(chat)
    assert lb_trainer.chat_headers[index].get("authorization") == "Bearer cb-key"
    assert lb_trainer.completion_headers[-1].get("authorization") == "Bearer cb-key"


def test_context_under_the_server(lb_trainer):
    """§2.2: ctx.tools is the very list get_tools returned, models stay models."""
    agent = CompatAgent(tools=MODEL_TOOLS)
    with TestClient(create_app(agent)) as client:
        rid = new_id("ctx")
        req = init_body(lb_trainer.url, rid, metadata={"ground_truth": "4"}, max_turns=3)
        client.post("/v1/rollout/init", json=req)
        lb_trainer.wait_for_completion(rid)
    (ctx,) = agent.contexts
    assert isinstance(ctx, RolloutContext)
    assert isinstance(ctx.llm, LLMClientProtocol)
    assert ctx.tools is agent.returned_tools[0]
    assert isinstance(ctx.tools[0], OpenAIFunctionToolSchema)
    assert ctx.request.rollout_id == rid
    assert ctx.request.metadata.get("ground_truth") == "4"
    assert ctx.request.max_turns == 3
    assert ctx.debug_enabled is False


def test_dict_tools_stay_dicts_in_ctx(lb_trainer):
    tools = [{"type": "function", "function": {"name": "f", "description": "d"}}]
    agent = CompatAgent(tools=tools)
    with TestClient(create_app(agent)) as client:
        rid = new_id("dicttools")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        lb_trainer.wait_for_completion(rid)
    assert agent.contexts[0].tools is tools
    assert agent.contexts[0].tools[0] is tools[0]


def test_repeated_init_is_idempotent(lb_trainer):
    agent = CompatAgent(tools=MODEL_TOOLS)
    with TestClient(create_app(agent)) as client:
        rid = new_id("idem")
        first = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        second = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        lb_trainer.wait_for_completion(rid)
        third = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        settle()
    assert first.status_code == second.status_code == third.status_code == 202
    assert first.json() == second.json() == third.json()
    assert agent.get_tools_calls == 1
    assert agent.runs == [rid]
    assert len(lb_trainer.completions_for(rid)) == 1


def test_same_idempotency_key_and_rollout_id_is_idempotent(lb_trainer):
    agent = CompatAgent()
    with TestClient(create_app(agent)) as client:
        rid = new_id("idem-key")
        body = init_body(lb_trainer.url, rid, idempotency_key="key-1")
        first = client.post("/v1/rollout/init", json=body)
        second = client.post("/v1/rollout/init", json=body)
        lb_trainer.wait_for_completion(rid)
    assert first.status_code == second.status_code == 202
    assert agent.runs == [rid] and agent.get_tools_calls == 1


def test_get_tools_failure_is_a_json_error_and_starts_nothing(lb_trainer):
    """§10.2 with §15.3: a non-2xx JSON error, no rollout; a retry runs get_tools again."""
    calls = []

    def failing(request):
        calls.append(request.rollout_id)
        raise RuntimeError("tools unavailable")

    agent = CompatAgent(get_tools_fn=failing)
    with TestClient(create_app(agent), raise_server_exceptions=False) as client:
        rid = new_id("tools-fail")
        first = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        second = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        settle()
    assert first.status_code >= 400 and second.status_code >= 400
    assert first.headers["content-type"].startswith("application/json")
    first.json()
    assert calls == [rid, rid]
    assert agent.runs == []
    assert lb_trainer.chats_for(rid) == [] and lb_trainer.attempts_for(rid) == []


def test_run_raising_sends_an_error_completion(lb_trainer):
    async def run(ctx):
        raise ValueError("agent broke")

    agent = CompatAgent(run_fn=run)
    with TestClient(create_app(agent)) as client:
        rid = new_id("raise")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        completion = lb_trainer.wait_for_completion(rid)
        settle()
    assert completion["status"] == "ERROR"
    assert completion["finish_reason"] == "error"
    assert completion["error_message"] == "agent broke"
    assert "reward" not in completion
    assert len(lb_trainer.attempts_for(rid)) == 1


def test_run_returning_a_non_result_sends_an_error_completion(lb_trainer):
    async def run(ctx):
        return {"status": "COMPLETED"}

    with TestClient(create_app(CompatAgent(run_fn=run))) as client:
        rid = new_id("dict")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        completion = lb_trainer.wait_for_completion(rid)
    assert completion["status"] == "ERROR"
    assert completion["finish_reason"] == "error"
    assert completion["error_message"] == "'dict' object has no attribute 'status'"


def test_run_returning_a_bad_status_sends_an_error_completion(lb_trainer):
    async def run(ctx):
        return RolloutResult("DONE", [], "stop")

    with TestClient(create_app(CompatAgent(run_fn=run))) as client:
        rid = new_id("done")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        completion = lb_trainer.wait_for_completion(rid)
    assert completion["status"] == "ERROR"
    assert completion["error_message"] == "'DONE' is not a valid RolloutStatus"


def test_ctx_error_result_is_sent_as_an_error(lb_trainer):
    async def run(ctx):
        return ctx.error("gave up")

    with TestClient(create_app(CompatAgent(run_fn=run))) as client:
        rid = new_id("ctxerr")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        completion = lb_trainer.wait_for_completion(rid)
    assert completion["status"] == "ERROR"
    assert completion["finish_reason"] == "error"
    assert completion["error_message"] == "gave up"


def counting_run(seconds: float) -> tuple[Any, dict[str, int]]:
    """An agent ``run`` that takes ``seconds``, and the count of runs at once (its ``peak``)."""
    lock = threading.Lock()
    state = {"active": 0, "peak": 0}

    async def run(ctx):
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        await asyncio.sleep(seconds)
        with lock:
            state["active"] -= 1
        return ctx.complete([])

    return run, state


def test_max_concurrent_bounds_running_rollouts(lb_trainer):
    run, state = counting_run(0.15)
    with TestClient(create_app(CompatAgent(run_fn=run), max_concurrent=1)) as client:
        ids = [new_id("conc"), new_id("conc")]
        for rid in ids:
            assert (
                client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid)).status_code
                == 202
            )
        completions = [lb_trainer.wait_for_completion(rid) for rid in ids]
    assert state["peak"] == 1
    # §10.3: the start time is taken before waiting on the semaphore, so the queued rollout's
    # total latency includes its wait (~0.15 s) plus its own run (~0.15 s).
    totals = sorted(c["metrics"]["total_latency_ms"] for c in completions)
    assert totals[0] >= 140
    assert totals[1] >= 250


def test_settings_server_part_bounds_running_rollouts(lb_trainer):
    """§10.1: ``settings.server.max_concurrent_rollouts`` is the fallback of max_concurrent."""
    from server_core import RolloutServerSettings, RolloutSettings

    run, state = counting_run(0.1)
    settings = RolloutSettings(server=RolloutServerSettings(max_concurrent_rollouts=1))
    app = create_app(CompatAgent(run_fn=run), settings=settings)
    with TestClient(app) as client:
        ids = [new_id("sconc"), new_id("sconc")]
        for rid in ids:
            response = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
            assert response.status_code == 202
        for rid in ids:
            lb_trainer.wait_for_completion(rid)
    assert state["peak"] == 1


def test_on_startup_and_on_shutdown_run_in_the_lifespan():
    events = []

    async def on_startup():
        events.append("startup")

    async def on_shutdown():
        events.append("shutdown")

    app = create_app(CompatAgent(), on_startup=on_startup, on_shutdown=on_shutdown)
    assert events == []
    with TestClient(app) as client:
        assert events == ["startup"]
        client.get("/health")
    assert events == ["startup", "shutdown"]


def test_without_with_the_hooks_do_not_run_but_the_rollout_does(lb_trainer):
    events = []

    async def hook():
        events.append("hook")

    agent = CompatAgent()
    client = TestClient(create_app(agent, on_startup=hook, on_shutdown=hook))
    rid = new_id("nowith")
    response = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
    assert response.status_code == 202
    completion = lb_trainer.wait_for_completion(rid, timeout=3)
    assert completion["status"] == "COMPLETED"
    assert events == []


def test_debug_dir_gets_the_rollouts_events(lb_trainer, tmp_path):
    debug_dir = tmp_path / "debug"

    async def run(ctx):
        assert ctx.debug_enabled is True
        ctx.log_event("pre_llm", turn=0, num_messages=len(ctx.request.messages))
        result = await ctx.chat(list(ctx.request.messages))
        ctx.log_event("llm_response", turn=0, finish_reason=result.finish_reason)
        return ctx.complete([*ctx.request.messages, result.message])

    with TestClient(create_app(CompatAgent(run_fn=run), debug_dir=str(debug_dir))) as client:
        rid = new_id("debug")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        completion = lb_trainer.wait_for_completion(rid)
    assert completion["status"] == "COMPLETED", completion
    files = list(debug_dir.rglob("*.jsonl"))
    assert len(files) == 1
    import json

    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [line["event"] for line in lines] == ["pre_llm", "llm_response"]
    assert all(line["rollout_id"] == rid for line in lines)
    assert lines[0]["num_messages"] == 1
    assert lines[1]["finish_reason"] == "stop"


def test_debug_dir_is_created_at_the_first_event_only(tmp_path):
    debug_dir = tmp_path / "not-yet"
    with TestClient(create_app(CompatAgent(), debug_dir=str(debug_dir))) as client:
        client.get("/health")
    assert not debug_dir.exists()


# ---- §10.4 serve_agent_loop -----------------------------------------------------------------


def test_serve_agent_loop_signature():
    params = list(inspect.signature(serve_agent_loop).parameters.values())
    assert params[0].name == "agent_loop"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    expected = {
        "host": "0.0.0.0",
        "port": 9000,
        "validate": True,
        "log_level": "info",
        "reload": False,
        "settings": None,
        "skip_register": False,
        "api_key": None,
        "local_debug": False,
        "debug_dir": None,
    }
    rest = {p.name: p for p in params[1:]}
    for name, default in expected.items():
        assert name in rest, name
        assert rest[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert rest[name].default == default, name
    assert [p.name for p in params[1:11]] == list(expected)


@pytest.fixture
def no_uvicorn(monkeypatch):
    """Make any attempt to really serve fail at once (a broken check must not hang a test)."""
    import uvicorn

    class Served(Exception):
        pass

    def refuse(*args, **kwargs):
        raise Served("serve_agent_loop reached uvicorn")

    monkeypatch.setattr(uvicorn, "run", refuse)
    monkeypatch.setattr(uvicorn.Server, "run", refuse)
    monkeypatch.setattr(uvicorn.Server, "serve", refuse)
    return Served


def test_serve_positional_host_is_a_type_error(no_uvicorn):
    with pytest.raises(TypeError):
        serve_agent_loop(CompatAgent(), "127.0.0.1")  # type: ignore[misc]


def test_serve_local_debug_with_api_key_is_a_serve_error(no_uvicorn):
    with pytest.raises(ServeError) as info:
        serve_agent_loop(CompatAgent(), local_debug=True, api_key="k")
    assert str(info.value) == (
        "local_debug=True disables API key authentication; do not provide api_key in local "
        "debug mode."
    )


def test_serve_without_login_is_a_serve_error(no_uvicorn, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    with pytest.raises(ServeError) as info:
        serve_agent_loop(CompatAgent(), port=0)
    assert str(info.value) == (
        "Not logged in. Please run 'osmosis login' first, or use skip_register=True for local "
        "testing."
    )


def test_serve_validates_before_serving(no_uvicorn):
    class SyncRun(RolloutAgentLoop):
        name = "sync-run"

        def get_tools(self, request):
            return []

        def run(self, ctx):  # not async: RUN_NOT_ASYNC
            return ctx.complete([])

    with pytest.raises(AgentLoopValidationError, match=r"1 error\(s\)"):
        serve_agent_loop(SyncRun(), skip_register=True, port=0)


# ---- §10.5 validate_and_report, constants ---------------------------------------------------


def test_validate_and_report_valid(capsys):
    result = validate_and_report(CompatAgent(tools=MODEL_TOOLS))
    out, _err = capsys.readouterr()
    assert isinstance(result, ValidationResult) and result.valid
    assert "Agent loop 'compat-agent' validated successfully." in out
    assert "  - Tools: 1" in out


def test_validate_and_report_warnings(capsys):
    tools = [{"type": "function", "function": {"name": "f"}}]  # no description: a warning
    result = validate_and_report(CompatAgent(tools=tools), verbose=True)
    out, _ = capsys.readouterr()
    assert result.valid and len(result.warnings) == 1
    assert "  - Warnings: 1" in out
    assert "MISSING_FUNCTION_DESCRIPTION" in out


def test_validate_and_report_invalid_goes_to_stderr_and_never_raises(capsys):
    agent = CompatAgent(tools=[{"type": "function"}])
    result = validate_and_report(agent)
    out, err = capsys.readouterr()
    assert result.valid is False
    assert "Agent loop validation failed with 1 error(s):" in err
    assert re.search(r"^  - \[MISSING_FUNCTION\]", err, re.MULTILINE)
    assert "validated successfully" not in out


def test_validate_and_report_verbose_is_keyword_only():
    param = inspect.signature(validate_and_report).parameters["verbose"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is False


def test_serve_error_is_a_plain_exception():
    assert issubclass(ServeError, Exception)
    assert str(ServeError("x")) == "x"


def test_default_host_and_port():
    assert DEFAULT_HOST == "0.0.0.0"
    assert DEFAULT_PORT == 9000


# ---- §10.6 API-key helpers ------------------------------------------------------------------


def test_generate_api_key():
    key = generate_api_key()
    assert key.startswith("osm_rollout_")
    assert len(key) == 55
    assert re.fullmatch(r"osm_rollout_[A-Za-z0-9_-]{43}", key)
    assert generate_api_key() != key


def test_validate_api_key():
    assert validate_api_key(None, "k") is False
    assert validate_api_key("k", "k") is True
    assert validate_api_key("x", "k") is False
    assert validate_api_key("", "k") is False
    with pytest.raises(TypeError):
        validate_api_key("clé", "cle")


def test_validate_api_key_signature():
    assert list(inspect.signature(validate_api_key).parameters) == ["provided", "expected"]
