"""SDK-0.2-API.md §9: AgentLoopRegistry and the process-global registry functions."""

from __future__ import annotations

import threading

import pytest
from compat_support import new_id

from server_core import (
    AgentLoopNotFoundError,
    AgentLoopRegistry,
    RolloutAgentLoop,
    get_agent_loop,
    list_agent_loops,
    register_agent_loop,
    unregister_agent_loop,
)


class _Loop(RolloutAgentLoop):
    name = "placeholder"

    def get_tools(self, request):
        return []

    async def run(self, ctx):
        return ctx.complete([])


def loop(name: str) -> RolloutAgentLoop:
    agent = _Loop()
    agent.name = name  # the registry keys by ``loop.name``
    return agent


def test_registry_register_get_list_unregister_clear():
    reg = AgentLoopRegistry()
    a, b = loop("alpha"), loop("beta")
    reg.register(a)
    reg.register(b)
    assert reg.get("alpha") is a
    assert reg.get("nope") is None
    assert reg.list_names() == ["alpha", "beta"]
    assert reg.unregister("alpha") is True
    assert reg.unregister("alpha") is False
    assert reg.list_names() == ["beta"]
    reg.clear()
    assert reg.list_names() == []


def test_registry_duplicate_raises():
    reg = AgentLoopRegistry()
    reg.register(loop("dup"))
    with pytest.raises(ValueError, match="already registered") as info:
        reg.register(loop("dup"))
    assert str(info.value).startswith("Agent loop 'dup' is already registered.")


def test_registry_is_keyed_by_name_and_thread_safe():
    reg = AgentLoopRegistry()
    names = [f"t{i}" for i in range(50)]
    threads = [threading.Thread(target=reg.register, args=(loop(n),)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(reg.list_names()) == sorted(names)


def test_global_functions():
    name = new_id("global-loop")
    agent = loop(name)
    register_agent_loop(agent)
    try:
        assert get_agent_loop(name) is agent
        assert name in list_agent_loops()
        with pytest.raises(ValueError, match="already registered"):
            register_agent_loop(loop(name))
    finally:
        assert unregister_agent_loop(name) is True
    assert unregister_agent_loop(name) is False
    assert name not in list_agent_loops()


def test_get_agent_loop_raises_not_found_with_the_available_names():
    name = new_id("present")
    register_agent_loop(loop(name))
    try:
        with pytest.raises(AgentLoopNotFoundError) as info:
            get_agent_loop("definitely-missing")
        assert info.value.name == "definitely-missing"
        assert info.value.available == list_agent_loops()
        assert repr(list_agent_loops()) in str(info.value)
    finally:
        unregister_agent_loop(name)


def test_list_agent_loops_is_a_list_in_insertion_order():
    first, second = new_id("first"), new_id("second")
    register_agent_loop(loop(first))
    register_agent_loop(loop(second))
    try:
        names = list_agent_loops()
        assert isinstance(names, list)
        assert names.index(first) < names.index(second)
    finally:
        unregister_agent_loop(first)
        unregister_agent_loop(second)
