"""Model backends behind the local trainer's chat endpoint.

``create_backend(spec)`` gives a live litellm model ("openai/gpt-4o-mini"), a cassette replay
("replay:PATH"), optionally recording to a cassette; ``ScriptedBackend`` answers from a script
for tests. Importing this package does not import litellm (that costs ~10 s; see
``litellm_backend``).
"""

from osmosis_workbench.engine.models.base import (
    ERROR_KINDS,
    ErrorKind,
    ModelBackend,
    ModelError,
    ModelReply,
)
from osmosis_workbench.engine.models.cassette import (
    CassetteError,
    RecordingBackend,
    ReplayBackend,
    canonical_request,
    read_cassette,
    request_key,
)
from osmosis_workbench.engine.models.factory import create_backend
from osmosis_workbench.engine.models.litellm_backend import LiteLLMBackend
from osmosis_workbench.engine.models.scripted import ScriptedBackend, build_completion

__all__ = [
    "ERROR_KINDS",
    "CassetteError",
    "ErrorKind",
    "LiteLLMBackend",
    "ModelBackend",
    "ModelError",
    "ModelReply",
    "RecordingBackend",
    "ReplayBackend",
    "ScriptedBackend",
    "build_completion",
    "canonical_request",
    "create_backend",
    "read_cassette",
    "request_key",
]
