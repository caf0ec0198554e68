"""PROTOCOL.md sections 2-3: POST /v1/rollout/init (validation, auth, tools, idempotency, queue)."""

from __future__ import annotations

import asyncio
import copy
import json
import time

import pytest

from server_core import ServerLimits, generate_api_key

KEY = "osm_rollout_test-key"


def _has_null(value) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def test_create_app_returns_a_fastapi_app_for_an_agent_instance(make_agent):
    from fastapi import FastAPI

    from server_core import create_app

    app = create_app(make_agent(name="named"))
    assert isinstance(app, FastAPI)
    assert app.state.agent_loop.name == "named"
    with pytest.raises(TypeError, match="RolloutAgentLoop instance"):
        create_app(type(make_agent()))  # the class, not an instance


# ---- accepted rollouts and tools --------------------------------------------------------------


async def test_init_answers_202_then_runs_the_agent_and_completes(serve, make_agent, trainer):
    agent = make_agent()
    server = serve(agent)
    response = await server.init("r-1")
    assert response.status_code == 202
    assert response.json() == {"rollout_id": "r-1", "tools": []}
    completion = await trainer.wait_for_completion("r-1")
    assert completion["status"] == "COMPLETED"
    assert completion["reward"] == 1.0
    assert agent.runs == 1


RICH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the corpus",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "default": "cats"},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                "page": {"type": "integer", "enum": [1, 2, 3], "default": 1},
                "ratio": {"type": "number", "enum": [0.5, 1.5]},
                "filter": {
                    "type": "object",
                    "properties": {
                        "since": {"type": "string", "format": "date"},
                        "nested": {
                            "type": "object",
                            "properties": {"deep": {"type": "boolean", "default": False}},
                            "required": ["deep"],
                        },
                    },
                    "additionalProperties": False,
                },
                "target": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
                "choice": {"oneOf": [{"const": "x"}, {"const": 3}]},
            },
            "required": ["query"],
            "$defs": {"Unused": {"type": "string"}},
        },
    },
}


async def test_tools_are_passed_through_losslessly(serve, make_agent):
    server = serve(make_agent(tools=[copy.deepcopy(RICH_TOOL)]))
    response = await server.init()
    assert response.status_code == 202
    assert response.json()["tools"] == [RICH_TOOL]


async def test_tools_lose_null_valued_keys_and_gain_a_type(serve, make_agent):
    tool = {
        "function": {
            "name": "f",
            "description": None,
            "parameters": {
                "type": "object",
                "properties": {"x": {"type": "string", "enum": None, "default": None}},
            },
        }
    }
    server = serve(make_agent(tools=[tool]))
    response = await server.init()
    assert response.status_code == 202
    tools = response.json()["tools"]
    assert not _has_null(tools)
    assert b"null" not in response.content
    assert tools == [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
            },
        }
    ]


def _raise(request):
    raise RuntimeError("tool registry is down")


async def _async_raise(request):
    raise KeyError("no tools for this task")


def _slow(request):
    time.sleep(0.3)
    return []


@pytest.mark.parametrize(
    ("get_tools", "fragment"),
    [
        (_raise, "RuntimeError"),
        (_async_raise, "KeyError"),
        (lambda request: [{"type": "function", "function": {"description": "no name"}}], "name"),
        (lambda request: [{"type": "function"}], "function"),
        (lambda request: "search", "list"),
        (lambda request: [{"type": "retrieval", "function": {"name": "x"}}], "type"),
        (lambda request: [{"function": {"name": "x", "parameters": "{}"}}], "parameters"),
        (lambda request: [{"function": {"name": "x", "parameters": {"a": float("nan")}}}], "JSON"),
        (_slow, "did not return"),
    ],
    ids=[
        "raises",
        "async-raises",
        "no-name",
        "no-function",
        "not-a-list",
        "wrong-type",
        "parameters-not-object",
        "not-json",
        "timeout",
    ],
)
async def test_failing_get_tools_answers_500_json_and_starts_nothing(
    serve, make_agent, trainer, get_tools, fragment
):
    agent = make_agent(get_tools=get_tools)
    server = serve(agent, limits=ServerLimits(get_tools_timeout_s=0.1))
    response = await server.init("r-bad")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert fragment in detail
    assert "no rollout was started" in detail
    assert (await server.status("r-bad")).status_code == 404
    health = (await server.http.get("/health")).json()
    assert health["active_rollouts"] == 0
    await asyncio.sleep(0.01)  # give a wrongly started rollout the chance to show itself
    assert agent.runs == 0
    assert trainer.chat_requests == [] and trainer.completion_attempts == []


async def test_get_tools_failure_on_a_later_init_does_not_poison_the_server(serve, make_agent):
    calls = []

    def flaky(request):
        calls.append(request.rollout_id)
        if request.rollout_id == "bad":
            raise ValueError("bad task")
        return [{"type": "function", "function": {"name": "ok"}}]

    server = serve(make_agent(get_tools=flaky))
    assert (await server.init("good-1")).status_code == 202
    bad = await server.init("bad")
    assert bad.status_code == 500
    # A ValueError raised by get_tools itself is not reported as "invalid tools".
    assert "raised ValueError: bad task" in bad.json()["detail"]
    assert (await server.init("good-2")).json()["tools"][0]["function"]["name"] == "ok"


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rollout_id",
    ["", " ", "\t\n  ", "x" * 257],
    ids=["empty", "space", "whitespace", "257-chars"],
)
async def test_bad_rollout_ids_are_422(serve, make_agent, rollout_id):
    agent = make_agent()
    server = serve(agent)
    response = await server.init(rollout_id)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors and all(e["loc"][:2] == ["body", "rollout_id"] for e in errors)
    assert agent.runs == 0


@pytest.mark.parametrize(
    "rollout_id",
    ["x" * 256, "../../etc/passwd", "a/b", "a b?c#d%2F", "日本語-ρ-🎲", " padded ", "\x00nul"],
)
async def test_any_characters_are_accepted_in_rollout_ids(serve, make_agent, trainer, rollout_id):
    server = serve(make_agent())
    response = await server.init(rollout_id)
    assert response.status_code == 202
    assert response.json()["rollout_id"] == rollout_id
    completion = await trainer.wait_for_completion(rollout_id)
    assert completion["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "server_url",
    ["trainer.test", "ftp://trainer.test", "http://", "https:///path", "not a url", "", "//x.y"],
)
async def test_server_url_must_be_http_with_a_host(serve, make_agent, server_url):
    server = serve(make_agent())
    response = await server.init(server_url=server_url)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "server_url"]


@pytest.mark.parametrize("server_url", ["http://trainer.test/", "https://a.example:8443/x/y/"])
async def test_server_url_accepts_http_and_https_with_path(serve, make_agent, server_url):
    server = serve(make_agent(run=_complete_now))
    assert (await server.init(server_url=server_url)).status_code == 202


async def _complete_now(ctx):
    return ctx.complete(list(ctx.request.messages))


@pytest.mark.parametrize(
    "field",
    ["rollout_id", "server_url", "messages", "completion_params"],
)
async def test_required_fields_are_required(serve, make_agent, make_body, field):
    server = serve(make_agent())
    body = make_body()
    del body[field]
    response = await server.http.post("/v1/rollout/init", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


async def test_optional_fields_take_their_defaults(serve, make_agent, trainer):
    seen = {}

    async def run(ctx):
        request = ctx.request
        seen.update(
            max_turns=request.max_turns,
            max_tokens_total=request.max_tokens_total,
            metadata=request.metadata,
            api_key=request.api_key,
            tool_server_url=request.tool_server_url,
            idempotency_key=request.idempotency_key,
        )
        return ctx.complete([])

    server = serve(make_agent(run=run))
    rollout_id = await server.start()
    await trainer.wait_for_completion(rollout_id)
    assert seen == {
        "max_turns": 10,
        "max_tokens_total": 8192,
        "metadata": {},
        "api_key": None,
        "tool_server_url": None,
        "idempotency_key": None,
    }


async def test_unknown_fields_are_ignored(serve, make_agent, trainer):
    server = serve(make_agent())
    response = await server.init("r-extra", future_field={"x": 1}, another=[1, 2], n=None)
    assert response.status_code == 202
    await trainer.wait_for_completion("r-extra")


async def test_metadata_over_one_mib_is_422(serve, make_agent):
    agent = make_agent()
    server = serve(agent)
    big = {"ground_truth": "x" * (1024 * 1024)}
    response = await server.init(metadata=big)
    assert response.status_code == 422
    # A model-level check, as in 0.2: the error names the limit, not a field location.
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert (
        "metadata size exceeds maximum allowed size of 1MB" in response.json()["detail"][0]["msg"]
    )
    # Just under the limit is fine.
    ok = await server.init(metadata={"ground_truth": "x" * (1024 * 1024 - 100)})
    assert ok.status_code == 202


async def test_422_does_not_echo_the_request(serve, make_agent):
    server = serve(make_agent())
    response = await server.init("", api_key="secret-api-key-123", metadata={"s": "hush"})
    assert response.status_code == 422
    assert "secret-api-key-123" not in response.text
    assert response.json()["detail"][0]["input"] == ""  # the bad field itself is quoted
    missing = await server.http.post(
        "/v1/rollout/init", json={"api_key": "secret-api-key-123", "metadata": {"s": "hush"}}
    )
    assert missing.status_code == 422
    assert "secret-api-key-123" not in missing.text
    assert missing.json()["detail"][0]["input"]["api_key"] == "***"


async def test_invalid_json_is_422_json_invalid(serve, make_agent):
    server = serve(make_agent())
    response = await server.http.post(
        "/v1/rollout/init", content=b'{"rollout_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


# ---- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER {KEY}", f"BeArEr   {KEY}  ", KEY],
    ids=["Bearer", "lower", "upper", "mixed-spaces", "bare-key"],
)
async def test_init_accepts_the_key(serve, make_agent, header):
    server = serve(make_agent(), api_key=KEY)
    response = await server.init(headers={"Authorization": header})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"X-Api-Key": KEY},
    ],
    ids=["none", "empty", "scheme-only", "wrong", "basic", "longer", "shorter", "other-header"],
)
async def test_init_refuses_a_missing_or_wrong_key_with_the_exact_401(
    serve, make_agent, make_body, headers
):
    agent = make_agent()
    server = serve(agent, api_key=KEY)
    response = await server.http.post("/v1/rollout/init", json=make_body(), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or missing API key"}
    assert agent.get_tools_calls == 0 and agent.runs == 0


async def test_auth_is_checked_before_validation(serve, make_agent):
    server = serve(make_agent(), api_key=KEY)
    response = await server.http.post("/v1/rollout/init", content=b"not json")
    assert response.status_code == 401


async def test_non_ascii_key_does_not_match_its_replacement_characters(serve, make_agent):
    # A key with characters outside latin-1 must not be matched by '?' placeholders.
    server = serve(make_agent(), api_key="k€y")
    response = await server.init(headers={"Authorization": "Bearer k?y"})
    assert response.status_code == 401


async def test_status_and_cancel_require_the_key(serve, make_agent):
    server = serve(make_agent(), api_key=KEY)
    good = {"Authorization": f"Bearer {KEY}"}
    rollout_id = (await server.init(headers=good)).json()["rollout_id"]
    for response in (
        await server.status(rollout_id),
        await server.cancel(rollout_id),
        await server.status(rollout_id, headers={"Authorization": "Bearer nope"}),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid or missing API key"}
    assert (await server.status(rollout_id, headers=good)).status_code == 200


def test_generated_keys_have_the_prefix_and_32_random_bytes():
    key = generate_api_key()
    assert key.startswith("osm_rollout_")
    assert len(key) == len("osm_rollout_") + 43  # 32 bytes, url-safe base64 without padding
    assert generate_api_key() != key


# ---- idempotency ------------------------------------------------------------------------------


async def test_repeated_init_in_flight_and_after_completion_gets_the_same_body(
    serve, make_agent, trainer
):
    release = asyncio.Event()

    async def run(ctx):
        await release.wait()
        return ctx.complete([], reward=0.5)

    tool = {"type": "function", "function": {"name": "t"}}
    agent = make_agent(run=run, tools=[tool])
    server = serve(agent)
    first = await server.init("dup")
    assert first.status_code == 202
    again = await server.init("dup")
    assert again.status_code == 202 and again.json() == first.json()
    with_key = await server.init("dup", idempotency_key="dup")
    assert with_key.status_code == 202 and with_key.json() == first.json()
    release.set()
    await trainer.wait_for_completion("dup")
    late = await server.init("dup")
    assert late.status_code == 202 and late.json() == first.json()
    assert (await server.status("dup")).json()["completion_delivery"] == "delivered"
    assert agent.runs == 1
    assert len(trainer.completions_for("dup")) == 1


async def test_repeat_without_the_idempotency_key_is_the_same_rollout(serve, make_agent, trainer):
    agent = make_agent()
    server = serve(agent)
    first = await server.init("r-k", idempotency_key="key-1")
    await trainer.wait_for_completion("r-k")
    repeat = await server.init("r-k")  # same rollout_id, key absent
    assert repeat.status_code == 202
    assert repeat.json() == first.json()
    assert agent.runs == 1


async def test_reused_idempotency_key_with_another_rollout_id_is_409(serve, make_agent, trainer):
    agent = make_agent()
    server = serve(agent)
    assert (await server.init("first", idempotency_key="K")).status_code == 202
    await trainer.wait_for_completion("first")
    response = await server.init("second", idempotency_key="K")
    assert response.status_code == 409
    assert "K" in response.json()["detail"] and "first" in response.json()["detail"]
    assert (await server.status("second")).status_code == 404
    assert agent.run_ids == ["first"]


async def test_concurrent_identical_inits_start_one_rollout(serve, make_agent, trainer):
    def slow_tools(request):
        time.sleep(0.05)  # get_tools runs in a thread: both inits overlap here
        return [{"type": "function", "function": {"name": "slow"}}]

    agent = make_agent(get_tools=slow_tools)
    server = serve(agent)
    responses = await asyncio.gather(*(server.init("same") for _ in range(5)))
    assert [r.status_code for r in responses] == [202] * 5
    assert all(r.json() == responses[0].json() for r in responses)
    await trainer.wait_for_completion("same")
    assert agent.get_tools_calls == 1
    assert agent.runs == 1


async def test_concurrent_inits_of_one_id_with_different_keys_start_one_rollout(
    serve, make_agent, trainer
):
    def slow_tools(request):
        time.sleep(0.05)
        return []

    agent = make_agent(get_tools=slow_tools)
    server = serve(agent)
    a, b = await asyncio.gather(
        server.init("one", idempotency_key="k-a"), server.init("one", idempotency_key="k-b")
    )
    assert sorted([a.status_code, b.status_code]) == [202, 409]
    await trainer.wait_for_completion("one")
    await asyncio.sleep(0.01)
    assert agent.runs == 1
    assert len(trainer.completions_for("one")) == 1


async def test_after_the_record_ttl_an_id_may_run_again(serve, make_agent, trainer):
    agent = make_agent()
    server = serve(agent, record_ttl=0.0)
    await server.start("again")
    await trainer.wait_for_completion("again")
    await server.wait_settled("again")
    assert (await server.init("again")).status_code == 202
    await trainer.wait_until(lambda: len(trainer.completions_for("again")) == 2)
    assert agent.runs == 2


# ---- admission: the bounded queue -------------------------------------------------------------


async def test_full_queue_answers_429_with_retry_after(serve, make_agent, trainer, wait_for):
    release = asyncio.Event()

    async def run(ctx):
        await release.wait()
        return ctx.complete([])

    agent = make_agent(run=run)
    server = serve(agent, max_concurrent=1, max_queued=1)
    # Back to back, with no pause: admission must not depend on the first task having started.
    first = await server.init("run-1")
    second = await server.init("queued-2")
    third = await server.init("refused-3")
    assert (first.status_code, second.status_code) == (202, 202)
    assert third.status_code == 429
    assert int(third.headers["retry-after"]) >= 1
    assert "queue is full" in third.json()["detail"]
    assert (await server.status("refused-3")).status_code == 404
    await wait_for(lambda: agent.runs == 1)
    assert (await server.status("run-1")).json()["status"] == "running"
    assert (await server.status("queued-2")).json()["status"] == "queued"
    health = (await server.http.get("/health")).json()
    assert health["active_rollouts"] == 2
    release.set()
    await trainer.wait_for_completion("run-1")
    await trainer.wait_for_completion("queued-2")
    assert (await server.init("later-4")).status_code == 202
    await trainer.wait_for_completion("later-4")
    assert agent.run_ids == ["run-1", "queued-2", "later-4"]


async def test_repeat_of_an_admitted_rollout_is_not_refused_by_a_full_queue(
    serve, make_agent, trainer
):
    release = asyncio.Event()

    async def run(ctx):
        await release.wait()
        return ctx.complete([])

    server = serve(make_agent(run=run), max_concurrent=1, max_queued=0)
    first = await server.init("only")
    assert first.status_code == 202
    assert (await server.init("other")).status_code == 429
    assert (await server.init("only")).json() == first.json()
    release.set()
    await trainer.wait_for_completion("only")


async def test_queue_bound_counts_inits_still_in_get_tools(serve, make_agent):
    def slow_tools(request):
        time.sleep(0.05)
        return []

    release = asyncio.Event()

    async def run(ctx):
        await release.wait()
        return ctx.complete([])

    server = serve(make_agent(run=run, get_tools=slow_tools), max_concurrent=1, max_queued=1)
    responses = await asyncio.gather(*(server.init(f"c-{i}") for i in range(4)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 202, 429, 429]
    release.set()


async def test_init_body_is_json_with_the_id_exactly(serve, make_agent):
    server = serve(make_agent())
    response = await server.init("ünï/cödé")
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(response.content) == {"rollout_id": "ünï/cödé", "tools": []}
