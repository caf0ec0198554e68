"""The agent's tools: their OpenAI function definitions and the Python functions behind them."""

from __future__ import annotations


def count_letter(word: str, letter: str) -> int:
    """How many times ``letter`` appears in ``word``, ignoring case."""
    return word.lower().count(letter.lower())


def word_length(word: str) -> int:
    """How many letters ``word`` has."""
    return len(word)


#: Sent to the trainer in the init answer; the model sees these names, descriptions and
#: JSON Schemas. `osmosis validate` checks them.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "count_letter",
            "description": "Count how many times a letter appears in a word",
            "parameters": {
                "type": "object",
                "properties": {
                    "word": {"type": "string", "description": "The word to look in"},
                    "letter": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 1,
                        "description": "One letter",
                    },
                },
                "required": ["word", "letter"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "word_length",
            "description": "Count the letters of a word",
            "parameters": {
                "type": "object",
                "properties": {"word": {"type": "string", "description": "The word"}},
                "required": ["word"],
                "additionalProperties": False,
            },
        },
    },
]

#: What runs when the model calls a tool, by name.
TOOL_FUNCTIONS = {"count_letter": count_letter, "word_length": word_length}
