"""Client side of the hosted Osmosis platform that a served agent needs (PROTOCOL.md section 7).

The platform URL, the stored credentials (read only), and registering a running rollout server
so the platform can health-check it. The browser login, token verification and logout are the
CLI's (``osmosis_workbench.engine.platform_login``). Only users of the hosted platform need
this; nothing here runs in local mode.

Two rules shape the code: the platform URL is read from ``OSMOSIS_PLATFORM_URL`` at call time
(never frozen at import), and no answer from the platform ever deletes stored credentials; only
``logout`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

PLATFORM_URL_ENV = "OSMOSIS_PLATFORM_URL"
DEFAULT_PLATFORM_URL = "https://platform.osmosis.ai"
#: Overrides ``~/.config/osmosis`` (tests, sandboxes).
CONFIG_DIR_ENV = "OSMOSIS_CONFIG_DIR"
PUBLIC_HOST_ENV = "OSMOSIS_PUBLIC_HOST"
CREDENTIALS_VERSION = 1

# The platform health-checks the server before it answers, so registration may take a while.
_REGISTER_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
USER_AGENT = "osmosis-cli"


class PlatformError(Exception):
    """A platform operation failed; ``str(error)`` is a message to show the user as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- configuration --------------------------------------------------------------------------


def platform_url() -> str:
    """The platform base URL: ``OSMOSIS_PLATFORM_URL`` (read now) or the default, no trailing /."""
    raw = os.environ.get(PLATFORM_URL_ENV, "").strip()
    url = (raw or DEFAULT_PLATFORM_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PlatformError(
            f"{PLATFORM_URL_ENV}={raw!r} is not an http(s) URL; set it to one such as "
            f"{DEFAULT_PLATFORM_URL}, or unset it to use that default."
        )
    return url


def credentials_path() -> Path:
    """Where the credentials live: ``$OSMOSIS_CONFIG_DIR`` or ``~/.config/osmosis``."""
    override = os.environ.get(CONFIG_DIR_ENV, "").strip()
    config_dir = Path(override).expanduser() if override else Path.home() / ".config" / "osmosis"
    return config_dir / "credentials.json"


def public_host(cli_value: str | None) -> str | None:
    """The host to register: ``--public-host``, else ``OSMOSIS_PUBLIC_HOST``, else None.

    Deliberately no lookup of the public IP through a third-party service (0.2.x did that on
    every start); the caller picks its own fallback.
    """
    for candidate in (cli_value, os.environ.get(PUBLIC_HOST_ENV)):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


# --- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserInfo:
    """The platform user a token belongs to."""

    id: str
    email: str
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "name": self.name}

    @classmethod
    def from_json(cls, data: Any) -> UserInfo:
        if not isinstance(data, dict) or not isinstance(data.get("email"), str):
            raise ValueError("'user' must be an object with an 'email'")
        return cls(id=str(data.get("id") or ""), email=data["email"], name=data.get("name"))


@dataclass(frozen=True)
class OrganizationInfo:
    """The platform organization (workspace) a token is scoped to."""

    id: str
    name: str
    role: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role}

    @classmethod
    def from_json(cls, data: Any) -> OrganizationInfo:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            raise ValueError("'organization' must be an object with a non-empty 'name'")
        return cls(id=str(data.get("id") or ""), name=data["name"], role=data.get("role"))


@dataclass(frozen=True)
class WorkspaceCredentials:
    """One workspace's CLI login: the bearer token and who it belongs to."""

    # repr=False: a credentials object that ends up in a log or traceback must not leak the token.
    access_token: str = field(repr=False)
    expires_at: datetime | None
    user: UserInfo
    organization: OrganizationInfo
    created_at: datetime
    token_id: str | None = None
    token_type: str = "Bearer"

    @property
    def workspace(self) -> str:
        """The workspace name, the key of this login in the credentials file."""
        return self.organization.name

    @property
    def is_expired(self) -> bool:
        """Whether the token's expiry time has passed (no expiry known: not expired)."""
        return self.expires_at is not None and datetime.now(UTC) >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "user": self.user.to_json(),
            "organization": self.organization.to_json(),
            "created_at": self.created_at.isoformat(),
            "token_id": self.token_id,
        }

    @classmethod
    def from_json(cls, data: Any) -> WorkspaceCredentials:
        if not isinstance(data, dict):
            raise ValueError("a workspace entry must be an object")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ValueError("'access_token' is missing")
        expires_at = data.get("expires_at")
        return cls(
            access_token=token,
            token_type=str(data.get("token_type") or "Bearer"),
            expires_at=parse_time(expires_at) if expires_at else None,
            user=UserInfo.from_json(data.get("user")),
            organization=OrganizationInfo.from_json(data.get("organization")),
            created_at=parse_time(data.get("created_at")),
            token_id=data.get("token_id"),
        )


@dataclass
class CredentialsStore:
    """The whole credentials file: every workspace logged in to, and the active one."""

    active_workspace: str | None = None
    workspaces: dict[str, WorkspaceCredentials] = field(default_factory=dict)

    @property
    def active(self) -> WorkspaceCredentials | None:
        """The active workspace's credentials, if any."""
        if self.active_workspace is None:
            return None
        return self.workspaces.get(self.active_workspace)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CREDENTIALS_VERSION,
            "active_workspace": self.active_workspace,
            "workspaces": {name: creds.to_json() for name, creds in self.workspaces.items()},
        }


def parse_time(value: Any) -> datetime:
    """An ISO 8601 timestamp as an aware datetime; a naive one is taken as UTC."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_credentials() -> CredentialsStore:
    """Read the credentials file; an empty store when there is none.

    An unreadable file raises PlatformError rather than being ignored or replaced: it holds
    secrets, so the user decides (``osmosis logout --all`` removes it).
    """
    path = credentials_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CredentialsStore()
    except OSError as exc:
        raise PlatformError(f"Cannot read the credentials file {path}: {exc}.") from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the top level is not an object")
        if data.get("version") != CREDENTIALS_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        entries = data.get("workspaces") or {}
        if not isinstance(entries, dict):
            raise ValueError("'workspaces' is not an object")
        workspaces = {name: WorkspaceCredentials.from_json(e) for name, e in entries.items()}
        active = data.get("active_workspace")
        if active is not None and active not in workspaces:
            raise ValueError(f"the active workspace {active!r} has no entry")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise PlatformError(
            f"The credentials file {path} is not valid ({exc}). Run `osmosis logout --all` to "
            "remove it, then `osmosis login`."
        ) from exc
    return CredentialsStore(active_workspace=active, workspaces=workspaces)


def active_credentials() -> WorkspaceCredentials | None:
    """The active workspace's stored credentials (possibly expired), or None."""
    return load_credentials().active


def require_login_for_serve() -> WorkspaceCredentials:
    """The active, unexpired login ``osmosis serve`` registers with, or a PlatformError saying how
    to log in or to serve without the platform."""
    hint = (
        "Run `osmosis login` to log in to the Osmosis platform, or pass `--local` or "
        "`--skip-register` to `osmosis serve` to serve without registering with the platform."
    )
    try:
        credentials = active_credentials()
    except PlatformError as exc:
        raise PlatformError(f"{exc} {hint}") from exc
    if credentials is None:
        raise PlatformError(f"Not logged in to the Osmosis platform. {hint}")
    if credentials.is_expired:
        raise PlatformError(
            f"The login for workspace {credentials.workspace!r} expired on "
            f"{_format_time(credentials.expires_at)}. {hint}"
        )
    return credentials


def _format_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "never"


# --- HTTP to the platform -------------------------------------------------------------------


async def call_platform(
    method: str, path: str, *, token: str, timeout: httpx.Timeout, body: Any = None
) -> httpx.Response:
    """One request to the platform with the bearer token; transport failures become
    PlatformErrors that name the URL and ``OSMOSIS_PLATFORM_URL``."""
    base = platform_url()
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await client.request(method, base + path, headers=headers, json=body)
    except httpx.TimeoutException as exc:
        raise PlatformError(
            f"The Osmosis platform at {base} did not answer {method} {path} in time "
            f"({type(exc).__name__}). Try again later; if this is the wrong platform, set "
            f"{PLATFORM_URL_ENV}."
        ) from exc
    except httpx.TransportError as exc:
        raise PlatformError(
            f"Could not reach the Osmosis platform at {base} ({exc or type(exc).__name__}). "
            f"Check the network connection, or set {PLATFORM_URL_ENV} to the platform's URL."
        ) from exc


def answer_detail(response: httpx.Response) -> str:
    """A short, printable account of an error answer (its JSON detail or its text)."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        detail = (data.get("detail") or data.get("error")) if isinstance(data, dict) else None
        text = str(detail) if detail else json.dumps(data)
    return text[:300] + ("..." if len(text) > 300 else "")


def answer_json(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or a PlatformError naming what was wrong."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PlatformError(
            f"The platform answered {what} with HTTP {response.status_code} but no JSON object: "
            f"{response.text[:200]!r}. Is {PLATFORM_URL_ENV} ({platform_url()}) the platform?"
        )
    return data


@dataclass(frozen=True)
class RegistrationResult:
    """The platform's answer to a registration: the server's id and its health check."""

    id: str
    status: str
    #: What the platform's call to ``/platform/health`` returned, when it succeeded.
    server_info: dict[str, Any] | None = None
    #: Why the platform's health check failed, when it did.
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """Whether the platform reached the server with its key."""
        return self.status == "healthy"

    def summary(self) -> str:
        """One line for the serve log."""
        if self.healthy:
            return f"Registered with the Osmosis platform as {self.id} (status: {self.status})."
        return (
            f"Registered with the Osmosis platform as {self.id}, but its health check of this "
            f"server failed (status: {self.status}): {self.error or 'no reason given'}. Check "
            "that the public host and port are reachable from the internet."
        )


async def register_rollout_server(
    *,
    host: str,
    port: int,
    agent_loop_name: str,
    api_key: str,
    credentials: WorkspaceCredentials | None = None,
) -> RegistrationResult:
    """Register a running rollout server with the platform, which then health-checks it with
    ``api_key``. Raises PlatformError on any failure; a 401 leaves the stored login alone."""
    if credentials is None:
        credentials = require_login_for_serve()
    body = {"host": host, "port": port, "agent_loop_name": agent_loop_name, "api_key": api_key}
    response = await call_platform(
        "POST",
        "/api/cli/rollout-server/register",
        token=credentials.access_token,
        timeout=_REGISTER_TIMEOUT,
        body=body,
    )
    if response.status_code == 401:
        # Deliberately not deleting anything (0.2.x dropped the workspace silently here).
        raise PlatformError(
            f"The platform refused the login of workspace {credentials.workspace!r} (HTTP 401: "
            f"{answer_detail(response)}); it may have been revoked. Run `osmosis login --force` "
            "to log in again."
        )
    if not response.is_success:
        raise PlatformError(
            f"Registration failed: {platform_url()}/api/cli/rollout-server/register answered "
            f"HTTP {response.status_code}: {answer_detail(response)}."
        )
    data = answer_json(response, "the registration")
    if not data.get("id") or not isinstance(data.get("status"), str):
        raise PlatformError(f"The platform's registration answer lacks 'id' or 'status': {data}.")
    check = data.get("health_check_result") or {}
    if not isinstance(check, dict):
        check = {}
    server_info = check.get("server_info")
    return RegistrationResult(
        id=str(data["id"]),
        status=data["status"],
        server_info=server_info if isinstance(server_info, dict) else None,
        error=str(check["error"]) if check.get("error") else None,
    )


def _print_warning(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


async def register_when_ready(
    *,
    local_url: str,
    host: str,
    port: int,
    agent_loop_name: str,
    api_key: str,
    credentials: WorkspaceCredentials,
    health_timeout_s: float = 30.0,
    echo: Callable[[str], object] = print,
    warn: Callable[[str], object] = _print_warning,
) -> RegistrationResult | None:
    """Serve's registration step: wait until ``{local_url}/health`` answers 200, register, and
    report the outcome through ``echo``. Never raises for a platform failure: it warns through
    ``warn`` and returns None, so the server keeps serving."""
    health_url = local_url.rstrip("/") + "/health"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + health_timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                if (await client.get(health_url)).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if loop.time() >= deadline:
                warn(
                    f"not registering with the Osmosis platform: {health_url} did not answer "
                    f"within {health_timeout_s:g} s."
                )
                return None
            await asyncio.sleep(0.1)
    try:
        result = await register_rollout_server(
            host=host,
            port=port,
            agent_loop_name=agent_loop_name,
            api_key=api_key,
            credentials=credentials,
        )
    except PlatformError as exc:
        warn(f"registration with the Osmosis platform failed; still serving. {exc}")
        return None
    (echo if result.healthy else warn)(result.summary())
    return result
