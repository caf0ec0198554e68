"""Client side of the hosted Osmosis platform (PROTOCOL.md section 7).

Login through the browser, the credentials file, token verification and rollout-server
registration. Only users of the hosted platform need this; nothing here runs in local mode.
Headless: stdlib and httpx only.

Two rules shape the code: the platform URL is read from ``OSMOSIS_PLATFORM_URL`` at call time
(never frozen at import), and no answer from the platform ever deletes stored credentials; only
``logout`` does.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

__all__ = [
    "CONFIG_DIR_ENV",
    "DEFAULT_PLATFORM_URL",
    "LOGIN_PORTS",
    "PLATFORM_URL_ENV",
    "PUBLIC_HOST_ENV",
    "CredentialsStore",
    "LogoutResult",
    "OrganizationInfo",
    "PlatformError",
    "RegistrationResult",
    "UserInfo",
    "VerifyResult",
    "WorkspaceCredentials",
    "active_credentials",
    "credentials_path",
    "load_credentials",
    "login",
    "login_url",
    "logout",
    "platform_url",
    "public_host",
    "register_rollout_server",
    "register_when_ready",
    "require_login_for_serve",
    "save_credentials",
    "verify_token",
]

PLATFORM_URL_ENV = "OSMOSIS_PLATFORM_URL"
DEFAULT_PLATFORM_URL = "https://platform.osmosis.ai"
#: Overrides ``~/.config/osmosis`` (tests, sandboxes).
CONFIG_DIR_ENV = "OSMOSIS_CONFIG_DIR"
PUBLIC_HOST_ENV = "OSMOSIS_PUBLIC_HOST"
#: Ports the login callback may listen on; the platform only redirects to these.
LOGIN_PORTS = range(8976, 8986)
CREDENTIALS_VERSION = 1

_VERIFY_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# The platform health-checks the server before it answers, so registration may take a while.
_REGISTER_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: How long the callback server waits for a connected client to send its request line.
_REQUEST_READ_TIMEOUT_S = 10.0
#: How long the browser's callback request waits for the verification outcome.
_OUTCOME_WAIT_S = 90.0
#: Grace given to in-flight callback responses when the login ends.
_CLOSE_GRACE_S = 2.0
_USER_AGENT = "osmosis-cli"


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
            expires_at=_parse_time(expires_at) if expires_at else None,
            user=UserInfo.from_json(data.get("user")),
            organization=OrganizationInfo.from_json(data.get("organization")),
            created_at=_parse_time(data.get("created_at")),
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


def _parse_time(value: Any) -> datetime:
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


def save_credentials(store: CredentialsStore) -> None:
    """Write the credentials file atomically: directory 0700, file 0600.

    The JSON goes to a temporary file in the same directory (created 0600 by mkstemp, so the
    token is never readable by others, not even briefly) and is renamed over the old file, so a
    crash leaves either the old file or the new one, never half of one.
    """
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    os.chmod(path.parent, 0o700)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".credentials.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            os.fchmod(tmp.fileno(), 0o600)
            json.dump(store.to_json(), tmp, indent=2)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def active_credentials() -> WorkspaceCredentials | None:
    """The active workspace's stored credentials (possibly expired), or None."""
    return load_credentials().active


def _store_login(credentials: WorkspaceCredentials) -> None:
    """Add or replace a workspace's login and make it the active workspace."""
    store = load_credentials()
    store.workspaces[credentials.workspace] = credentials
    store.active_workspace = credentials.workspace
    save_credentials(store)


@dataclass(frozen=True)
class LogoutResult:
    """What ``logout`` removed."""

    removed: list[str]
    #: The workspace that is active afterwards, if any remains.
    active_workspace: str | None
    #: True when the credentials file itself is gone (last workspace, or ``--all``).
    file_deleted: bool


def logout(all_workspaces: bool = False) -> LogoutResult:
    """Forget the active workspace's login, or every login with ``all_workspaces``.

    Local only: the token is removed from this machine, not revoked on the platform.
    ``all_workspaces`` also removes an unreadable credentials file, the way out of a corrupt one.
    """
    path = credentials_path()
    if all_workspaces:
        try:
            removed = list(load_credentials().workspaces)
        except PlatformError:
            removed = []
        existed = path.exists()
        path.unlink(missing_ok=True)
        return LogoutResult(removed=removed, active_workspace=None, file_deleted=existed)
    store = load_credentials()
    if store.active_workspace is None:
        return LogoutResult(removed=[], active_workspace=None, file_deleted=False)
    removed = store.active_workspace
    del store.workspaces[removed]
    # The next remaining workspace becomes active, so `whoami` and `serve` keep working.
    store.active_workspace = next(iter(store.workspaces), None)
    if store.workspaces:
        save_credentials(store)
        return LogoutResult([removed], store.active_workspace, file_deleted=False)
    path.unlink(missing_ok=True)
    return LogoutResult([removed], None, file_deleted=True)


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


async def _call_platform(
    method: str, path: str, *, token: str, timeout: httpx.Timeout, body: Any = None
) -> httpx.Response:
    """One request to the platform with the bearer token; transport failures become
    PlatformErrors that name the URL and ``OSMOSIS_PLATFORM_URL``."""
    base = platform_url()
    headers = {"Authorization": f"Bearer {token}", "User-Agent": _USER_AGENT}
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


def _answer_detail(response: httpx.Response) -> str:
    """A short, printable account of an error answer (its JSON detail or its text)."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
    else:
        detail = (data.get("detail") or data.get("error")) if isinstance(data, dict) else None
        text = str(detail) if detail else json.dumps(data)
    return text[:300] + ("..." if len(text) > 300 else "")


def _answer_json(response: httpx.Response, what: str) -> dict[str, Any]:
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
class VerifyResult:
    """What ``GET /api/cli/verify`` says about a valid token."""

    token_id: str | None
    user: UserInfo
    organization: OrganizationInfo
    expires_at: datetime | None


async def verify_token(token: str) -> VerifyResult:
    """Ask the platform whose token this is; PlatformError when it refuses it (401, valid:false)."""
    response = await _call_platform("GET", "/api/cli/verify", token=token, timeout=_VERIFY_TIMEOUT)
    if response.status_code in (401, 403):
        raise PlatformError(
            f"The platform refused the login token (HTTP {response.status_code}: "
            f"{_answer_detail(response)}). It may have expired or been revoked; run "
            "`osmosis login` again."
        )
    if not response.is_success:
        raise PlatformError(
            f"Token verification failed: {platform_url()}/api/cli/verify answered HTTP "
            f"{response.status_code}: {_answer_detail(response)}."
        )
    data = _answer_json(response, "the token verification")
    if data.get("valid") is not True:
        raise PlatformError(
            "The platform says the login token is not valid (valid: false). It may have expired "
            "or been revoked; run `osmosis login` again."
        )
    try:
        expires_at = data.get("expires_at")
        return VerifyResult(
            token_id=data.get("token_id"),
            user=UserInfo.from_json(data.get("user")),
            organization=OrganizationInfo.from_json(data.get("organization")),
            expires_at=_parse_time(expires_at) if expires_at else None,
        )
    except ValueError as exc:
        raise PlatformError(f"The platform's token check answer is malformed: {exc}.") from exc


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
    response = await _call_platform(
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
            f"{_answer_detail(response)}); it may have been revoked. Run `osmosis login --force` "
            "to log in again."
        )
    if not response.is_success:
        raise PlatformError(
            f"Registration failed: {platform_url()}/api/cli/rollout-server/register answered "
            f"HTTP {response.status_code}: {_answer_detail(response)}."
        )
    data = _answer_json(response, "the registration")
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


# --- browser login --------------------------------------------------------------------------


def _device_name() -> str:
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


def login_url(*, state: str, port: int) -> str:
    """The platform page that asks the user to authorize this CLI and redirects back to us."""
    params = {
        "state": state,
        "port": str(port),
        "device_name": _device_name(),
        "redirect_uri": f"http://localhost:{port}/callback",
    }
    return f"{platform_url()}/cli-auth?{urlencode(params)}"


def _page(title: str, message: str) -> str:
    """The small HTML page the browser shows after the redirect."""
    title, message = html.escape(title), html.escape(message)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Osmosis CLI: {title}</title></head>"
        "<body style='font-family:sans-serif;max-width:40em;margin:4em auto'>"
        f"<h1>{title}</h1><p>{message}</p></body></html>"
    )


def _http_response(status: int, reason: str, page: str) -> bytes:
    body = page.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _CallbackServer:
    """The one-shot HTTP listener on 127.0.0.1 that receives the browser's redirect.

    ``token`` resolves with the token of the first callback that carries the right state (or
    fails on a wrong state); that request is held open until ``finish`` reports whether the
    login succeeded, so the browser tab shows the real outcome.
    """

    def __init__(self, state: str) -> None:
        loop = asyncio.get_running_loop()
        self.state = state
        self.token: asyncio.Future[str] = loop.create_future()
        self._outcome: asyncio.Future[tuple[bool, str]] = loop.create_future()
        self._server: asyncio.Server | None = None
        # Connection tasks: those still waiting for a request, and those answering one.
        self._idle: set[asyncio.Task[Any]] = set()
        self._answering: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        """Listen on the first free port of LOGIN_PORTS and return it."""
        last_error: OSError | None = None
        for port in LOGIN_PORTS:
            try:
                # Binding is the test for "free": no check-then-bind race.
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
            except OSError as exc:
                last_error = exc
                continue
            return port
        raise PlatformError(
            f"No free port for the login callback: 127.0.0.1:{LOGIN_PORTS[0]}-{LOGIN_PORTS[-1]} "
            f"are all in use ({last_error}). Close what uses them (another `osmosis login`?) and "
            "try again."
        )

    def finish(self, ok: bool, message: str) -> None:
        """Report the login's outcome to the browser tab waiting on the callback."""
        if not self._outcome.done():
            self._outcome.set_result((ok, message))

    def _fail(self, message: str) -> None:
        if not self.token.done():
            self.token.set_exception(PlatformError(message))

    async def close(self) -> None:
        """Stop listening, give answers being written a moment, then drop every connection.

        Idle connections (a browser's speculative preconnect) are dropped at once, so they
        cannot delay the end of the login.
        """
        if self._server is None:
            return
        self._server.close()
        for task in list(self._idle):
            task.cancel()
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=_CLOSE_GRACE_S)
        for task in list(self._answering):
            task.cancel()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each connection callback in its own task
        self._idle.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_READ_TIMEOUT_S)
            self._idle.discard(task)
            self._answering.add(task)
            status, reason, page = await self._answer(head)
            writer.write(_http_response(status, reason, page))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage; nothing to answer
        finally:
            writer.close()
            self._idle.discard(task)
            self._answering.discard(task)

    async def _answer(self, head: bytes) -> tuple[int, str, str]:
        """Status, reason and page for one request; resolves ``token`` for a valid callback."""
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, "Bad Request", _page("Bad request", "This is the Osmosis CLI login.")
        method, target, _version = parts
        url = urlsplit(target)
        if url.path != "/callback":
            return 404, "Not Found", _page("Not found", "This is the Osmosis CLI login.")
        if method != "GET":
            return 405, "Method Not Allowed", _page("Method not allowed", "Use GET.")
        if self.token.done():
            return 409, "Conflict", _page("Already done", "This login has already finished.")
        params = {name: values[0] for name, values in parse_qs(url.query).items()}
        state = params.get("state", "")
        if not secrets.compare_digest(state.encode(), self.state.encode()):
            self._fail(
                "Login rejected: the browser's callback carried a state that does not match this "
                "login (it may come from an older login's tab, or from someone else). Run "
                "`osmosis login` again and use the newly printed URL."
            )
            page = _page("Login rejected", "This callback is not from this `osmosis login`.")
            return 400, "Bad Request", page
        if params.get("error"):
            self._fail(f"The platform did not authorize the login: {params['error']}.")
            return 400, "Bad Request", _page("Login not authorized", params["error"])
        token = params.get("token", "")
        if not token:
            self._fail("The platform's callback carried no token. Run `osmosis login` again.")
            return 400, "Bad Request", _page("Login failed", "The callback carried no token.")
        self.token.set_result(token)
        ok, message = await asyncio.wait_for(asyncio.shield(self._outcome), _OUTCOME_WAIT_S)
        if ok:
            return 200, "OK", _page("Logged in", f"{message} You can close this tab.")
        return 400, "Bad Request", _page("Login failed", f"{message} See the terminal.")


def _open_browser(url: str) -> None:
    """Open ``url`` in a browser without blocking the loop.

    A daemon thread, because webbrowser may run a console browser that blocks until it exits,
    and the callback server must keep answering meanwhile (and the CLI must be able to exit).
    """

    def _open() -> None:
        try:
            webbrowser.open(url)
        except Exception:  # the printed URL is the fallback
            pass

    threading.Thread(target=_open, name="osmosis-login-browser", daemon=True).start()


async def login(
    *,
    force: bool = False,
    open_browser: bool = True,
    timeout_s: float = 300,
    on_url: Callable[[str], object] = print,
) -> WorkspaceCredentials:
    """Log in through the browser and store the credentials; return the new login.

    Without ``force``, an unexpired active login is returned as is and nothing else happens.
    The URL always goes to ``on_url`` (so a machine without a browser can use it elsewhere);
    the browser is opened only with ``open_browser``. Raises PlatformError with a message for
    each failure: no free port, timeout, state mismatch, refused token, unreachable platform.
    """
    if not force:
        existing = active_credentials()
        if existing is not None and not existing.is_expired:
            return existing
    else:
        load_credentials()  # an unreadable credentials file fails now, not after the browser
    callback = _CallbackServer(secrets.token_urlsafe(32))
    port = await callback.start()
    try:
        url = login_url(state=callback.state, port=port)
        on_url(url)
        if open_browser:
            _open_browser(url)
        try:
            token = await asyncio.wait_for(callback.token, timeout_s)
        except TimeoutError:
            raise PlatformError(
                f"Timed out after {timeout_s:g} s waiting for the browser to finish the login. "
                "Run `osmosis login` again and open the printed URL. On a remote machine, the "
                f"browser must reach localhost:{port} here (e.g. `ssh -L {port}:localhost:{port}`)."
            ) from None
        try:
            verified = await verify_token(token)
            credentials = WorkspaceCredentials(
                access_token=token,
                expires_at=verified.expires_at,
                user=verified.user,
                organization=verified.organization,
                created_at=datetime.now(UTC),
                token_id=verified.token_id,
            )
            _store_login(credentials)
        except PlatformError as exc:
            callback.finish(False, str(exc))
            raise
        except OSError as exc:
            message = f"Could not save the credentials to {credentials_path()}: {exc}."
            callback.finish(False, message)
            raise PlatformError(message) from exc
        callback.finish(
            True, f"Logged in as {credentials.user.email} in workspace {credentials.workspace}."
        )
        return credentials
    finally:
        callback.finish(False, "The login was cancelled.")
        await callback.close()
