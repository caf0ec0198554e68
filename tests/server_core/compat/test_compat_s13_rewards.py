"""SDK-0.2-API.md §13: osmosis_reward and osmosis_rubric.

Issue 9 changes ``osmosis_reward`` on purpose: it accepts int or float returns and works under
``from __future__ import annotations``; every other check is as in 0.2.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from server_core import osmosis_reward, osmosis_rubric


def _define(source: str, future: bool = False) -> Any:
    """Define ``f`` in a fresh module namespace, with or without postponed annotations."""
    header = "from __future__ import annotations\n" if future else ""
    namespace: dict[str, Any] = {"__name__": "compat_reward_module"}
    exec(
        compile(
            header + "from typing import Any, Dict, Optional\n" + source,
            "<reward>",
            "exec",
            dont_inherit=True,
        ),
        namespace,
    )
    return namespace["f"]


def _src(params: str, ret: str = "1.0", is_async: bool = False) -> str:
    """Source of ``def f(<params>) -> float: return <ret>``."""
    return f"{'async ' if is_async else ''}def f({params}) -> float:\n    return {ret}"


GOOD = """
def f(solution_str: str, ground_truth: str, extra_info: dict = None) -> float:
    '''Doc of f.'''
    return 1.0 if solution_str == ground_truth else 0.0
"""


# ---- osmosis_reward: decoration-time checks -------------------------------------------------


@pytest.mark.parametrize("future", [False, True])
def test_reward_accepts_the_template_signature(future):
    wrapped = osmosis_reward(_define(GOOD, future))
    assert wrapped("42", "42") == 1.0
    assert wrapped("41", "42", {"k": 1}) == 0.0
    assert wrapped(solution_str="a", ground_truth="a", extra_info=None) == 1.0


@pytest.mark.parametrize("future", [False, True])
@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            _src("solution_str: str, ground_truth: str", "1.0"),
            "Function f must have at least 3 parameters, got 2",
        ),
        (
            _src("answer: str, ground_truth: str, extra_info: dict = None", "1.0"),
            "First parameter must be named 'solution_str', got 'answer'",
        ),
        (
            _src("solution_str: int, ground_truth: str, extra_info: dict = None", "1.0"),
            "First parameter 'solution_str' must be annotated as str, got",
        ),
        (
            _src("solution_str, ground_truth: str, extra_info: dict = None", "1.0"),
            "First parameter 'solution_str' must be annotated as str, got",
        ),
        (
            _src("solution_str: str, truth: str, extra_info: dict = None", "1.0"),
            "Second parameter must be named 'ground_truth', got 'truth'",
        ),
        (
            _src("solution_str: str, ground_truth: int, extra_info: dict = None", "1.0"),
            "Second parameter 'ground_truth' must be annotated as str, got",
        ),
        (
            _src("solution_str: str, ground_truth: Optional[str], extra_info: dict = None", "1.0"),
            "Second parameter 'ground_truth' must be annotated as str, got",
        ),
        (
            _src("solution_str: str, ground_truth: str, info: dict = None", "1.0"),
            "Third parameter must be named 'extra_info', got 'info'",
        ),
        (
            _src("solution_str: str, ground_truth: str, extra_info: Dict = None", "1.0"),
            "Third parameter 'extra_info' must be annotated as dict, got",
        ),
        (
            _src("solution_str: str, ground_truth: str, extra_info: Dict[str, Any] = None", "1.0"),
            "Third parameter 'extra_info' must be annotated as dict, got",
        ),
        (
            _src("solution_str: str, ground_truth: str, extra_info: dict", "1.0"),
            "Third parameter 'extra_info' must have a default value of None",
        ),
    ],
)
def test_reward_decoration_checks(source, message, future):
    with pytest.raises(TypeError) as info:
        osmosis_reward(_define(source, future))
    assert message in str(info.value)


def test_reward_any_default_for_extra_info_is_accepted():
    wrapped = osmosis_reward(
        _define(GOOD.replace("extra_info: dict = None", "extra_info: dict = {}"))
    )
    assert wrapped("a", "a") == 1.0


def test_reward_parameters_after_the_third_are_not_checked():
    source = (
        "def f(solution_str: str, ground_truth: str, extra_info: dict = None, whatever=3, *a, **k)"
        " -> float:\n    return float(whatever)"
    )
    assert osmosis_reward(_define(source))("a", "b") == 3.0


def test_reward_decorating_a_module_level_function_here():
    """This test module itself uses ``from __future__ import annotations``."""

    @osmosis_reward
    def compute_reward(solution_str: str, ground_truth: str, extra_info: dict = None) -> float:
        return 1.0

    assert compute_reward("x", "y") == 1.0


# ---- osmosis_reward: the wrapper ------------------------------------------------------------


def test_reward_wrapper_keeps_metadata():
    original = _define(GOOD)
    wrapped = osmosis_reward(original)
    assert wrapped.__name__ == "f"
    assert wrapped.__doc__ == "Doc of f."
    assert wrapped.__wrapped__ is original
    assert inspect.signature(wrapped) == inspect.signature(original)


def test_reward_wrapper_drops_data_source():
    seen = {}

    def f(solution_str: str, ground_truth: str, extra_info: dict = None) -> float:
        seen["extra_info"] = extra_info
        return 0.5

    f.__annotations__ = {
        "solution_str": str,
        "ground_truth": str,
        "extra_info": dict,
        "return": float,
    }
    wrapped = osmosis_reward(f)
    assert wrapped("a", "b", data_source="gsm8k") == 0.5
    assert wrapped("a", "b", {"x": 1}, data_source="gsm8k") == 0.5
    assert seen["extra_info"] == {"x": 1}


def test_reward_wrapper_does_not_check_argument_types():
    wrapped = osmosis_reward(_define(GOOD))
    assert wrapped(1, 1) == 1.0


@pytest.mark.parametrize("value", [1, 0, 3.5, 0.0])
def test_reward_accepts_int_and_float_returns(value):
    """Issue 9: int or float returns are accepted (0.2 rejected int)."""
    source = _src("solution_str: str, ground_truth: str, extra_info: dict = None", repr(value))
    assert osmosis_reward(_define(source))("a", "b") == value


def test_reward_accepts_numpy_float64():
    numpy = pytest.importorskip("numpy")
    source = _src("solution_str: str, ground_truth: str, extra_info: dict = None", "X")
    fn = _define(source)
    fn.__globals__["X"] = numpy.float64(0.25)
    assert osmosis_reward(fn)("a", "b") == 0.25


@pytest.mark.parametrize(
    ("value", "kind"), [("None", "NoneType"), ("'1.0'", "str"), ("[1.0]", "list")]
)
def test_reward_rejects_other_returns(value, kind):
    source = _src("solution_str: str, ground_truth: str, extra_info: dict = None", value)
    wrapped = osmosis_reward(_define(source))
    with pytest.raises(TypeError, match="must return a float") as info:
        wrapped("a", "b")
    assert kind in str(info.value)


def test_reward_async_function_fails_at_call_time():
    import gc
    import warnings

    source = _src(
        "solution_str: str, ground_truth: str, extra_info: dict = None", "1.0", is_async=True
    )
    wrapped = osmosis_reward(_define(source))
    message = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the never-awaited coroutine
        try:
            wrapped("a", "b")
        except TypeError as exc:
            message = str(exc)
        gc.collect()
    assert "must return a float" in message
    assert "coroutine" in message


# ---- osmosis_rubric -------------------------------------------------------------------------

RUBRIC = """
def f(solution_str: str, ground_truth: Optional[str], extra_info: dict) -> float:
    return 0.75
"""


@pytest.mark.parametrize("future", [False, True])
def test_rubric_accepts_str_optional_and_future_annotations(future):
    wrapped = osmosis_rubric(_define(RUBRIC, future))
    assert wrapped("a", "b", {}) == 0.75
    assert wrapped("a", None, {}) == 0.75
    assert wrapped("a", "b", {}, data_source="x") == 0.75
    union = osmosis_rubric(_define(RUBRIC.replace("Optional[str]", "str | None"), future))
    assert union("a", None, {}) == 0.75


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            _src("solution_str: str, ground_truth: str", "1.0"),
            "must have at least 3 parameters",
        ),
        (
            _src("sol: str, ground_truth: str, extra_info: dict", "1.0"),
            "First parameter must be named 'solution_str'",
        ),
        (
            _src("solution_str: int, ground_truth: str, extra_info: dict", "1.0"),
            "First parameter 'solution_str' must be annotated as str",
        ),
        (
            _src(
                "solution_str: str = 'x', ground_truth: str = 'y', extra_info: dict = None", "1.0"
            ),
            "First parameter 'solution_str' cannot have a default value",
        ),
        (
            _src("solution_str: str, ground_truth: int, extra_info: dict", "1.0"),
            "Second parameter 'ground_truth' must be annotated as str or Optional[str], got",
        ),
        (
            _src("solution_str: str, ground_truth: str = 'y', extra_info: dict = None", "1.0"),
            "Second parameter 'ground_truth' cannot have a default value",
        ),
        (
            _src("solution_str: str, ground_truth: str, info: dict", "1.0"),
            "Third parameter must be named 'extra_info'",
        ),
    ],
)
def test_rubric_decoration_checks(source, message):
    with pytest.raises(TypeError) as info:
        osmosis_rubric(_define(source))
    assert message in str(info.value)


def test_rubric_extra_info_annotation_and_default_are_not_checked():
    source = _src("solution_str: str, ground_truth: str, extra_info=5", "1.0")
    assert osmosis_rubric(_define(source))("a", "b") == 1.0


def test_rubric_wrapper_argument_checks():
    wrapped = osmosis_rubric(_define(RUBRIC))
    with pytest.raises(TypeError, match="'solution_str' must be a string, got int"):
        wrapped(1, "b", {})
    with pytest.raises(TypeError, match="'ground_truth' must be a string or None, got int"):
        wrapped("a", 2, {})
    with pytest.raises(TypeError, match="'extra_info' argument is required"):
        wrapped("a", "b")
    with pytest.raises(TypeError, match="'ground_truth' argument is required"):
        wrapped("a")
    with pytest.raises(TypeError, match="'solution_str' argument is required"):
        wrapped()


def test_rubric_requires_a_float_return():
    source = _src("solution_str: str, ground_truth: str, extra_info: dict", "1")
    with pytest.raises(TypeError, match="must return a float, got int"):
        osmosis_rubric(_define(source))("a", "b", {})


def test_rubric_wrapper_keeps_metadata():
    original = _define(RUBRIC)
    wrapped = osmosis_rubric(original)
    assert wrapped.__name__ == "f" and wrapped.__wrapped__ is original
