"""docs/MIGRATING.md's import rewrite ports a 0.2 agent as written.

The documented command runs on the 0.2-style agent's files with their original ``osmosis_ai``
imports; the result must load and validate.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
AGENT = Path(__file__).resolve().parent / "agent02"

#: The import forms 0.2 code uses, each rewritten by the doc's one line.
ORIGINAL_IMPORTS = {
    "server.py": "from osmosis_ai.rollout import (",
    "tools.py": "from osmosis_ai.rollout.core.schemas import (",
    "rewards.py": "from osmosis_ai import osmosis_reward",
}


def documented_command() -> str:
    text = (REPO / "docs" / "MIGRATING.md").read_text(encoding="utf-8")
    (command,) = re.findall(r"^\s*(sed -i -E .*)$", text, flags=re.MULTILINE)
    return command


@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_the_documented_sed_line_ports_a_0_2_agent(tmp_path: Path) -> None:
    project = tmp_path / "ported"
    shutil.copytree(AGENT, project, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    (project / "tests").mkdir()
    (project / "tests" / "test_nothing.py").write_text(
        "from osmosis_ai.rollout.testing import fake_token_ids\n"
    )
    for name, original in ORIGINAL_IMPORTS.items():
        path = project / name
        source = path.read_text(encoding="utf-8")
        first = re.search(r"^from server_core import .*$", source, flags=re.MULTILINE)
        assert first is not None, name
        rest = first.group(0).removeprefix("from server_core import ")
        if original.endswith("("):
            assert rest == "(", (name, rest)
        else:
            original = f"{original.rsplit(' import ', 1)[0]} import {rest}"
        path.write_text(source.replace(first.group(0), original, 1), encoding="utf-8")
        assert original in path.read_text(encoding="utf-8")

    subprocess.run(documented_command(), shell=True, cwd=project, check=True)

    for path in [*project.glob("*.py"), *project.glob("tests/*.py")]:
        imports = re.findall(
            r"^\s*from osmosis_ai\S* import", path.read_text(encoding="utf-8"), re.M
        )
        assert imports == [], path.name
    check = (
        "from server_core import validate_agent_loop\n"
        "import server\n"
        "result = validate_agent_loop(server.agent_loop)\n"
        "assert result.valid, result.errors\n"
        "import tests.test_nothing\n"
        "print('ported', result.agent_name, result.tool_count)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{project}:{REPO}", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ported ")
