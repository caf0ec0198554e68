"""What a model's tokens cost, from litellm's price map, read offline without importing litellm.

litellm ships its price table as a JSON file inside the package
(``model_prices_and_context_window_backup.json``, ~1.5 MB, ~4,900 models). ``import litellm``
costs 5-13 s and fetches the table over the network unless told not to; reading the file
itself costs ~60 ms and nothing else, so the OpenAI-compatible backend, ``--estimate`` and
``--max-cost`` price tokens this way. Without litellm installed (the thin server install) no
model has a known price.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class ModelPrice:
    """The price of a model's tokens, in US dollars per token."""

    #: The model's name in the price map.
    model: str
    input_per_token: float
    output_per_token: float

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float:
        """The cost of one call that used these tokens (unknown counts as none)."""
        return (prompt_tokens or 0) * self.input_per_token + (
            completion_tokens or 0
        ) * self.output_per_token


@functools.cache
def price_map() -> dict[str, Any]:
    """litellm's price table as shipped in its package (empty when litellm is not installed).

    Blocking (~60 ms the first time, then cached): call it off the event loop.
    """
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_MAP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _names(model: str) -> list[str]:
    """The names a model may have in the price map, most specific first."""
    model = model.removeprefix("litellm:")
    names = [model]
    _provider, slash, name = model.partition("/")
    if slash:
        names.append(name)  # openai/gpt-4o-mini is priced as gpt-4o-mini
    return names


def price_of(model: str | None) -> ModelPrice | None:
    """The price of ``model`` (a ``--model`` value), or ``None`` when the map has none.

    Blocking the first time (see ``price_map``).
    """
    if not model:
        return None
    table = price_map()
    for name in _names(model):
        entry = table.get(name)
        if not isinstance(entry, dict):
            continue
        prompt, completion = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if isinstance(prompt, int | float) and isinstance(completion, int | float):
            return ModelPrice(name, float(prompt), float(completion))
    return None
