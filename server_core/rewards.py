"""Reward functions: the ``@reward_fn`` decorator and calling a reward of either signature."""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

#: The two signatures a reward function may have (by the name of its first parameter).
SOLUTION_SIGNATURE = "(solution_str, ground_truth, extra_info)"
MESSAGES_SIGNATURE = "(messages, ground_truth, metadata)"


def _positional_names(fn: Callable[..., Any]) -> list[str]:
    # Parameter names only: no annotation is evaluated, so `from __future__ import annotations`
    # and forward references are fine.
    params = inspect.signature(fn).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


def coerce_reward(value: Any, *, source: str = "reward function") -> float:
    """``value`` as a float reward; ints are fine, anything else non-numeric is a TypeError.

    Any real number counts (numpy's int64 and float32 too); a bool is refused as a likely bug.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{source} returned {type(value).__name__} {value!r}; return a number")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{source} returned {result}; return a finite number")
    return result


def reward_fn(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as a reward function and make it always return a float.

    ``fn`` takes ``(solution_str, ground_truth, extra_info=None, **kwargs)`` or
    ``(messages, ground_truth, metadata=None)``, sync or async, and returns an int or float.
    """
    names = _positional_names(fn)
    if len(names) < 2:
        raise TypeError(
            f"reward function {fn.__name__} takes {names}; it needs {SOLUTION_SIGNATURE} "
            f"or {MESSAGES_SIGNATURE}"
        )
    label = f"reward function {fn.__name__}"
    if inspect.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> float:
            return coerce_reward(await fn(*args, **kwargs), source=label)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> float:
            return coerce_reward(fn(*args, **kwargs), source=label)

        wrapper = sync_wrapper
    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    wrapper.__osmosis_reward__ = True  # type: ignore[attr-defined]
    return wrapper


def final_answer_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last assistant message (what ``solution_str`` rewards score)."""
    for message in reversed(messages):
        if message.get("role") == "assistant" and message.get("content"):
            content = message["content"]
            if isinstance(content, list):  # OpenAI content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


async def score(
    fn: Callable[..., Any],
    messages: list[dict[str, Any]],
    ground_truth: Any,
    metadata: dict[str, Any] | None = None,
) -> float:
    """Call a reward function of either signature on a trajectory, off the event loop if sync."""
    target = inspect.unwrap(fn)
    first = (_positional_names(target) or ["solution_str"])[0]
    if first in ("messages", "trajectory", "final_messages"):
        args: tuple[Any, ...] = (messages, ground_truth, metadata or {})
    else:
        args = (final_answer_text(messages), ground_truth, metadata or {})
    if inspect.iscoroutinefunction(fn):
        value = await fn(*args)
    else:
        value = await asyncio.to_thread(fn, *args)
        if inspect.isawaitable(value):
            value = await value
    return coerce_reward(value, source=f"reward function {getattr(fn, '__name__', fn)}")
