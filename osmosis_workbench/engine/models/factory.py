"""``create_backend``: the one place a model spec from the CLI or the UI becomes a backend.

| spec | backend |
|---|---|
| ``replay:FILE`` | answers from a recorded cassette (``ReplayBackend``) |
| ``script:FILE`` | answers per dataset row and turn from a JSONL/YAML file (``answer_script``) |
| ``human`` | the developer answers each call (``HumanBackend``; a UI drives it) |
| ``openai/NAME`` or a bare ``NAME`` | OpenAI over plain HTTP (``OpenAICompatibleBackend``) |
| anything with ``--base-url`` | the OpenAI-compatible server there (vLLM, SGLang, Ollama...) |
| ``provider/NAME`` | litellm (``LiteLLMBackend``), imported in the background at once |
| ``litellm:provider/NAME`` | litellm even with ``--base-url`` (Azure, an Anthropic proxy) |
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from osmosis_workbench.engine.models.base import ModelBackend
from osmosis_workbench.engine.models.cassette import RecordingBackend, ReplayBackend
from osmosis_workbench.engine.models.openai_compatible import OpenAICompatibleBackend
from osmosis_workbench.engine.models.providers import ProviderTarget, missing_key_error

REPLAY_PREFIX = "replay:"
SCRIPT_PREFIX = "script:"
LITELLM_PREFIX = "litellm:"
HUMAN_SPEC = "human"

#: Prefixes that name an OpenAI-compatible server's model rather than a litellm provider.
_OPENAI_PREFIXES = ("openai/", "hosted_vllm/")


def create_backend(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    record_to: str | Path | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> ModelBackend:
    """The backend a model spec names (see the module's table).

    With ``record_to`` the backend is wrapped so every exchange is appended to that cassette.
    Files are checked and a script is read here, so a bad one fails before any row; a hosted
    provider whose key is nowhere raises its ``ModelError`` here too. A litellm spec starts
    importing litellm in the background and tells ``on_notice`` so.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError(
            "empty model spec: pass openai/gpt-4o-mini (or any litellm provider/name), "
            "replay:FILE, script:FILE or human"
        )
    backend: ModelBackend
    if spec.startswith(REPLAY_PREFIX):
        path = _path_after(spec, REPLAY_PREFIX, "replay:sample_project/cassette.jsonl")
        if not Path(path).is_file():
            # Fail at setup, not at the first rollout's first LLM call.
            raise FileNotFoundError(
                f"cassette {path} not found: record one with --record {path}, or check the path"
            )
        backend = ReplayBackend(path)
    elif spec.startswith(SCRIPT_PREFIX):
        from osmosis_workbench.engine.models.answer_script import script_backend

        backend = script_backend(_path_after(spec, SCRIPT_PREFIX, "script:answers.jsonl"))
    elif spec == HUMAN_SPEC:
        from osmosis_workbench.engine.models.human import HumanBackend

        backend = HumanBackend()
    elif spec.startswith(LITELLM_PREFIX):
        backend = _litellm(spec[len(LITELLM_PREFIX) :], base_url, api_key, on_notice)
    elif base_url or "/" not in spec or spec.startswith(_OPENAI_PREFIXES):
        model = spec
        for prefix in _OPENAI_PREFIXES:
            model = model.removeprefix(prefix)
        backend = OpenAICompatibleBackend(model, base_url=base_url, api_key=api_key)
        _check_key(backend.target)
    else:
        backend = _litellm(spec, base_url, api_key, on_notice)
    if record_to is not None:
        backend = RecordingBackend(backend, record_to)
    return backend


def _path_after(spec: str, prefix: str, example: str) -> str:
    path = spec[len(prefix) :].strip()
    if not path:
        raise ValueError(f"{prefix} needs a file path, e.g. {example}")
    return path


def _check_key(target: ProviderTarget) -> None:
    error = missing_key_error(target)
    if error is not None:
        raise error


def _litellm(
    model: str,
    base_url: str | None,
    api_key: str | None,
    on_notice: Callable[[str], None] | None,
) -> ModelBackend:
    from osmosis_workbench.engine.models import litellm_backend

    if "/" not in model:
        model = f"openai/{model}"
    backend = litellm_backend.LiteLLMBackend(model, base_url=base_url, api_key=api_key)
    _check_key(backend.target)
    if litellm_backend.start_loading() and on_notice is not None:
        on_notice(f"Loading litellm for {model} in the background (5-15 s on first use)...")
    return backend
