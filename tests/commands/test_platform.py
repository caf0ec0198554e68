"""Platform login, credentials and registration (PROTOCOL.md section 7).

Everything runs against a fake platform served by uvicorn on a loopback port; the test plays
the browser by sending the callback request to the port the login listens on.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from osmosis_workbench.commands import platform_cmds
from osmosis_workbench.engine import platform_login
from server_core import platform
from server_core.auth import generate_api_key
from server_core.platform import PlatformError

FUTURE = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
PAST = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


# --- loopback servers -----------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serve_on_loopback(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port inside this loop; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        else:
            raise RuntimeError("the loopback server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def bearer(header: str | None) -> str:
    scheme, _, value = (header or "").partition(" ")
    return value if scheme.lower() == "bearer" else ""


def verify_answer(
    *,
    email: str = "alice@example.com",
    name: str | None = "Alice",
    org: str = "acme",
    role: str = "owner",
    expires: datetime = FUTURE,
    valid: bool = True,
) -> dict[str, Any]:
    """What the platform's /api/cli/verify answers for a token."""
    return {
        "valid": valid,
        "token_id": f"tid-{org}-{email}",
        "user": {"id": f"u-{email}", "email": email, "name": name},
        "organization": {"id": f"org-{org}", "name": org, "role": role},
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
    }


@dataclass
class FakePlatform:
    """The hosted platform's CLI endpoints, with knobs for failures."""

    url: str = ""
    #: token -> the verify answer; unknown tokens get 401.
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    #: When set, registration answers this HTTP status with an error detail.
    register_status: int | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/cli/verify")
        async def verify(authorization: str | None = Header(None)) -> Any:
            answer = self.tokens.get(bearer(authorization))
            if answer is None:
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            return answer

        @app.post("/api/cli/rollout-server/register")
        async def register(request: Request, authorization: str | None = Header(None)) -> Any:
            body = await request.json()
            token = bearer(authorization)
            self.registrations.append({"token": token, "body": body})
            answer = self.tokens.get(token)
            if answer is None or not answer["valid"]:
                return JSONResponse({"detail": "Invalid or revoked token"}, status_code=401)
            if self.register_status is not None:
                return JSONResponse(
                    {"detail": "registry is down"}, status_code=self.register_status
                )
            # Like the platform: check the server with the key it was given.
            target = f"http://{body['host']}:{body['port']}/platform/health"
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    health = await client.get(
                        target, headers={"Authorization": f"Bearer {body['api_key']}"}
                    )
            except httpx.TransportError as exc:
                error = f"could not reach {target}: {exc}"
                return {
                    "id": "srv_1",
                    "status": "unreachable",
                    "health_check_result": {"error": error},
                }
            if health.status_code == 200:
                result = {"server_info": health.json(), "error": None}
                return {"id": "srv_1", "status": "healthy", "health_check_result": result}
            error = f"/platform/health answered HTTP {health.status_code}"
            result = {"server_info": None, "error": error}
            return {"id": "srv_1", "status": "unhealthy", "health_check_result": result}

        return app


HEALTH = {"status": "healthy", "agent_loop": "demo", "active_rollouts": 0, "completed_rollouts": 0}


def rollout_stub(api_key: str) -> FastAPI:
    """A stand-in rollout server: /health, and /platform/health accepting exactly ``api_key``."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return HEALTH

    @app.get("/platform/health")
    async def platform_health(authorization: str | None = Header(None)) -> Any:
        expected = f"Bearer {api_key}".encode()
        if not hmac.compare_digest((authorization or "").encode(), expected):
            return JSONResponse({"detail": "Invalid or missing API key"}, status_code=401)
        return HEALTH

    return app


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Own config dir; no real platform, no public host, no real browser (returns its calls)."""
    monkeypatch.setenv("OSMOSIS_CONFIG_DIR", str(tmp_path / "osmosis"))
    monkeypatch.setenv("OSMOSIS_PLATFORM_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("OSMOSIS_PUBLIC_HOST", raising=False)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    return opened


@pytest.fixture
async def fake_platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform()
    async with serve_on_loopback(fake.app()) as url:
        fake.url = url
        # A trailing slash, as users type it: platform_url() must strip it.
        monkeypatch.setenv("OSMOSIS_PLATFORM_URL", url + "/")
        yield fake


class Browser:
    """Plays the user's browser: gets the URL through ``on_url`` and follows the redirect."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self._seen = asyncio.Event()

    def on_url(self, url: str) -> None:
        self.urls.append(url)
        self._seen.set()

    async def login_params(self) -> dict[str, str]:
        await asyncio.wait_for(self._seen.wait(), 10)
        return {k: v[0] for k, v in parse_qs(urlsplit(self.urls[-1]).query).items()}

    async def callback(self, token: str, *, state: str | None = None) -> httpx.Response:
        params = await self.login_params()
        query = {"token": token, "state": params["state"] if state is None else state}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(f"http://127.0.0.1:{params['port']}/callback", params=query)


def start_login(browser: Browser, **kwargs: Any) -> asyncio.Task[platform.WorkspaceCredentials]:
    kwargs.setdefault("open_browser", False)
    kwargs.setdefault("timeout_s", 30)
    return asyncio.create_task(platform_login.login(on_url=browser.on_url, **kwargs))


async def log_in(fake: FakePlatform, token: str, **answer: Any) -> platform.WorkspaceCredentials:
    """A complete login with ``token``, which the fake platform knows as ``answer``."""
    fake.tokens[token] = verify_answer(**answer)
    browser = Browser()
    task = start_login(browser, force=True)
    assert (await browser.callback(token)).status_code == 200
    return await task


def workspace(org: str, *, token: str = "tok", expires: datetime | None = FUTURE, **user: Any):
    """Credentials as the store keeps them, for tests that need no login flow."""
    return platform.WorkspaceCredentials(
        access_token=f"{token}-{org}",
        expires_at=expires,
        user=platform.UserInfo(id="u1", email=user.get("email", "alice@example.com"), name="Alice"),
        organization=platform.OrganizationInfo(id=f"org-{org}", name=org, role="member"),
        created_at=datetime.now(UTC),
        token_id=f"tid-{org}",
    )


def store_logins(*logins: platform.WorkspaceCredentials, active: str | None = None) -> Path:
    workspaces = {c.workspace: c for c in logins}
    platform_login.save_credentials(
        platform.CredentialsStore(active or logins[0].workspace, workspaces)
    )
    return platform.credentials_path()


@contextmanager
def occupied(ports: range) -> Any:
    """Listen on each of ``ports`` that is free, so nothing else can bind it."""
    sockets = []
    try:
        for port in ports:
            sock = socket.socket()
            # SO_REUSEADDR, like the login's own socket: a port held only by TIME_WAIT
            # connections of an earlier test must count as free here too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                sockets.append(sock)
            except OSError:  # already busy: just as good for the test
                sock.close()
        yield
    finally:
        for sock in sockets:
            sock.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- configuration --------------------------------------------------------------------------


def test_platform_url_is_read_at_call_time_and_normalised(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OSMOSIS_PLATFORM_URL")
    assert platform.platform_url() == "https://platform.osmosis.ai"
    monkeypatch.setenv("OSMOSIS_PLATFORM_URL", "http://staging.example:8080/")
    assert platform.platform_url() == "http://staging.example:8080"
    monkeypatch.setenv("OSMOSIS_PLATFORM_URL", "platform.example")
    with pytest.raises(PlatformError, match=r"OSMOSIS_PLATFORM_URL='platform.example'"):
        platform.platform_url()


def test_public_host_prefers_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch):
    assert platform.public_host(None) is None
    monkeypatch.setenv("OSMOSIS_PUBLIC_HOST", "rollouts.example.com")
    assert platform.public_host(None) == "rollouts.example.com"
    assert platform.public_host("203.0.113.7") == "203.0.113.7"


def test_credentials_path_defaults_to_the_user_config_dir(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OSMOSIS_CONFIG_DIR")
    monkeypatch.setenv("HOME", "/home/someone")
    assert platform.credentials_path() == Path("/home/someone/.config/osmosis/credentials.json")


def test_headless_modules_stay_light():
    code = (
        "import sys\n"
        "import osmosis_workbench.commands.platform_cmds\n"
        "assert 'httpx' not in sys.modules and 'server_core.platform' not in sys.modules\n"
        "import server_core.platform\n"
        "heavy = {'textual', 'litellm', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the login flow -------------------------------------------------------------------------


async def test_login_flow_verifies_and_stores_credentials(fake_platform: FakePlatform):
    fake_platform.tokens["tok-alice"] = verify_answer()
    browser = Browser()
    task = start_login(browser)
    params = await browser.login_params()

    url = browser.urls[0]
    assert url.startswith(fake_platform.url + "/cli-auth?")
    port = int(params["port"])
    assert port in platform_login.LOGIN_PORTS
    assert params["redirect_uri"] == f"http://localhost:{port}/callback"
    assert params["device_name"] == socket.gethostname()
    assert len(params["state"]) >= 32
    # Stray requests (a favicon) neither break the login nor end it.
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/favicon.ico")).status_code == 404

    page = await browser.callback("tok-alice")
    assert page.status_code == 200
    assert "Logged in" in page.text and "alice@example.com" in page.text
    assert "tok-alice" not in page.text
    credentials = await task

    assert credentials.user.email == "alice@example.com"
    assert credentials.workspace == "acme" and not credentials.is_expired
    assert "tok-alice" not in repr(credentials)
    data = json.loads(platform.credentials_path().read_text())
    entry = data["workspaces"]["acme"]
    assert data["version"] == 1 and data["active_workspace"] == "acme"
    assert set(entry) == {
        "access_token",
        "token_type",
        "expires_at",
        "user",
        "organization",
        "created_at",
        "token_id",
    }
    assert entry["access_token"] == "tok-alice" and entry["token_type"] == "Bearer"
    assert entry["user"] == {
        "id": "u-alice@example.com",
        "email": "alice@example.com",
        "name": "Alice",
    }
    assert entry["organization"] == {"id": "org-acme", "name": "acme", "role": "owner"}
    assert entry["token_id"] == "tid-acme-alice@example.com"
    assert datetime.fromisoformat(entry["expires_at"]) == FUTURE
    # The callback port is closed once the login is over.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/callback")


async def test_credentials_file_permissions_and_atomic_write(fake_platform: FakePlatform):
    config_dir = platform.credentials_path().parent
    config_dir.mkdir(mode=0o755)
    os.chmod(config_dir, 0o755)  # a too-open directory is tightened on write
    await log_in(fake_platform, "tok-alice")
    path = platform.credentials_path()
    assert mode(config_dir) == 0o700
    assert mode(path) == 0o600
    assert os.listdir(config_dir) == ["credentials.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    monkeypatch: pytest.MonkeyPatch,
):
    path = store_logins(workspace("acme"))
    before = path.read_bytes()

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store_logins(workspace("acme", token="new"))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["credentials.json"]


async def test_login_opens_the_browser_and_still_prints_the_url(
    fake_platform: FakePlatform, monkeypatch: pytest.MonkeyPatch
):
    opened: list[str] = []
    browser_ran = threading.Event()

    def fake_open(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.append(url)
        browser_ran.set()
        return True

    monkeypatch.setattr("webbrowser.open", fake_open)
    fake_platform.tokens["tok-alice"] = verify_answer()
    browser = Browser()
    task = start_login(browser, open_browser=True)
    assert (await browser.callback("tok-alice")).status_code == 200
    await task
    assert await asyncio.to_thread(browser_ran.wait, 5)
    assert opened == browser.urls


async def test_no_browser_means_no_browser(fake_platform: FakePlatform, isolated: list[str]):
    await log_in(fake_platform, "tok-alice")
    assert isolated == []


async def test_an_idle_connection_does_not_hold_up_the_login(fake_platform: FakePlatform):
    fake_platform.tokens["tok-alice"] = verify_answer()
    browser = Browser()
    task = start_login(browser)
    port = int((await browser.login_params())["port"])
    # Browsers open spare connections they may never use.
    _reader, idle = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await browser.callback("tok-alice")).status_code == 200
        await asyncio.wait_for(task, 1.5)  # well under the grace given to real answers
    finally:
        idle.close()


async def test_state_mismatch_is_rejected(fake_platform: FakePlatform):
    fake_platform.tokens["tok-alice"] = verify_answer()
    browser = Browser()
    task = start_login(browser)
    page = await browser.callback("tok-alice", state="forged-state")
    assert page.status_code == 400 and "rejected" in page.text
    with pytest.raises(PlatformError, match="state that does not match"):
        await task
    assert not platform.credentials_path().exists()


async def test_login_times_out_with_a_clear_message():
    browser = Browser()
    with pytest.raises(PlatformError, match=r"Timed out after 0\.2 s .*osmosis login"):
        await start_login(browser, timeout_s=0.2)
    port = int((await browser.login_params())["port"])
    with pytest.raises(httpx.ConnectError):  # the callback server is gone
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/callback")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (None, r"refused the login token \(HTTP 401"),
        ({"valid": False}, r"not valid \(valid: false\)"),
    ],
)
async def test_a_refused_token_fails_the_login_and_changes_nothing(
    fake_platform: FakePlatform, answer: dict[str, Any] | None, message: str
):
    path = store_logins(workspace("acme"))
    before = path.read_bytes()
    if answer is not None:
        fake_platform.tokens["tok-bad"] = answer
    browser = Browser()
    task = start_login(browser, force=True)
    page = await browser.callback("tok-bad")
    assert page.status_code == 400 and "Login failed" in page.text
    with pytest.raises(PlatformError, match=message):
        await task
    assert path.read_bytes() == before


async def test_unreachable_platform_names_the_url_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("OSMOSIS_PLATFORM_URL", url)
    browser = Browser()
    task = start_login(browser)
    assert (await browser.callback("tok-alice")).status_code == 400
    with pytest.raises(PlatformError) as caught:
        await task
    assert f"Could not reach the Osmosis platform at {url}" in str(caught.value)
    assert "OSMOSIS_PLATFORM_URL" in str(caught.value)


async def test_login_falls_back_to_the_next_port_when_8976_is_busy(fake_platform: FakePlatform):
    with occupied(range(8976, 8977)):
        fake_platform.tokens["tok-alice"] = verify_answer()
        browser = Browser()
        task = start_login(browser)
        port = int((await browser.login_params())["port"])
        assert port in platform_login.LOGIN_PORTS and port != 8976
        assert (await browser.callback("tok-alice")).status_code == 200
        await task


async def test_login_reports_when_every_callback_port_is_busy():
    with (
        occupied(platform_login.LOGIN_PORTS),
        pytest.raises(PlatformError, match="No free port for the login callback"),
    ):
        await platform_login.login(open_browser=False, on_url=Browser().on_url, timeout_s=5)


async def test_login_without_force_keeps_a_valid_login(fake_platform: FakePlatform):
    first = await log_in(fake_platform, "tok-alice")
    browser = Browser()
    again = await platform_login.login(open_browser=False, on_url=browser.on_url)
    assert again == first and browser.urls == []  # no flow at all


async def test_force_logs_in_again_and_replaces_the_token(fake_platform: FakePlatform):
    await log_in(fake_platform, "tok-old")
    await log_in(fake_platform, "tok-new")
    await log_in(fake_platform, "tok-beta", org="beta", role="member")
    store = platform.load_credentials()
    assert store.workspaces["acme"].access_token == "tok-new"
    assert store.active_workspace == "beta" and set(store.workspaces) == {"acme", "beta"}


async def test_an_expired_login_is_renewed_without_force(fake_platform: FakePlatform):
    store_logins(workspace("acme", expires=PAST))
    fake_platform.tokens["tok-alice"] = verify_answer()
    browser = Browser()
    task = start_login(browser)
    assert (await browser.callback("tok-alice")).status_code == 200
    assert (await task).access_token == "tok-alice"


async def test_a_corrupt_credentials_file_is_reported_not_replaced():
    path = platform.credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(PlatformError, match=r"not valid .*osmosis logout --all"):
        await platform_login.login(force=True, open_browser=False, on_url=Browser().on_url)
    assert path.read_text() == "{not json"
    assert platform_login.logout(all_workspaces=True).file_deleted
    assert not path.exists()


# --- CLI: login, whoami, logout -------------------------------------------------------------


def run_cli(*argv: str) -> int:
    """Parse ``argv`` with a parser built from the add_* functions and run the handler."""
    parser = argparse.ArgumentParser(prog="osmosis")
    subparsers = parser.add_subparsers(required=True)
    platform_cmds.add_login_parser(subparsers)
    platform_cmds.add_whoami_parser(subparsers)
    platform_cmds.add_logout_parser(subparsers)
    args = parser.parse_args(argv)
    return args.handler(args)


def browser_that_logs_in(token: str) -> Callable[..., bool]:
    """A webbrowser.open that follows the login URL's redirect (from its own thread)."""

    def open_url(url: str, *args: Any, **kwargs: Any) -> bool:
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        httpx.get(
            f"http://127.0.0.1:{params['port']}/callback",
            params={"token": token, "state": params["state"]},
            timeout=10,
        )
        return True

    return open_url


async def test_cli_login_end_to_end(
    fake_platform: FakePlatform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    fake_platform.tokens["tok-alice"] = verify_answer()
    monkeypatch.setattr("webbrowser.open", browser_that_logs_in("tok-alice"))
    # run_login runs its own event loop, so it goes to a thread; this loop serves the platform.
    assert await asyncio.to_thread(run_cli, "login") == 0
    out = capsys.readouterr().out
    assert f"{fake_platform.url}/cli-auth?" in out  # printed even though a browser opened
    assert "Logged in as alice@example.com in workspace acme (owner)" in out
    assert platform.active_credentials().access_token == "tok-alice"

    assert await asyncio.to_thread(run_cli, "login") == 0
    assert "Already logged in as alice@example.com" in capsys.readouterr().out

    fake_platform.tokens["tok-again"] = verify_answer()
    monkeypatch.setattr("webbrowser.open", browser_that_logs_in("tok-again"))
    assert await asyncio.to_thread(run_cli, "login", "--force") == 0
    assert platform.active_credentials().access_token == "tok-again"


async def test_cli_login_failure_exits_1_with_the_reason(
    fake_platform: FakePlatform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.setattr("webbrowser.open", browser_that_logs_in("tok-unknown"))
    assert await asyncio.to_thread(run_cli, "login") == 1
    assert "Login failed: The platform refused the login token" in capsys.readouterr().err


def test_whoami_lists_workspaces_with_active_and_expired(capsys: pytest.CaptureFixture):
    store_logins(workspace("acme"), workspace("old", expires=PAST), active="acme")
    assert run_cli("whoami") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Email: alice@example.com", "Name:  Alice", "Workspaces:"]
    assert lines[3] == f"  * acme (member), expires {FUTURE:%Y-%m-%d}"
    assert lines[4] == "    old (member) (expired)"


def test_whoami_exits_1_when_not_logged_in_or_expired(capsys: pytest.CaptureFixture):
    assert run_cli("whoami") == 1
    assert "osmosis login" in capsys.readouterr().err
    store_logins(workspace("acme", expires=PAST))
    assert run_cli("whoami") == 1
    captured = capsys.readouterr()
    assert "* acme (member) (expired)" in captured.out
    assert "has expired" in captured.err and "osmosis login" in captured.err


def test_whoami_json_describes_the_login(capsys: pytest.CaptureFixture):
    assert run_cli("whoami", "--json") == 1
    assert json.loads(capsys.readouterr().out) == {
        "logged_in": False,
        "email": None,
        "name": None,
        "active_workspace": None,
        "workspaces": [],
        "exit_code": 1,
    }
    store_logins(workspace("acme"), workspace("old", expires=PAST), active="acme")
    assert run_cli("whoami", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["logged_in"] is True and document["exit_code"] == 0
    assert (document["email"], document["active_workspace"]) == ("alice@example.com", "acme")
    assert document["workspaces"] == [
        {
            "name": "acme",
            "role": "member",
            "active": True,
            "expired": False,
            "expires_at": FUTURE.isoformat(),
        },
        {
            "name": "old",
            "role": "member",
            "active": False,
            "expired": True,
            "expires_at": PAST.isoformat(),
        },
    ]


def test_logout_forgets_the_active_workspace_then_all(capsys: pytest.CaptureFixture):
    path = store_logins(workspace("acme"), workspace("beta"), active="acme")
    assert run_cli("logout") == 0
    assert "The active workspace is now beta" in capsys.readouterr().out
    store = platform.load_credentials()
    assert set(store.workspaces) == {"beta"} and store.active_workspace == "beta"
    assert mode(path) == 0o600

    store_logins(workspace("acme"), workspace("beta"))
    assert run_cli("logout", "--all") == 0
    assert "Logged out of workspace acme, beta" in capsys.readouterr().out
    assert not path.exists()
    assert run_cli("logout") == 0
    assert "nothing to log out of" in capsys.readouterr().out
    assert run_cli("whoami") == 1


def test_logging_out_of_the_last_workspace_deletes_the_file():
    path = store_logins(workspace("acme"))
    result = platform_login.logout()
    assert result.removed == ["acme"] and result.file_deleted and not path.exists()


# --- serve: login check and registration ----------------------------------------------------


def test_serve_needs_a_valid_login_and_names_the_way_out():
    for setup in (lambda: None, lambda: store_logins(workspace("acme", expires=PAST))):
        setup()
        with pytest.raises(PlatformError) as caught:
            platform.require_login_for_serve()
        for needed in ("osmosis login", "--local", "--skip-register"):
            assert needed in str(caught.value)
    store_logins(workspace("acme"))
    assert platform.require_login_for_serve().workspace == "acme"


@pytest.fixture
async def rollout_server() -> AsyncIterator[tuple[str, str]]:
    """A stand-in rollout server on loopback; yields (base URL, its API key)."""
    api_key = generate_api_key()
    async with serve_on_loopback(rollout_stub(api_key)) as url:
        yield url, api_key


async def test_registration_carries_the_key_platform_health_accepts(
    fake_platform: FakePlatform, rollout_server: tuple[str, str]
):
    url, api_key = rollout_server
    credentials = await log_in(fake_platform, "tok-alice")
    port = int(urlsplit(url).port or 0)
    result = await platform.register_rollout_server(
        host="127.0.0.1", port=port, agent_loop_name="demo", api_key=api_key
    )
    assert result.healthy and result.id == "srv_1" and result.server_info == HEALTH
    assert "Registered with the Osmosis platform as srv_1" in result.summary()
    [registration] = fake_platform.registrations
    assert registration["token"] == credentials.access_token
    assert registration["body"] == {
        "host": "127.0.0.1",
        "port": port,
        "agent_loop_name": "demo",
        "api_key": api_key,
    }


async def test_registration_reports_a_failed_health_check(
    fake_platform: FakePlatform, rollout_server: tuple[str, str]
):
    url, _ = rollout_server
    credentials = await log_in(fake_platform, "tok-alice")
    result = await platform.register_rollout_server(
        host="127.0.0.1",
        port=urlsplit(url).port or 0,
        agent_loop_name="demo",
        api_key=generate_api_key(),  # not the key the server accepts
        credentials=credentials,
    )
    assert not result.healthy and result.error == "/platform/health answered HTTP 401"
    assert "health check of this server failed" in result.summary()


async def test_a_registration_error_raises_clearly(fake_platform: FakePlatform):
    await log_in(fake_platform, "tok-alice")
    fake_platform.register_status = 500
    with pytest.raises(PlatformError, match=r"Registration failed: .* HTTP 500: registry is down"):
        await platform.register_rollout_server(
            host="h", port=1, agent_loop_name="demo", api_key="k"
        )


async def test_a_401_from_the_platform_leaves_the_credentials_untouched(
    fake_platform: FakePlatform,
):
    await log_in(fake_platform, "tok-alice")
    path = platform.credentials_path()
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    del fake_platform.tokens["tok-alice"]  # revoked on the platform
    with pytest.raises(PlatformError, match=r"HTTP 401.*osmosis login --force"):
        await platform.register_rollout_server(
            host="h", port=1, agent_loop_name="demo", api_key="k"
        )
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


async def test_registration_against_an_unreachable_platform(monkeypatch: pytest.MonkeyPatch):
    store_logins(workspace("acme"))
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("OSMOSIS_PLATFORM_URL", url)
    with pytest.raises(PlatformError, match=f"Could not reach the Osmosis platform at {url}"):
        await platform.register_rollout_server(
            host="h", port=1, agent_loop_name="demo", api_key="k"
        )


async def test_register_when_ready_registers_after_health_answers(
    fake_platform: FakePlatform, rollout_server: tuple[str, str]
):
    url, api_key = rollout_server
    credentials = await log_in(fake_platform, "tok-alice")
    echoed: list[str] = []
    warned: list[str] = []
    result = await platform.register_when_ready(
        local_url=url,
        host="127.0.0.1",
        port=urlsplit(url).port or 0,
        agent_loop_name="demo",
        api_key=api_key,
        credentials=credentials,
        echo=echoed.append,
        warn=warned.append,
    )
    assert result is not None and result.healthy
    assert echoed == [result.summary()] and warned == []


async def test_register_when_ready_warns_and_returns_on_failure(
    fake_platform: FakePlatform, rollout_server: tuple[str, str]
):
    url, api_key = rollout_server
    credentials = await log_in(fake_platform, "tok-alice")
    fake_platform.register_status = 503
    warned: list[str] = []
    common = dict(
        host="127.0.0.1",
        port=1,
        agent_loop_name="demo",
        api_key=api_key,
        credentials=credentials,
        echo=pytest.fail,
        warn=warned.append,
    )
    assert await platform.register_when_ready(local_url=url, **common) is None
    assert "registration with the Osmosis platform failed; still serving" in warned[0]
    assert "HTTP 503" in warned[0]

    fake_platform.registrations.clear()
    closed = f"http://127.0.0.1:{closed_port()}"
    assert (
        await platform.register_when_ready(local_url=closed, health_timeout_s=0.3, **common) is None
    )
    assert "did not answer within 0.3 s" in warned[1]
    assert fake_platform.registrations == []  # never registered a server that is not up


async def test_osmosis_serve_registers_itself_with_the_key_it_enforces(
    fake_platform: FakePlatform, tmp_path: Path
):
    """The real `osmosis serve` (no --local): logged in, it registers once /health answers,
    and the platform's check of /platform/health with the registered key succeeds."""
    store_logins(workspace("acme"))
    fake_platform.tokens["tok-acme"] = verify_answer(org="acme")
    port = closed_port()
    api_key = generate_api_key()
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "OSMOSIS_PLATFORM_URL": fake_platform.url,
        "OSMOSIS_CONFIG_DIR": os.environ["OSMOSIS_CONFIG_DIR"],
        "PYTHONPATH": str(root),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "osmosis_workbench.cli",
        "serve",
        "-m",
        "sample_project.server:agent_loop",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        "--public-host",
        "127.0.0.1",
        "--api-key",
        api_key,
        cwd=root,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output: list[str] = []
    try:

        async def read_until_registered() -> None:
            assert proc.stdout is not None
            while line := (await proc.stdout.readline()).decode():
                output.append(line)
                if "Registered with the Osmosis platform" in line:
                    return

        await asyncio.wait_for(read_until_registered(), 60)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    [registration] = fake_platform.registrations
    assert registration["token"] == "tok-acme"
    assert registration["body"] == {
        "host": "127.0.0.1",
        "port": port,
        "agent_loop_name": "calculator",
        "api_key": api_key,
    }
    text = "".join(output)
    assert "as srv_1 (status: healthy)" in text
    # The key is the one the server enforces: without it, init is refused.
    assert api_key not in text  # given with --api-key, so never echoed
