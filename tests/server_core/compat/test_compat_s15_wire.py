"""SDK-0.2-API.md §15 (PROTOCOL.md "ours"): where the wire deliberately differs from 0.2.11,
plus issue 9's history rule: the assistant message an agent appends reaches the trainer in the
next chat request exactly as the trainer sent it (append-only prefix consistency).
"""

from __future__ import annotations

import time

from compat_support import answer, init_body, new_id, settle, tool_call, walk_nulls
from fastapi.testclient import TestClient

from server_core import (
    RolloutAgentLoop,
    create_app,
    create_tool_result,
)


class LoopAgent(RolloutAgentLoop):
    """Chats ``turns`` times, answering tool calls with "ok" and otherwise nudging on."""

    name = "wire-agent"

    def __init__(
        self, tools=None, turns=3, chat_kwargs=None, fail_after_chat=False, error_after_chat=False
    ):
        self.tools = tools or []
        self.turns = turns
        self.chat_kwargs = chat_kwargs or {}
        self.fail_after_chat = fail_after_chat
        self.error_after_chat = error_after_chat
        self.results = []

    def get_tools(self, request):
        return self.tools

    async def run(self, ctx):
        messages = list(ctx.request.messages)
        for _ in range(self.turns):
            result = await ctx.chat(messages, **self.chat_kwargs)
            messages.append(result.message)
            if self.fail_after_chat:
                raise RuntimeError("agent exploded after the chat")
            if self.error_after_chat:
                res = ctx.error("could not finish")
                self.results.append(res)
                return res
            if result.has_tool_calls:
                messages.extend(create_tool_result(c["id"], "ok") for c in result.tool_calls)
            elif result.content == "final":
                break
            else:
                messages.append({"role": "user", "content": "go on"})
        return ctx.complete(messages, reward=1.0)


def _serve_one(lb_trainer, agent, **fields):
    rid = fields.pop("rollout_id", None) or new_id("wire")
    with TestClient(create_app(agent)) as client:
        response = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid, **fields))
        assert response.status_code == 202, response.text
        completion = lb_trainer.wait_for_completion(rid)
        settle(0.05)
    return rid, response, completion


# ---- history: append-only, as received ---------------------------------------------------------


def test_appended_assistant_messages_reach_the_trainer_unchanged(lb_trainer):
    replies = [
        answer(
            message={
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call("lookup", {"q": "x"}, "call_a")],
            },
            finish_reason="tool_calls",
        ),
        answer(
            message={
                "role": "assistant",
                "content": "thinking",
                "tool_calls": None,
                "refusal": None,
                "reasoning_content": "step 1",
            }
        ),
        answer(message={"role": "assistant", "content": "final"}),
    ]
    lb_trainer.chat_script.extend(replies)
    rid, _, completion = _serve_one(lb_trainer, LoopAgent(turns=3))
    chats = lb_trainer.chats_for(rid)
    assert len(chats) == 3
    raw_messages = [r for r in lb_trainer.chat_requests if r.get("rollout_id") == rid]
    for i in range(2):
        sent = chats[i]["messages"]
        received = replies[i]["choices"][0]["message"]
        following = chats[i + 1]["messages"]
        # Append-only: the next history starts with this one, then the answer exactly.
        assert following[: len(sent)] == sent
        assert following[len(sent)] == received
        assert list(following[len(sent)]) == list(received)  # same keys, same order
    assert raw_messages  # recorded
    # And the trajectory in the completion keeps them too.
    final = completion["final_messages"]
    assert replies[0]["choices"][0]["message"] in final
    assert replies[1]["choices"][0]["message"] in final
    assert final[-1] == {"role": "assistant", "content": "final"}


# ---- §15.1 chat body -------------------------------------------------------------------------


def test_completion_params_are_applied_by_default(lb_trainer):
    lb_trainer.chat_default = answer("final")
    params = {"temperature": 0.25, "top_p": 0.5, "max_tokens": 77, "seed": 11}
    rid, _, _ = _serve_one(lb_trainer, LoopAgent(turns=1), completion_params=params)
    (body,) = lb_trainer.chats_for(rid)
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 77
    assert body["seed"] == 11


def test_explicit_chat_kwargs_win_over_completion_params(lb_trainer):
    lb_trainer.chat_default = answer("final")
    agent = LoopAgent(turns=1, chat_kwargs={"temperature": 0.9, "max_tokens": 5})
    params = {"temperature": 0.25, "max_tokens": 77}
    rid, _, _ = _serve_one(lb_trainer, agent, completion_params=params)
    (body,) = lb_trainer.chats_for(rid)
    assert (body["temperature"], body["max_tokens"]) == (0.9, 5)


def test_served_chat_forwards_tools_and_other_kwargs_and_has_no_default_max_tokens(lb_trainer):
    lb_trainer.chat_default = answer("final")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    agent = LoopAgent(turns=1, chat_kwargs={"tools": tools, "tool_choice": "auto", "seed": 3})
    rid, _, _ = _serve_one(lb_trainer, agent)
    (body,) = lb_trainer.chats_for(rid)
    assert body["tools"] == tools
    assert body["tool_choice"] == "auto"
    assert body["seed"] == 3
    assert "max_tokens" not in body
    assert body["rollout_id"] == rid
    assert walk_nulls(body) == []


# ---- §15.3 lossless tool schemas ----------------------------------------------------------------


def test_dict_tool_parameters_reach_the_trainer_as_written(lb_trainer):
    parameters = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "level": {"type": "integer", "enum": [1, 2, 3], "default": 1},
            "where": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "either": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        },
        "required": ["tags"],
        "additionalProperties": False,
    }
    tool = {
        "type": "function",
        "function": {"name": "search", "description": "Search", "parameters": parameters},
    }
    lb_trainer.chat_default = answer("final")
    _, response, _ = _serve_one(lb_trainer, LoopAgent(tools=[tool], turns=1))
    (sent,) = response.json()["tools"]
    assert sent["function"]["parameters"] == parameters
    assert sent["function"]["name"] == "search"
    assert walk_nulls(response.json()) == []


def test_tool_without_description_keeps_no_null_keys(lb_trainer):
    tool = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}
    lb_trainer.chat_default = answer("final")
    _, response, _ = _serve_one(lb_trainer, LoopAgent(tools=[tool], turns=1))
    assert walk_nulls(response.json()) == []
    assert response.json()["tools"][0]["function"]["name"] == "ping"


def test_an_invalid_tool_fails_init_with_json_and_starts_nothing(lb_trainer):
    agent = LoopAgent(tools=[{"type": "function", "function": {"description": "no name"}}])
    with TestClient(create_app(agent), raise_server_exceptions=False) as client:
        rid = new_id("badtool")
        response = client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        settle()
    assert not 200 <= response.status_code < 300
    response.json()
    assert lb_trainer.chats_for(rid) == [] and lb_trainer.attempts_for(rid) == []


# ---- §15.4 idempotency ------------------------------------------------------------------------


def test_reused_idempotency_key_with_another_rollout_id_is_409(lb_trainer):
    lb_trainer.chat_default = answer("final")
    with TestClient(create_app(LoopAgent(turns=1))) as client:
        first_id, second_id = new_id("first"), new_id("second")
        first = client.post(
            "/v1/rollout/init",
            json=init_body(lb_trainer.url, first_id, idempotency_key="shared-key"),
        )
        second = client.post(
            "/v1/rollout/init",
            json=init_body(lb_trainer.url, second_id, idempotency_key="shared-key"),
        )
        lb_trainer.wait_for_completion(first_id)
        settle()
    assert first.status_code == 202
    assert second.status_code == 409
    assert lb_trainer.chats_for(second_id) == []


# ---- §15.6 extra endpoints, /health ----------------------------------------------------------


def test_health_keeps_the_four_fields_and_extra_endpoints_exist(lb_trainer):
    lb_trainer.chat_default = answer("final")
    with TestClient(create_app(LoopAgent(turns=1))) as client:
        health = client.get("/health").json()
        assert {"status", "agent_loop", "active_rollouts", "completed_rollouts"} <= set(health)
        assert client.get("/v1/rollout/never-started").status_code == 404
        assert client.post("/v1/rollout/never-started/cancel").status_code == 404
        rid = new_id("status")
        client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid))
        lb_trainer.wait_for_completion(rid)
        status = client.get(f"/v1/rollout/{rid}")
    assert status.status_code == 200
    assert status.json()["rollout_id"] == rid
    assert status.json()["status"] in ("queued", "running", "completed", "error", "cancelled")


# ---- §15.7 / §15.8 ERROR completions ----------------------------------------------------------

CATEGORIES = {"timeout", "llm_error", "agent_error", "tool_error", "cancelled", "protocol_error"}


def test_raising_run_reports_the_partial_trajectory_and_category(lb_trainer):
    lb_trainer.chat_default = answer("partial answer")
    _rid, _, completion = _serve_one(lb_trainer, LoopAgent(turns=1, fail_after_chat=True))
    assert completion["status"] == "ERROR"
    assert completion["finish_reason"] == "error"
    assert "agent exploded after the chat" in completion["error_message"]
    final = completion["final_messages"]
    assert final, "§15.7: an ERROR completion carries the trajectory reached"
    assert final[0] == {"role": "user", "content": "What is 2 + 2?"}
    extra = completion["extra_fields"]
    assert extra["error_category"] == "agent_error"
    assert isinstance(extra["traceback"], str) and "RuntimeError" in extra["traceback"]


def test_ctx_error_without_messages_sends_the_partial_trajectory(lb_trainer):
    """The brief: ``ctx.error("x").final_messages == []`` in Python, the partial trajectory on
    the wire."""
    lb_trainer.chat_default = answer("half way")
    agent = LoopAgent(turns=1, error_after_chat=True)
    _rid, _, completion = _serve_one(lb_trainer, agent)
    (returned,) = agent.results
    assert returned.final_messages == []
    assert completion["status"] == "ERROR"
    assert "could not finish" in completion["error_message"]
    final = completion["final_messages"]
    assert final and final[0] == {"role": "user", "content": "What is 2 + 2?"}
    assert completion["extra_fields"].get("error_category") in CATEGORIES


def test_llm_failure_is_categorised(lb_trainer):
    from compat_support import Reply

    lb_trainer.chat_default = Reply(400, json={"detail": "bad request"})
    _rid, _, completion = _serve_one(lb_trainer, LoopAgent(turns=1))
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] in CATEGORIES
    assert isinstance(completion["extra_fields"]["traceback"], str)


def test_completed_metrics_fill_max_context_tokens(lb_trainer):
    lb_trainer.chat_default = answer(
        "final", usage={"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42}
    )
    _, _, completion = _serve_one(lb_trainer, LoopAgent(turns=1))
    assert completion["status"] == "COMPLETED"
    assert completion["metrics"]["max_context_tokens"] > 0


# ---- §15.9 acknowledgement --------------------------------------------------------------------


def test_a_204_acknowledges_the_served_completion(lb_trainer):
    from compat_support import Reply

    lb_trainer.chat_default = answer("final")
    lb_trainer.completion_default = Reply(204)
    rid, _, _ = _serve_one(lb_trainer, LoopAgent(turns=1))
    settle(0.2)
    assert len(lb_trainer.attempts_for(rid)) == 1


# ---- §15.6 / §15.9 cancel ----------------------------------------------------------------------


def test_cancel_ends_the_rollout_with_one_cancelled_error(lb_trainer):
    import asyncio

    class Slow(RolloutAgentLoop):
        name = "slow"

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            await ctx.chat(list(ctx.request.messages))
            await asyncio.sleep(30)
            return ctx.complete([])

    lb_trainer.chat_default = answer("thinking")
    with TestClient(create_app(Slow())) as client:
        rid = new_id("cancel")
        assert (
            client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid)).status_code == 202
        )
        deadline = time.monotonic() + 5
        while not lb_trainer.chats_for(rid) and time.monotonic() < deadline:
            settle(0.01)
        assert client.post(f"/v1/rollout/{rid}/cancel").status_code == 202
        completion = lb_trainer.wait_for_completion(rid, timeout=5)
        settle(0.1)
    assert completion["status"] == "ERROR"
    assert completion["extra_fields"]["error_category"] == "cancelled"
    assert completion["final_messages"], "§15.7: the trajectory reached"
    assert len(lb_trainer.attempts_for(rid)) == 1


# ---- §15.11 file names --------------------------------------------------------------------------


def test_rollout_id_is_never_used_raw_as_a_file_name(lb_trainer, tmp_path):
    class Logs(RolloutAgentLoop):
        name = "logs"

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            ctx.log_event("pre_llm", turn=0)
            return ctx.complete([])

    debug_dir = tmp_path / "a" / "b" / "debug"
    rid = "../../escape-" + new_id("trav")
    with TestClient(create_app(Logs(), debug_dir=str(debug_dir))) as client:
        assert (
            client.post("/v1/rollout/init", json=init_body(lb_trainer.url, rid)).status_code == 202
        )
        lb_trainer.wait_for_completion(rid)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written, "the event was written somewhere"
    assert all(debug_dir in p.parents for p in written), written
