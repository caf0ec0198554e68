"""Bad input never gives a 5xx or a traceback: hostile bodies thrown at POST /v1/rollout/init.

The app and its client live on one event loop for the whole module (an ``asyncio.Runner``):
hypothesis runs hundreds of examples and each is one in-process request.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server_core import RolloutAgentLoop, TrainerClient, create_app

FIELDS = [
    "rollout_id",
    "server_url",
    "messages",
    "completion_params",
    "tool_server_url",
    "max_turns",
    "max_tokens_total",
    "metadata",
    "api_key",
    "idempotency_key",
]


class InstantAgent(RolloutAgentLoop):
    """Completes at once, without calling the trainer."""

    name = "instant"

    def get_tools(self, request):
        return [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]

    async def run(self, ctx):
        return ctx.complete(list(ctx.request.messages))


def _trainer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


@pytest.fixture(scope="module")
def post():
    """``post(content: bytes) -> httpx.Response`` against one app on one private loop."""
    runner = asyncio.Runner()
    client_holder: dict = {}

    async def setup():
        trainer = TrainerClient(transport=httpx.MockTransport(_trainer))
        app = create_app(InstantAgent(), client=trainer, max_queued=100_000)
        client_holder["http"] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://server"
        )
        client_holder["trainer"] = trainer

    runner.run(setup())

    def _post(content: bytes, content_type: str = "application/json") -> httpx.Response:
        return runner.run(
            client_holder["http"].post(
                "/v1/rollout/init", content=content, headers={"content-type": content_type}
            )
        )

    yield _post

    async def teardown():
        await client_holder["http"].aclose()
        await client_holder["trainer"].aclose()

    runner.run(teardown())
    runner.close()


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    assert response.status_code in (202, 409, 422), response.text[:500]
    body = response.json()  # always JSON
    assert "Traceback" not in response.text
    if response.status_code != 202:
        assert "detail" in body


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def _valid_body(rollout_id: str = "fuzz") -> dict:
    return {
        "rollout_id": rollout_id,
        "server_url": "http://trainer.test",
        "messages": [{"role": "user", "content": "hi"}],
        "completion_params": {},
    }


@st.composite
def wrong_field(draw) -> bytes:
    """A valid body with one known field replaced by any JSON value (often the wrong type)."""
    body = _valid_body(draw(st.text(min_size=1, max_size=30)))
    body[draw(st.sampled_from(FIELDS))] = draw(json_values)
    return json.dumps(body).encode()


@st.composite
def deep_nesting(draw) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=3000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nested = opener * depth + "1" + closer * depth
    field = draw(st.sampled_from(["metadata", "messages", "completion_params", None]))
    if field is None:
        return nested.encode()
    body = json.dumps(_valid_body()).rstrip("}")
    return f'{body}, "{field}": {nested}}}'.encode()


@st.composite
def huge_strings(draw) -> bytes:
    body = _valid_body()
    field = draw(st.sampled_from(["rollout_id", "server_url", "api_key", "idempotency_key"]))
    size = draw(st.sampled_from([257, 10_000, 300_000]))
    body[field] = draw(st.sampled_from(["x", "é", "🎲", " "])) * size
    return json.dumps(body).encode()


@st.composite
def odd_literals(draw) -> bytes:
    """Numbers and literals JSON does not have, or JSON text cut short."""
    literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0x10", "undefined"]))
    field = draw(st.sampled_from(["max_turns", "metadata", "completion_params", "messages"]))
    wrap = {"metadata": '{"x": %s}', "completion_params": '{"t": %s}', "messages": "[%s]"}
    value = wrap.get(field, "%s") % literal
    body = json.dumps(_valid_body()).rstrip("}")
    text = f'{body}, "{field}": {value}}}'
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    return text[: cut if draw(st.booleans()) else len(text)].encode()


hostile_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    wrong_field(),
    deep_nesting(),
    huge_strings(),
    odd_literals(),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=50).map(lambda b: b'{"rollout_id": "' + b + b'"}'),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_bodies)
def test_hostile_init_bodies_never_give_a_5xx(post, content):
    _check(post(content))


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELDS), json_values, max_size=4
    ),
    # Long ids (256) are covered in test_protocol_init; here: which characters.
    st.text(min_size=1, max_size=40).filter(lambda s: s.strip()),
)
def test_unknown_fields_and_any_rollout_id_are_accepted(post, extra, rollout_id):
    body = {**extra, **_valid_body(rollout_id)}
    response = post(json.dumps(body).encode())
    assert response.status_code == 202, response.text[:300]
    assert response.json()["rollout_id"] == rollout_id


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"null",
        b"\xff\xfe\x00",
        b'{"rollout_id": "\xff"}',
        b'{"rollout_id": "\\ud800", "server_url": "http://a.b", "messages": [], '
        b'"completion_params": {}}',
        b"[" * 100_000,
        b'{"metadata": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}",
    ],
    ids=["empty", "null", "not-utf8", "not-utf8-in-string", "lone-surrogate", "deep", "deep-dict"],
)
def test_known_nasty_bodies(post, content):
    _check(post(content))


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_content_type_does_not_matter_for_bad_bodies(post, content_type):
    _check(post(b"rollout_id=x", content_type))
