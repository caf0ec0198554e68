"""SDK-0.2-API.md §2: RolloutAgentLoop, RolloutContext, RolloutResult."""

from __future__ import annotations

import dataclasses
import inspect
import json
from unittest.mock import AsyncMock, MagicMock

import pytest
from compat_support import FakeLLM, make_request

from server_core import (
    RolloutAgentLoop,
    RolloutContext,
    RolloutMetrics,
    RolloutResult,
)

# ---- §2.1 RolloutAgentLoop ------------------------------------------------------------------


def test_name_is_only_an_annotation_on_the_base_class():
    with pytest.raises(AttributeError):
        RolloutAgentLoop.name  # noqa: B018


def test_subclass_without_name_raises_at_class_creation():
    with pytest.raises(TypeError, match="must define a 'name' class attribute"):

        class NoName(RolloutAgentLoop):
            def get_tools(self, request):
                return []

            async def run(self, ctx):
                return ctx.complete([])


@pytest.mark.parametrize("bad", ["", None, 0])
def test_falsy_name_raises_at_class_creation(bad):
    with pytest.raises(TypeError, match="must define a 'name' class attribute"):
        type(
            "Falsy",
            (RolloutAgentLoop,),
            {"name": bad, "get_tools": lambda self, r: [], "run": _async_run},
        )


async def _async_run(self, ctx):
    return ctx.complete([])


def test_error_names_the_class():
    with pytest.raises(TypeError, match="Agent loop class Nameless must define a 'name'"):
        type("Nameless", (RolloutAgentLoop,), {"get_tools": lambda s, r: [], "run": _async_run})


def test_abstract_intermediate_class_also_needs_a_name():
    """§2.1: the abstract-class skip never applies on CPython 3.11."""
    with pytest.raises(TypeError, match="must define a 'name' class attribute"):

        class Base(RolloutAgentLoop):
            pass


def test_truthy_non_string_name_passes_class_creation():
    class Numbered(RolloutAgentLoop):
        name = 5

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            return ctx.complete([])

    assert Numbered().name == 5


def test_name_may_be_inherited():
    class Parent(RolloutAgentLoop):
        name = "parent"

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            return ctx.complete([])

    class Child(Parent):
        pass

    assert Child().name == "parent"


def test_missing_abstract_methods_fail_at_instantiation():
    class OnlyTools(RolloutAgentLoop):
        name = "only-tools"

        def get_tools(self, request):
            return []

    class OnlyRun(RolloutAgentLoop):
        name = "only-run"

        async def run(self, ctx):
            return ctx.complete([])

    with pytest.raises(TypeError, match="abstract"):
        OnlyTools()
    with pytest.raises(TypeError, match="abstract"):
        OnlyRun()


def test_sync_run_can_be_instantiated():
    class SyncRun(RolloutAgentLoop):
        name = "sync-run"

        def get_tools(self, request):
            return []

        def run(self, ctx):
            return ctx.complete([])

    SyncRun()


def test_subclass_may_define_any_constructor():
    class WithInit(RolloutAgentLoop):
        name = "with-init"

        def __init__(self, a, *, b=2):
            self.a, self.b = a, b

        def get_tools(self, request):
            return []

        async def run(self, ctx):
            return ctx.complete([])

    agent = WithInit(1, b=3)
    assert (agent.a, agent.b) == (1, 3)


def test_get_tools_and_run_signatures():
    params = list(inspect.signature(RolloutAgentLoop.get_tools).parameters)
    assert params == ["self", "request"]
    assert list(inspect.signature(RolloutAgentLoop.run).parameters) == ["self", "ctx"]
    assert not inspect.iscoroutinefunction(RolloutAgentLoop.get_tools)
    assert inspect.iscoroutinefunction(RolloutAgentLoop.run)


# ---- §2.2 RolloutContext --------------------------------------------------------------------


def _metrics_llm(**metrics):
    llm = MagicMock()
    llm.get_metrics.return_value = RolloutMetrics(**metrics)
    return llm


def test_context_is_a_mutable_dataclass_with_request_tools_llm_first():
    assert dataclasses.is_dataclass(RolloutContext)
    names = [f.name for f in dataclasses.fields(RolloutContext)]
    assert names[:3] == ["request", "tools", "llm"]
    ctx = RolloutContext(request=make_request(), tools=[], llm=FakeLLM())
    ctx.tools = [{"type": "function"}]  # not frozen
    assert ctx.tools == [{"type": "function"}]


def test_context_built_with_keywords_or_positionally():
    req, tools, llm = make_request(), [{"t": 1}], FakeLLM()
    by_keyword = RolloutContext(request=req, tools=tools, llm=llm)
    positional = RolloutContext(req, tools, llm)
    assert by_keyword.request is req and by_keyword.tools is tools and by_keyword.llm is llm
    assert positional.request is req and positional.tools is tools and positional.llm is llm


@pytest.mark.parametrize("missing", ["request", "tools", "llm"])
def test_context_requires_request_tools_and_llm(missing):
    kwargs = {"request": make_request(), "tools": [], "llm": FakeLLM()}
    del kwargs[missing]
    with pytest.raises(TypeError):
        RolloutContext(**kwargs)


def test_context_equality_compares_fields():
    req, llm = make_request(), FakeLLM()
    assert RolloutContext(req, [], llm) == RolloutContext(req, [], llm)
    assert RolloutContext(req, [], llm) != RolloutContext(req, [{"x": 1}], llm)


def test_context_accepts_a_magicmock_llm():
    llm = _metrics_llm(num_llm_calls=2)
    ctx = RolloutContext(request=make_request(), tools=[], llm=llm)
    result = ctx.complete([{"role": "assistant", "content": "hi"}])
    assert result.metrics.num_llm_calls == 2


async def test_chat_passes_messages_positionally_and_kwargs_exactly():
    llm = MagicMock()
    sentinel = object()
    llm.chat_completions = AsyncMock(return_value=sentinel)
    # completion_params must NOT be merged in by ctx.chat (§15.1 constraint).
    req = make_request(completion_params={"temperature": 0.1, "max_tokens": 9, "seed": 3})
    ctx = RolloutContext(request=req, tools=[], llm=llm)
    messages = [{"role": "user", "content": "hi"}]
    got = await ctx.chat(messages, temperature=0.5)
    assert got is sentinel
    llm.chat_completions.assert_called_once_with(messages, temperature=0.5)
    call = llm.chat_completions.call_args
    assert call.args[0] is messages
    assert call.kwargs == {"temperature": 0.5}


async def test_chat_without_kwargs_passes_nothing_extra():
    llm = MagicMock()
    llm.chat_completions = AsyncMock(return_value="r")
    ctx = RolloutContext(make_request(completion_params={"temperature": 0.2}), [], llm)
    messages = [{"role": "user", "content": "hi"}]
    await ctx.chat(messages)
    llm.chat_completions.assert_called_once_with(messages)


def test_chat_signature():
    params = inspect.signature(RolloutContext.chat).parameters
    assert list(params)[:2] == ["self", "messages"]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert inspect.iscoroutinefunction(RolloutContext.chat)


def test_complete_signature():
    params = list(inspect.signature(RolloutContext.complete).parameters.values())[1:]
    assert [p.name for p in params[:3]] == ["final_messages", "finish_reason", "reward"]
    assert params[0].default is inspect.Parameter.empty
    assert params[1].default == "stop"
    assert params[2].default is None
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:3])


def test_error_signature():
    params = list(inspect.signature(RolloutContext.error).parameters.values())[1:]
    assert [p.name for p in params[:2]] == ["error_message", "final_messages"]
    assert params[0].default is inspect.Parameter.empty
    assert params[1].default is None
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[:2])


def test_record_tool_call_signature():
    params = list(inspect.signature(RolloutContext.record_tool_call).parameters.values())[1:]
    assert params[0].name == "latency_ms"
    assert params[0].default == 0.0
    # Extra parameters would not break a 0.2 caller as long as they are optional.
    assert all(p.default is not inspect.Parameter.empty for p in params)


def test_log_event_signature():
    params = list(inspect.signature(RolloutContext.log_event).parameters.values())[1:]
    assert params[0].name == "event_type"
    assert params[1].kind is inspect.Parameter.VAR_KEYWORD


def test_complete_defaults_and_identity():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    final = [{"role": "assistant", "content": "x"}]
    result = ctx.complete(final)
    assert isinstance(result, RolloutResult)
    assert result.status == "COMPLETED"
    assert result.finish_reason == "stop"
    assert result.error_message is None
    assert result.reward is None
    assert result.final_messages is final
    assert isinstance(result.metrics, RolloutMetrics)


def test_complete_keywords_and_reward_kept_as_passed():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    final: list[dict] = []
    result = ctx.complete(final_messages=final, finish_reason="max_turns", reward=1)
    assert result.final_messages is final
    assert result.finish_reason == "max_turns"
    assert result.reward == 1 and type(result.reward) is int


def test_complete_positional_form_of_the_template():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    result = ctx.complete([{"role": "user", "content": "q"}], "stop", 0.5)
    assert (result.finish_reason, result.reward) == ("stop", 0.5)


def test_error_result():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    result = ctx.error("boom")
    assert result.status == "ERROR"
    assert result.finish_reason == "error"
    assert result.error_message == "boom"
    assert result.reward is None
    assert isinstance(result.metrics, RolloutMetrics)


def test_error_final_messages_default_to_an_empty_list():
    """The brief (§15.7): the returned object keeps 0.2's ``[]``; only the wire body differs."""
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    assert ctx.error("x").final_messages == []
    assert ctx.error(error_message="x").final_messages == []
    assert ctx.error("x", final_messages=[]).final_messages == []


def test_error_keeps_a_non_empty_list_as_the_same_object():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    final = [{"role": "user", "content": "q"}]
    result = ctx.error(error_message="bad", final_messages=final)
    assert result.final_messages is final


def test_record_tool_call_counts_and_sums_latency():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    assert ctx.record_tool_call(latency_ms=5.0) is None
    ctx.record_tool_call(latency_ms=2.5)
    ctx.record_tool_call()
    metrics = ctx.complete([]).metrics
    assert metrics.num_tool_calls == 3
    assert metrics.tool_latency_ms == pytest.approx(7.5)


def test_nothing_is_timed_automatically():
    ctx = RolloutContext(make_request(), [], _metrics_llm())
    metrics = ctx.complete([]).metrics
    assert (metrics.num_tool_calls, metrics.tool_latency_ms) == (0, 0)


def test_metrics_come_from_get_metrics_and_record_tool_call():
    llm = _metrics_llm(
        total_latency_ms=999.0,
        llm_latency_ms=12.5,
        tool_latency_ms=888.0,
        num_llm_calls=2,
        num_tool_calls=77,
        prompt_tokens=30,
        response_tokens=40,
        max_context_tokens=777,
    )
    ctx = RolloutContext(make_request(), [], llm)
    ctx.record_tool_call(latency_ms=4.0)
    metrics = ctx.complete([]).metrics
    # A directly built context has no start time: total 0; the client's own total, tool
    # figures and max_context_tokens are ignored.
    assert metrics == RolloutMetrics(
        total_latency_ms=0.0,
        llm_latency_ms=12.5,
        tool_latency_ms=4.0,
        num_llm_calls=2,
        num_tool_calls=1,
        prompt_tokens=30,
        response_tokens=40,
        max_context_tokens=0,
    )


def test_total_latency_from_a_start_time():
    """§2.2: total = (monotonic now - _start_time) x 1000 when _start_time > 0 (the keyword is
    optional for a re-implementation, §16)."""
    import time

    try:
        ctx = RolloutContext(make_request(), [], _metrics_llm(), _start_time=time.monotonic() - 0.5)
    except TypeError:
        pytest.skip("RolloutContext does not accept the optional _start_time keyword (§16)")
    total = ctx.complete([]).metrics.total_latency_ms
    assert 450 <= total < 5000


def test_get_metrics_is_called_on_every_complete_and_error():
    llm = _metrics_llm()
    ctx = RolloutContext(make_request(), [], llm)
    ctx.complete([])
    ctx.error("x")
    ctx.complete([])
    assert llm.get_metrics.call_count == 3


def test_metrics_are_built_at_call_time():
    llm = _metrics_llm(num_llm_calls=1)
    ctx = RolloutContext(make_request(), [], llm)
    first = ctx.complete([]).metrics
    llm.get_metrics.return_value = RolloutMetrics(num_llm_calls=4)
    second = ctx.error("x").metrics
    assert (first.num_llm_calls, second.num_llm_calls) == (1, 4)


def test_debug_enabled_is_false_without_a_debug_dir_and_read_only():
    ctx = RolloutContext(make_request(), [], FakeLLM())
    assert ctx.debug_enabled is False
    with pytest.raises(AttributeError):
        ctx.debug_enabled = True


def test_log_event_without_debug_dir_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = RolloutContext(make_request(), [], FakeLLM())
    assert ctx.log_event("pre_llm", turn=0, data={"x": 1}) is None
    assert list(tmp_path.iterdir()) == []


def _ctx_with_debug_dir(debug_dir, rollout_id="dbg-1"):
    """§16: the ``_debug_dir`` keyword is optional for a re-implementation; skip without it."""
    try:
        return RolloutContext(make_request(rollout_id), [], FakeLLM(), _debug_dir=str(debug_dir))
    except TypeError:
        pytest.skip("RolloutContext does not accept the optional _debug_dir keyword (§16)")


def test_log_event_with_debug_dir_appends_json_lines(tmp_path):
    debug_dir = tmp_path / "nested" / "debug"
    ctx = _ctx_with_debug_dir(debug_dir, "dbg-1")
    assert ctx.debug_enabled is True
    ctx.log_event("pre_llm", turn=0, num_messages=2)
    ctx.log_event("custom", event="overridden", obj={1, 2})
    files = list(debug_dir.rglob("*.jsonl"))
    assert len(files) == 1
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert lines[0] == {"event": "pre_llm", "rollout_id": "dbg-1", "turn": 0, "num_messages": 2}
    assert list(lines[0]) == ["event", "rollout_id", "turn", "num_messages"]
    # A data key of the same name overrides; unserializable values go through str().
    assert lines[1]["event"] == "overridden"
    assert lines[1]["obj"] == str({1, 2})
    assert "timestamp" not in lines[0]


def test_log_event_swallows_os_errors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ctx = _ctx_with_debug_dir(blocker / "sub")
    ctx.log_event("pre_llm", turn=0)  # must not raise


# ---- §2.3 RolloutResult ---------------------------------------------------------------------


def test_result_fields_and_defaults():
    assert dataclasses.is_dataclass(RolloutResult)
    fields = dataclasses.fields(RolloutResult)
    assert [f.name for f in fields] == [
        "status",
        "final_messages",
        "finish_reason",
        "error_message",
        "metrics",
        "reward",
    ]
    result = RolloutResult("COMPLETED", [], "stop")
    assert result.error_message is None
    assert result.metrics is None
    assert result.reward is None
    assert not hasattr(result, "extra_fields")


def test_result_first_three_fields_are_required():
    with pytest.raises(TypeError):
        RolloutResult("COMPLETED", [])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RolloutResult()  # type: ignore[call-arg]


def test_result_positional_and_keyword_construction():
    metrics = RolloutMetrics(num_llm_calls=1)
    result = RolloutResult("ERROR", [{"role": "user"}], "error", "bad", metrics, 0.5)
    assert result.status == "ERROR"
    assert result.final_messages == [{"role": "user"}]
    assert (result.finish_reason, result.error_message) == ("error", "bad")
    assert result.metrics is metrics and result.reward == 0.5
    by_kw = RolloutResult(status="COMPLETED", final_messages=[], finish_reason="stop", reward=1.0)
    assert by_kw.reward == 1.0


def test_result_status_is_a_plain_unvalidated_string():
    result = RolloutResult("DONE", [], "stop")
    assert result.status == "DONE"
    assert type(RolloutResult("COMPLETED", [], "stop").status) is str


def test_result_equality_and_mutability():
    assert RolloutResult("COMPLETED", [], "stop") == RolloutResult("COMPLETED", [], "stop")
    assert RolloutResult("COMPLETED", [], "stop") != RolloutResult("ERROR", [], "stop")
    result = RolloutResult("COMPLETED", [], "stop")
    result.reward = 2.0
    assert result.reward == 2.0
