"""Model backends behind the local trainer's chat endpoint.

``create_backend(spec)`` gives OpenAI or an OpenAI-compatible server over plain HTTP
("openai/gpt-4o-mini", or any name with a base URL), any other provider through litellm
("anthropic/..."), a cassette replay ("replay:PATH"), an answer script ("script:PATH") or the
developer ("human"), optionally recording to a cassette; ``ScriptedBackend`` answers from a
list or a function, for tests. Importing this package does not import litellm (that costs
5-13 s; see ``litellm_backend``).
"""

from osmosis_workbench.engine.models.answer_script import (
    AnswerScript,
    ScriptError,
    load_answer_script,
)
from osmosis_workbench.engine.models.base import (
    ERROR_KINDS,
    ErrorKind,
    LiveBackend,
    ModelBackend,
    ModelError,
    ModelReply,
)
from osmosis_workbench.engine.models.cassette import (
    CassetteError,
    RecordingBackend,
    ReplayBackend,
    canonical_request,
    find_replay,
    read_cassette,
    request_key,
)
from osmosis_workbench.engine.models.factory import create_backend
from osmosis_workbench.engine.models.human import (
    AnswerRejected,
    AnswerRequest,
    HumanBackend,
    ScriptedHuman,
    find_human,
)
from osmosis_workbench.engine.models.litellm_backend import LiteLLMBackend
from osmosis_workbench.engine.models.openai_compatible import OpenAICompatibleBackend
from osmosis_workbench.engine.models.scripted import ScriptedBackend, build_completion

__all__ = [
    "ERROR_KINDS",
    "AnswerRejected",
    "AnswerRequest",
    "AnswerScript",
    "CassetteError",
    "ErrorKind",
    "HumanBackend",
    "LiteLLMBackend",
    "LiveBackend",
    "ModelBackend",
    "ModelError",
    "ModelReply",
    "OpenAICompatibleBackend",
    "RecordingBackend",
    "ReplayBackend",
    "ScriptError",
    "ScriptedBackend",
    "ScriptedHuman",
    "build_completion",
    "canonical_request",
    "create_backend",
    "find_human",
    "find_replay",
    "load_answer_script",
    "read_cassette",
    "request_key",
]
