"""`osmosis login`, `osmosis whoami`, `osmosis logout`: the CLI side of server_core.platform.

Only argparse glue and printing. server_core.platform (httpx, and server_core's FastAPI through
the package __init__) is imported inside the run_* functions, so `osmosis --help` does not pay
for it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

__all__ = [
    "add_login_parser",
    "add_logout_parser",
    "add_whoami_parser",
    "run_login",
    "run_logout",
    "run_whoami",
]

_NOT_LOGGED_IN = "Not logged in to the Osmosis platform. Run `osmosis login` to log in."


def add_login_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `login` to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "login",
        help="log in to the hosted Osmosis platform",
        description="Log in to the hosted Osmosis platform through the browser. The login URL "
        "is always printed, so it can be opened on another device. The platform URL comes from "
        "OSMOSIS_PLATFORM_URL (default https://platform.osmosis.ai).",
    )
    parser.add_argument(
        "--force", action="store_true", help="log in again even when already logged in"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="only print the login URL, open no browser"
    )
    parser.set_defaults(handler=run_login)
    return parser


def add_whoami_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `whoami` to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "whoami",
        help="show the platform login and its workspaces",
        description="Show who is logged in to the Osmosis platform and in which workspaces "
        "(* marks the active one). Exits 1 when not logged in (or the login expired), 2 when "
        "the credentials file cannot be read.",
    )
    parser.add_argument("--json", action="store_true", help="print the login as JSON")
    parser.set_defaults(handler=run_whoami)
    return parser


def add_logout_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `logout` to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "logout",
        help="forget the platform login of the active workspace",
        description="Remove the active workspace's platform login from this machine "
        "(or every login with --all).",
    )
    parser.add_argument("--all", action="store_true", help="forget every workspace's login")
    parser.set_defaults(handler=run_logout)
    return parser


def _error(message: str) -> None:
    print(message, file=sys.stderr)


def _url_printer(open_browser: bool) -> Callable[[str], None]:
    """How `login` shows its URL: always printed, since the browser may not open."""

    def show(url: str) -> None:
        print("Open this URL in a browser to log in to the Osmosis platform:\n")
        print(f"    {url}\n")
        if open_browser:
            print("(Opening a browser; if none opens, use the URL above.)")
        # flush: with stdout piped, the user must see the URL before we block on the browser.
        print("Waiting for the browser to finish the login (Ctrl+C to cancel)...", flush=True)

    return show


def run_login(args: argparse.Namespace) -> int:
    """`osmosis login [--force] [--no-browser]`."""
    import asyncio

    from osmosis_workbench.engine import platform_login
    from server_core import platform

    try:
        if not args.force:
            existing = platform.active_credentials()
            if existing is not None and not existing.is_expired:
                print(
                    f"Already logged in as {existing.user.email} in workspace "
                    f"{existing.workspace}. Run `osmosis login --force` to log in again."
                )
                return 0
        open_browser = not args.no_browser
        credentials = asyncio.run(
            platform_login.login(
                force=True, open_browser=open_browser, on_url=_url_printer(open_browser)
            )
        )
    except platform.PlatformError as exc:
        _error(f"Login failed: {exc}")
        return 1
    except KeyboardInterrupt:
        _error("Login cancelled.")
        return 130
    role = f" ({credentials.organization.role})" if credentials.organization.role else ""
    print(
        f"Logged in as {credentials.user.email} in workspace {credentials.workspace}{role}. "
        f"Credentials saved to {platform.credentials_path()}."
    )
    return 0


def run_whoami(args: argparse.Namespace) -> int:
    """`osmosis whoami`: email, name, then the workspaces (* active, (expired) labelled)."""
    from osmosis_workbench.commands.output import ExitCode, print_json, report_error
    from server_core import platform

    as_json = args.json
    try:
        store = platform.load_credentials()
    except platform.PlatformError as exc:
        return report_error(str(exc), as_json=as_json)
    active = store.active
    logged_in = active is not None and not active.is_expired
    code = ExitCode.OK if logged_in else ExitCode.FAILED
    if as_json:
        print_json(
            {
                "logged_in": logged_in,
                "email": active.user.email if active else None,
                "name": active.user.name if active else None,
                "active_workspace": store.active_workspace if active else None,
                "workspaces": [
                    {
                        "name": name,
                        "role": credentials.organization.role,
                        "active": name == store.active_workspace,
                        "expired": credentials.is_expired,
                        "expires_at": (
                            credentials.expires_at.isoformat() if credentials.expires_at else None
                        ),
                    }
                    for name, credentials in store.workspaces.items()
                ],
                "exit_code": int(code),
            }
        )
        return code
    if active is None:
        _error(_NOT_LOGGED_IN)
        return code
    print(f"Email: {active.user.email}")
    print(f"Name:  {active.user.name or '(not set)'}")
    print("Workspaces:")
    for name, credentials in store.workspaces.items():
        marker = "*" if name == store.active_workspace else " "
        role = f" ({credentials.organization.role})" if credentials.organization.role else ""
        if credentials.is_expired:
            expiry = " (expired)"
        elif credentials.expires_at is not None:
            expiry = f", expires {credentials.expires_at:%Y-%m-%d}"
        else:
            expiry = ""
        print(f"  {marker} {name}{role}{expiry}")
    if active.is_expired:
        _error(
            f"The login of the active workspace {active.workspace} has expired. Run "
            "`osmosis login` to log in again."
        )
    return code


def run_logout(args: argparse.Namespace) -> int:
    """`osmosis logout [--all]`."""
    from osmosis_workbench.engine import platform_login
    from server_core import platform

    try:
        result = platform_login.logout(all_workspaces=args.all)
    except platform.PlatformError as exc:
        _error(str(exc))
        return 1
    if result.removed:
        print(f"Logged out of workspace {', '.join(result.removed)}.")
    elif result.file_deleted:
        print(f"Removed the credentials file {platform.credentials_path()}.")
    else:
        print("Not logged in; nothing to log out of.")
        return 0
    if result.active_workspace:
        print(f"The active workspace is now {result.active_workspace}.")
    # We have no revocation endpoint in the contract, so say what logout does not do.
    print("The token was removed from this machine; the platform keeps it valid until it expires.")
    return 0
