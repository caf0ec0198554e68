"""``create_backend``: the one place a model spec from the CLI or the UI becomes a backend."""

from __future__ import annotations

from pathlib import Path

from osmosis_workbench.engine.models.base import ModelBackend
from osmosis_workbench.engine.models.cassette import RecordingBackend, ReplayBackend
from osmosis_workbench.engine.models.litellm_backend import LiteLLMBackend

REPLAY_PREFIX = "replay:"


def create_backend(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    record_to: str | Path | None = None,
) -> ModelBackend:
    """The backend a model spec names.

    ``"replay:PATH"`` answers from a cassette; ``"provider/name"`` is a live litellm model; a
    bare name such as ``"gpt-4o-mini"`` means ``"openai/gpt-4o-mini"``. With ``record_to`` the
    backend is wrapped so every exchange is appended to that cassette. Nothing is imported or
    read here beyond a quick check that a replay cassette exists.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError(
            "empty model spec: pass a litellm model such as openai/gpt-4o-mini, "
            "or replay:PATH for a recorded cassette"
        )
    backend: ModelBackend
    if spec.startswith(REPLAY_PREFIX):
        path = spec[len(REPLAY_PREFIX) :].strip()
        if not path:
            raise ValueError(
                "replay: needs a cassette path, e.g. replay:sample_project/cassette.jsonl"
            )
        if not Path(path).is_file():
            # Fail at setup, not at the first rollout's first LLM call.
            raise FileNotFoundError(
                f"cassette {path} not found: record one with --record {path}, or check the path"
            )
        backend = ReplayBackend(path)
    else:
        model = spec if "/" in spec else f"openai/{spec}"
        backend = LiteLLMBackend(model, base_url=base_url, api_key=api_key)
    if record_to is not None:
        backend = RecordingBackend(backend, record_to)
    return backend
