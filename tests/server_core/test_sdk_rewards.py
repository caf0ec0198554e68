"""server_core.rewards: @reward_fn (int or float, either signature, postponed annotations)."""

from __future__ import annotations

import importlib.util
import math
import sys
import textwrap

import pytest

from server_core import reward_fn
from server_core.rewards import coerce_reward, final_answer_text, score


@reward_fn
def exact(solution_str: str, ground_truth: str, extra_info: dict | None = None) -> int:
    return int(solution_str.strip() == ground_truth)


@reward_fn
async def async_ratio(messages: list[dict], ground_truth: Undefined, metadata=None) -> float:  # noqa: F821
    # The annotation names a type that does not exist: with postponed annotations the
    # decorator must not evaluate it.
    return len(messages) / 4


def test_int_results_become_floats():
    assert exact("42", "42") == 1.0
    assert isinstance(exact("42", "42"), float)
    assert exact("41", "42") == 0.0


async def test_async_rewards_are_supported():
    assert await async_ratio([{}, {}], "x") == 0.5


def test_decorator_keeps_the_function_identity():
    assert exact.__name__ == "exact"
    assert exact.__osmosis_reward__ is True
    assert exact.__wrapped__("1", "1") == 1


@pytest.mark.parametrize("value", ["1.0", None, [1], True, False])
def test_non_numbers_are_refused_with_the_function_named(value):
    @reward_fn
    def bad(solution_str, ground_truth):
        return value

    with pytest.raises(TypeError, match="bad returned"):
        bad("a", "b")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_rewards_are_refused(value):
    with pytest.raises(ValueError, match="finite"):
        coerce_reward(value)


def test_numpy_numbers_are_numbers():
    numpy = pytest.importorskip("numpy")
    assert coerce_reward(numpy.int64(1)) == 1.0
    assert coerce_reward(numpy.float32(0.5)) == 0.5


def test_reward_needs_two_positional_parameters():
    with pytest.raises(TypeError, match="solution_str, ground_truth"):

        @reward_fn
        def lonely(solution_str):
            return 1


def test_reward_module_with_postponed_annotations(tmp_path):
    source = textwrap.dedent(
        """
        from __future__ import annotations

        from typing import TYPE_CHECKING

        from server_core import reward_fn

        if TYPE_CHECKING:
            from somewhere import Trajectory  # never imported at runtime


        @reward_fn
        def compute(solution_str: str, ground_truth: Trajectory, extra_info: Meta = None) -> float:
            return 1 if ground_truth in solution_str else 0
        """
    )
    path = tmp_path / "postponed_rewards.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("postponed_rewards", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["postponed_rewards"] = module
    try:
        spec.loader.exec_module(module)
        assert module.compute("the answer is 42", "42") == 1.0
    finally:
        sys.modules.pop("postponed_rewards", None)


async def test_score_calls_either_signature():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "the answer is 42"},
        {"role": "tool", "content": "ignored"},
    ]

    @reward_fn
    def by_text(solution_str, ground_truth, extra_info=None):
        return 1 if solution_str.endswith(ground_truth) else 0

    @reward_fn
    async def by_messages(messages, ground_truth, metadata=None):
        return len(messages) + metadata["bonus"]

    def plain(solution_str, ground_truth, extra_info):
        return 0.25

    assert await score(by_text, messages, "42") == 1.0
    assert await score(by_messages, messages, "42", {"bonus": 1}) == 4.0
    assert await score(plain, messages, "42") == 0.25


def test_final_answer_text_reads_the_last_assistant_text():
    assert final_answer_text([]) == ""
    assert final_answer_text([{"role": "assistant", "content": None}]) == ""
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert final_answer_text([{"role": "assistant", "content": parts}]) == "ab"
    assert (
        final_answer_text(
            [{"role": "assistant", "content": "first"}, {"role": "assistant", "tool_calls": []}]
        )
        == "first"
    )
