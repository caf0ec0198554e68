"""``osmosis init``: a new project that validates, runs offline and passes its own tests; and
the wheel, installed into a fresh environment, doing the same.

The new project's modules (``server``, ``tools``, ``rewards``) are run in subprocesses in its
folder, as a user runs them, never imported into the test process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from osmosis_workbench.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = {
    ".gitignore",
    "README.md",
    "answers.jsonl",
    "cassette.jsonl",
    "pyproject.toml",
    "rewards.py",
    "server.py",
    "test_data.jsonl",
    "tests/test_agent.py",
    "tools.py",
}


def run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTHONPATH")}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def osmosis(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "osmosis_workbench.cli", *args], cwd)


def test_init_makes_a_project_that_validates_runs_offline_and_passes_its_tests(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["init", str(demo)]) == 0
    assert "Created the agent project 'demo'" in capsys.readouterr().out
    written = {p.relative_to(demo).as_posix() for p in demo.rglob("*") if p.is_file()}
    assert written == PROJECT_FILES

    validated = osmosis("validate", "-m", "server:agent_loop", cwd=demo)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "Name: demo" in validated.stdout and "count_letter, word_length" in validated.stdout
    # The README's first command: no --model, so the recorded cassette is the model.
    tested = osmosis("test", "-m", "server:agent_loop", "-d", "test_data.jsonl", cwd=demo)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Model: replay:cassette.jsonl" in tested.stdout and "Passed: 4" in tested.stdout
    # The README's second command: the project's own tests (this environment's pytest).
    own = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], demo)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "4 passed" in own.stdout


def test_the_project_depends_on_this_checkout_and_is_named(tmp_path):
    assert main(["init", str(tmp_path / "x"), "--name", "word-games"]) == 0
    config = tomllib.loads((tmp_path / "x" / "pyproject.toml").read_text())
    assert config["project"]["name"] == "word-games"
    assert config["project"]["dependencies"] == ["osmosis-workbench[workbench]"]
    # This checkout is installed editable (uv sync): the new project uses the same folder.
    assert config["tool"]["uv"]["sources"]["osmosis-workbench"] == {
        "path": str(ROOT),
        "editable": True,
    }
    assert 'name = "word-games"' in (tmp_path / "x" / "server.py").read_text()
    readme = (tmp_path / "x" / "README.md").read_text()
    assert "uv run osmosis test -m server:agent_loop -d test_data.jsonl\n" in readme


def test_init_refuses_to_overwrite_and_names_the_files(tmp_path, capsys):
    (tmp_path / "server.py").write_text("mine\n")
    (tmp_path / "README.md").write_text("mine\n")
    (tmp_path / "notes.txt").write_text("unrelated files are fine\n")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"refusing to overwrite existing files in {tmp_path}: README.md, server.py" in err
    assert (tmp_path / "server.py").read_text() == "mine\n"
    assert not (tmp_path / "tools.py").exists()  # nothing written


def test_a_bad_name_is_refused(tmp_path, capsys):
    assert main(["init", str(tmp_path / "p"), "--name", "my agent!"]) == 2
    assert "--name 'my agent!' is not a valid project name" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


# --- the wheel, in a fresh environment --------------------------------------------------------


def uv_or_skip() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.skip("uv is not installed")
    return uv


def uv_step(uv: str, *args: str, cwd: Path) -> None:
    """Run a uv step from its cache, else from the index; skip when neither can serve it."""
    for mode in ("--offline", None):
        done = run([uv, *args, *([mode] if mode else [])], cwd, timeout=600)
        if done.returncode == 0:
            return
    pytest.skip(
        f"uv {args[0]} needs packages neither the uv cache nor the network has: "
        f"{done.stderr.strip().splitlines()[-1:]}"
    )


@pytest.fixture(scope="module")
def thin_install(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel, built from this checkout and installed without extras into a fresh venv:
    (the wheel, the venv's bin folder)."""
    uv = uv_or_skip()
    where = tmp_path_factory.mktemp("wheel")
    uv_step(uv, "build", "--wheel", "--out-dir", str(where / "dist"), str(ROOT), cwd=where)
    [wheel] = (where / "dist").glob("osmosis_workbench-*.whl")
    venv = where / "venv"
    uv_step(uv, "venv", "--python", sys.executable, str(venv), cwd=where)
    uv_step(uv, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel), cwd=where)
    return wheel, venv / "bin"


@pytest.mark.wheel
def test_the_wheel_installs_into_a_fresh_environment_and_inits_a_working_project(
    tmp_path, thin_install
):
    wheel, bin_dir = thin_install
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (
        "pyproject.toml.tmpl",
        "gitignore.tmpl",
        "answers.jsonl",
        "tests/test_agent.py",
    ):
        assert f"osmosis_workbench/templates/agent/{template}" in names
    assert "server_core/py.typed" in names

    made = run([str(bin_dir / "osmosis"), "init", "demo"], tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    demo = tmp_path / "demo"
    # Installed from a wheel file: the new project's dependency says so.
    assert str(wheel) in (demo / "pyproject.toml").read_text()
    for command in (
        ["validate", "-m", "server:agent_loop"],
        ["test", "-m", "server:agent_loop", "-d", "test_data.jsonl"],
    ):
        done = run([str(bin_dir / "osmosis"), *command], demo)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed: 4" in done.stdout


@pytest.mark.wheel
def test_the_server_only_install_serves_the_sample_agent(tmp_path, thin_install):
    """Without the [workbench] extra: no textual, litellm, pandas or pyarrow, yet `osmosis
    serve` serves the sample agent to a trainer, and the terminal app says what to install."""
    _, bin_dir = thin_install
    python = str(bin_dir / "python")
    missing = run(
        [python, "-c", "import importlib.util as u; print([m for m in "
         "('textual', 'litellm', 'pandas', 'pyarrow') if u.find_spec(m)])"],
        tmp_path,
    )  # fmt: skip
    assert missing.stdout.strip() == "[]", missing.stdout + missing.stderr
    app = run([str(bin_dir / "osmosis-workbench"), "-m", "server:agent_loop"], tmp_path)
    assert app.returncode == 2 and "osmosis-workbench[workbench]" in app.stderr

    shutil.copytree(ROOT / "sample_project", tmp_path / "sample_project")
    script = tmp_path / "round_trip.py"
    script.write_text(THIN_ROUND_TRIP, encoding="utf-8")
    done = run([python, str(script), str(bin_dir / "osmosis")], tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "COMPLETED" in done.stdout


#: Run in the thin venv: start `osmosis serve --local` on the sample agent, answer its
#: callbacks with a tiny trainer on loopback, and print the completion's status.
THIN_ROUND_TRIP = """
import json, socket, subprocess, sys, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

done = {}

class Trainer(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path.endswith("/v1/chat/completions"):
            answer = {"choices": [{"message": {"role": "assistant", "content": "42"}}]}
        else:
            done.update(body)
            answer = {"ok": True}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

trainer = HTTPServer(("127.0.0.1", 0), Trainer)
threading.Thread(target=trainer.serve_forever, daemon=True).start()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(
    [sys.argv[1], "serve", "-m", "sample_project.server:agent_loop", "--local", "-p", str(port)]
)
try:
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    init = {
        "rollout_id": "thin-1",
        "server_url": f"http://127.0.0.1:{trainer.server_port}",
        "messages": [{"role": "user", "content": "What is 6 * 7?"}],
        "completion_params": {},
        "metadata": {"ground_truth": "42"},
    }
    request = urllib.request.Request(
        base + "/v1/rollout/init", json.dumps(init).encode(), {"content-type": "application/json"}
    )
    assert urllib.request.urlopen(request, timeout=10).status == 202
    for _ in range(300):
        if done:
            break
        time.sleep(0.05)
    print(done.get("status"), done.get("reward"))
finally:
    server.terminate()
    server.wait(20)
"""
