"""The CLI's side of the hosted Osmosis platform: browser login, verification, logout.

``osmosis login`` opens the platform's login page, listens on a local port for its redirect
(a small HTTP server written here on asyncio streams), verifies the token and stores the
credentials (``~/.config/osmosis/credentials.json``, 0600, written atomically). A served agent
only needs ``server_core.platform`` (reading the credentials, registering).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import secrets
import socket
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from server_core.platform import (
    CredentialsStore,
    OrganizationInfo,
    PlatformError,
    UserInfo,
    WorkspaceCredentials,
    active_credentials,
    answer_detail,
    answer_json,
    call_platform,
    credentials_path,
    load_credentials,
    parse_time,
    platform_url,
)

#: Ports the login callback may listen on; the platform only redirects to these.
LOGIN_PORTS = range(8976, 8986)
_VERIFY_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: How long the callback server waits for a connected client to send its request line.
_REQUEST_READ_TIMEOUT_S = 10.0
#: How long the browser's callback request waits for the verification outcome.
_OUTCOME_WAIT_S = 90.0
#: Grace given to in-flight callback responses when the login ends.
_CLOSE_GRACE_S = 2.0


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
    workspace = store.active_workspace
    del store.workspaces[workspace]
    # The next remaining workspace becomes active, so `whoami` and `serve` keep working.
    store.active_workspace = next(iter(store.workspaces), None)
    if store.workspaces:
        save_credentials(store)
        return LogoutResult([workspace], store.active_workspace, file_deleted=False)
    path.unlink(missing_ok=True)
    return LogoutResult([workspace], None, file_deleted=True)


@dataclass(frozen=True)
class VerifyResult:
    """What ``GET /api/cli/verify`` says about a valid token."""

    token_id: str | None
    user: UserInfo
    organization: OrganizationInfo
    expires_at: datetime | None


async def verify_token(token: str) -> VerifyResult:
    """Ask the platform whose token this is; PlatformError when it refuses it (401, valid:false)."""
    response = await call_platform("GET", "/api/cli/verify", token=token, timeout=_VERIFY_TIMEOUT)
    if response.status_code in (401, 403):
        raise PlatformError(
            f"The platform refused the login token (HTTP {response.status_code}: "
            f"{answer_detail(response)}). It may have expired or been revoked; run "
            "`osmosis login` again."
        )
    if not response.is_success:
        raise PlatformError(
            f"Token verification failed: {platform_url()}/api/cli/verify answered HTTP "
            f"{response.status_code}: {answer_detail(response)}."
        )
    data = answer_json(response, "the token verification")
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
            expires_at=parse_time(expires_at) if expires_at else None,
        )
    except ValueError as exc:
        raise PlatformError(f"The platform's token check answer is malformed: {exc}.") from exc


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
        with contextlib.suppress(Exception):  # the printed URL is the fallback
            webbrowser.open(url)

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
