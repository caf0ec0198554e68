"""The calculator's tools: their OpenAI definitions and the functions that run them."""

from __future__ import annotations


def _number(name: str, description: str) -> dict:
    return {"type": "number", "description": description}


def _binary_tool(name: str, description: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {
                    "a": _number("a", "First number"),
                    "b": _number("b", "Second number"),
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }


CALCULATOR_TOOLS = [
    _binary_tool("add", "Add two numbers: a + b"),
    _binary_tool("subtract", "Subtract b from a: a - b"),
    _binary_tool("multiply", "Multiply two numbers: a * b"),
    _binary_tool("divide", "Divide a by b: a / b"),
]


def _tidy(value: float) -> float | int:
    # 6.0 reads better as 6 in the model's context and in rewards.
    return int(value) if float(value).is_integer() else round(value, 10)


def add(a: float, b: float) -> float | int:
    return _tidy(a + b)


def subtract(a: float, b: float) -> float | int:
    return _tidy(a - b)


def multiply(a: float, b: float) -> float | int:
    return _tidy(a * b)


def divide(a: float, b: float) -> float | int:
    if b == 0:
        raise ZeroDivisionError("cannot divide by zero")
    return _tidy(a / b)


TOOL_FUNCTIONS = {"add": add, "subtract": subtract, "multiply": multiply, "divide": divide}
