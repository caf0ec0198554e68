"""Reward functions: ``@reward_fn`` (ours), the 0.2 decorators, and scoring a trajectory.

``@reward_fn`` accepts either signature below, sync or async, and any number back.
``@osmosis_reward``/``@osmosis_rubric`` are osmosis-ai 0.2's stricter checks.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import numbers
import typing
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


# ---- the 0.2 decorators ----------------------------------------------------------------------


def _resolved_annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    """The parameter annotations with string forms resolved (``from __future__`` modules)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an unresolvable forward reference: fall back to the raw annotations
        return {}


def _annotation(fn_hints: dict[str, Any], param: inspect.Parameter) -> Any:
    value = fn_hints.get(param.name, param.annotation)
    if isinstance(value, str):  # unresolved: the common spellings of the two types
        return {"str": str, "builtins.str": str, "dict": dict, "builtins.dict": dict}.get(
            value, value
        )
    return value


def _is_str(annotation: Any) -> bool:
    return annotation is str or (isinstance(annotation, type) and issubclass(annotation, str))


def osmosis_reward(func: Callable[..., Any]) -> Callable[..., float]:
    """Check a reward function's signature and its return value, as osmosis-ai 0.2 does.

    The function must read ``(solution_str: str, ground_truth: str, extra_info: dict = None)``
    (more parameters may follow); a wrong signature raises ``TypeError`` when decorating. The
    wrapper drops a ``data_source`` keyword, calls the function, and requires a number: an
    int is returned as a float (0.2 refused ints), a bool or anything else raises TypeError.
    String annotations (``from __future__ import annotations``) are resolved first.
    """
    params = list(inspect.signature(func).parameters.values())
    name = getattr(func, "__name__", repr(func))
    if len(params) < 3:
        raise TypeError(f"Function {name} must have at least 3 parameters, got {len(params)}")
    hints = _resolved_annotations(func)
    expected = (("First", "solution_str", str), ("Second", "ground_truth", str),
                ("Third", "extra_info", dict))  # fmt: skip
    for param, (ordinal, wanted, kind) in zip(params, expected, strict=False):
        if param.name != wanted:
            raise TypeError(f"{ordinal} parameter must be named '{wanted}', got '{param.name}'")
        annotation = _annotation(hints, param)
        if annotation is not kind:
            raise TypeError(
                f"{ordinal} parameter '{wanted}' must be annotated as {kind.__name__}, "
                f"got {annotation}"
            )
    if params[2].default is inspect.Parameter.empty:
        raise TypeError("Third parameter 'extra_info' must have a default value of None")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> float:
        kwargs.pop("data_source", None)
        result = func(*args, **kwargs)
        if isinstance(result, bool) or not isinstance(result, numbers.Real):
            raise TypeError(f"Function {name} must return a float, got {type(result).__name__}")
        return result if isinstance(result, float) else float(result)

    return wrapper


def osmosis_rubric(func: Callable[..., Any]) -> Callable[..., float]:
    """Check a rubric function's signature and arguments, as osmosis-ai 0.2 does.

    ``(solution_str: str, ground_truth: str | None, extra_info, ...)``: the first two have no
    default; the wrapper checks the argument types and requires a float back.
    """
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    name = getattr(func, "__name__", repr(func))
    if len(params) < 3:
        raise TypeError(f"Function {name} must have at least 3 parameters, got {len(params)}")
    hints = _resolved_annotations(func)
    solution, truth, extra = params[:3]
    if solution.name != "solution_str":
        raise TypeError(f"First parameter must be named 'solution_str', got '{solution.name}'")
    annotation = _annotation(hints, solution)
    if not _is_str(annotation):
        raise TypeError(
            f"First parameter 'solution_str' must be annotated as str, got {annotation}"
        )
    if solution.default is not inspect.Parameter.empty:
        raise TypeError("First parameter 'solution_str' cannot have a default value")
    if truth.name != "ground_truth":
        raise TypeError(f"Second parameter must be named 'ground_truth', got '{truth.name}'")
    annotation = _annotation(hints, truth)
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if not (_is_str(annotation) or (len(options) == 1 and _is_str(options[0]))):
        raise TypeError(
            "Second parameter 'ground_truth' must be annotated as str or Optional[str], "
            f"got {annotation}"
        )
    if truth.default is not inspect.Parameter.empty:
        raise TypeError("Second parameter 'ground_truth' cannot have a default value")
    if extra.name != "extra_info":
        raise TypeError(f"Third parameter must be named 'extra_info', got '{extra.name}'")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> float:
        kwargs.pop("data_source", None)
        bound = sig.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        for required in ("solution_str", "ground_truth", "extra_info"):
            if required not in bound.arguments:
                raise TypeError(f"'{required}' argument is required")
        solution_value = bound.arguments["solution_str"]
        if not isinstance(solution_value, str):
            raise TypeError(f"'solution_str' must be a string, got {type(solution_value).__name__}")
        truth_value = bound.arguments["ground_truth"]
        if truth_value is not None and not isinstance(truth_value, str):
            raise TypeError(
                f"'ground_truth' must be a string or None, got {type(truth_value).__name__}"
            )
        result = func(*args, **kwargs)
        if not isinstance(result, float):
            raise TypeError(f"Function {name} must return a float, got {type(result).__name__}")
        return result

    return wrapper
