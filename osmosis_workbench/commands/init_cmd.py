"""``osmosis init [DIR] [--name NAME]``: a new agent project that runs offline at once.

The files come from ``osmosis_workbench/templates/agent``. The cassette the offline runs replay
is not shipped: it is recorded here, by running the new project's own agent against its
``answers.jsonl`` (``--model script:``) through the real protocol, in a fresh process in the
new folder, exactly as the project's README says to re-record it. So it always matches the
template.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "agent"
#: Template files whose installed name differs (dot files are easily lost in packaging).
_RENAMED = {"gitignore": ".gitignore"}
CASSETTE = "cassette.jsonl"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
DIST = "osmosis-workbench"
#: A new project develops with the workbench (the terminal app, datasets, models).
WITH_EXTRA = f"{DIST}[workbench]"


def add_init_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``osmosis init`` to the CLI."""
    p = subparsers.add_parser(
        "init",
        help="create a new agent project that runs offline at once",
        description="Create an agent project (server.py, tools.py, rewards.py, a dataset, "
        "answers, a recorded cassette, tests, pyproject.toml, README) in DIR.",
    )
    p.add_argument("dir", nargs="?", default=".", help="where to create it (default: here)")
    p.add_argument("--name", default=None, help="project and agent name (default: DIR's name)")
    p.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    """Write the project, record its cassette, say what to run next."""
    target = Path(args.dir).resolve()
    name = args.name or _name_from(target.name)
    if not _NAME.match(name):
        print(
            f"osmosis init: error: --name {name!r} is not a valid project name: use letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit",
            file=sys.stderr,
        )
        return 2
    files = template_files(name)
    clashes = [p for p in [*files, CASSETTE] if (target / p).exists()]
    if clashes:
        print(
            f"osmosis init: refusing to overwrite existing files in {target}: "
            f"{', '.join(clashes)} (move them away or pick another directory)",
            file=sys.stderr,
        )
        return 2  # an input error: nothing was written
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    problem = record_cassette(target)
    if problem:
        print(
            f"osmosis init: wrote {target} but could not record {CASSETTE}:\n{problem}",
            file=sys.stderr,
        )
        return 1
    shown = args.dir if args.dir != "." else "."
    print(f"Created the agent project {name!r} in {target}")
    print("Next:")
    if shown != ".":
        print(f"  cd {shown}")
    print("  uv run osmosis test -m server:agent_loop -d test_data.jsonl   # offline, every row")
    print("  uv run pytest")
    print("  uv run osmosis-workbench -m server:agent_loop -d test_data.jsonl --row 0")
    return 0


def template_files(name: str) -> dict[str, str]:
    """The project's files (relative path -> text) for project ``name``."""
    dependency, sources = workbench_dependency()
    values = {"name": name, "dependency": json.dumps(dependency), "sources": sources}
    files: dict[str, str] = {}
    for path in sorted(TEMPLATE.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        relative = path.relative_to(TEMPLATE)
        out = (
            relative.with_name(_RENAMED.get(relative.stem, relative.stem))
            if (relative.suffix == ".tmpl")
            else relative
        )
        text = path.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        files[out.as_posix()] = text
    return files


def workbench_dependency() -> tuple[str, str]:
    """The dependency on osmosis-workbench, and a ``[tool.uv.sources]`` block, for where this
    copy was installed from: its folder (editable or not), its git URL and commit, or its wheel
    (PEP 610's ``direct_url.json``); a plain versioned dependency for an index install."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return WITH_EXTRA, ""
    requirement = f"{WITH_EXTRA}>={dist.version}"
    raw = dist.read_text("direct_url.json")
    if not raw:
        return requirement, ""
    direct = json.loads(raw)
    url = direct.get("url", "")
    if "vcs_info" in direct:
        rev = direct["vcs_info"].get("commit_id")
        source = f'{{ git = "{url}"' + (f', rev = "{rev}"' if rev else "") + " }"
    elif url.startswith("file://"):
        path = unquote(urlparse(url).path)
        editable = ", editable = true" if direct.get("dir_info", {}).get("editable") else ""
        source = f'{{ path = "{path}"{editable} }}'
    else:
        source = f'{{ url = "{url}" }}'
    return WITH_EXTRA, f"\n[tool.uv.sources]\n{DIST} = {source}\n"


def record_cassette(project: Path) -> str | None:
    """Record ``cassette.jsonl`` from ``answers.jsonl`` through the real protocol; the output
    of the run when it failed, else None."""
    with tempfile.TemporaryDirectory(prefix="osmosis-init-") as runs:
        command = [
            sys.executable,
            "-m",
            "osmosis_workbench.cli",
            "test",
            "-m",
            "server:agent_loop",
            "-d",
            "test_data.jsonl",
            "--model",
            "script:answers.jsonl",
            "--record",
            CASSETTE,
            "--runs-dir",
            runs,
            "-q",
        ]
        # A fresh process in the new folder: its `server`, `tools` and `rewards` modules are
        # imported there as the user's runs will import them, never into this process.
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)
    if done.returncode == 0:
        return None
    (project / CASSETTE).unlink(missing_ok=True)
    return (done.stdout + done.stderr).strip()


def _name_from(folder: str) -> str:
    """A project name from a folder name: lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", folder.lower()).strip("-._") or "agent"
