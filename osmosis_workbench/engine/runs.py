"""Run directories: where ``osmosis test`` keeps each run's ``run.json`` and journal.

A run directory ``<runs dir>/<timestamp>-<dataset name>`` holds ``run.json`` (what was run,
with which options) and the journal (``journal.JOURNAL_FILE``). ``--resume RUN`` and
``--retry-failed RUN`` name one by its path, its name under the runs directory, or ``last``.

``run.json`` pins the run to its ``RunDefinition`` (the dataset's content, the rows, the agent,
the model, the attempts): continuing it with another definition would mix two runs in one
journal, so that is refused, naming each difference.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from osmosis_workbench.engine.config import EngineConfig
from osmosis_workbench.engine.datasets.selection import format_row_spec
from osmosis_workbench.engine.journal import JOURNAL_FILE

RUN_FILE = "run.json"
#: Where run directories go unless ``--runs-dir`` says otherwise.
DEFAULT_RUNS_DIR = ".osmosis/runs"


def new_run_dir(root: str | Path, name: str) -> Path:
    """A fresh run directory ``root/<timestamp>-<name>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def list_run_dirs(root: str | Path) -> list[Path]:
    """The run directories under ``root``, oldest first (their names start with a timestamp)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if (p / JOURNAL_FILE).exists() or (p / RUN_FILE).exists()
    )


def resolve_run_dir(ref: str | Path, root: str | Path) -> Path:
    """A run directory given as a path, or as a name under ``root``.

    ``last`` is the newest run there, ``last~1`` the one before it, ``last~N`` N runs back.
    """
    path = Path(ref)
    if path.is_dir():
        return path
    root = Path(root)
    back = _runs_back(str(ref))
    if back is not None:
        runs = list_run_dirs(root)
        if len(runs) > back:
            return runs[-1 - back]
        if not runs:
            raise FileNotFoundError(
                f"no earlier run in {root}: osmosis test keeps each run's directory there, so "
                "run it once first (without --resume or --retry-failed), or pass --runs-dir "
                "where your runs are"
            )
        raise FileNotFoundError(
            f"{ref!s} is {back} runs before the newest, but {root} holds {len(runs)} "
            f"run{'s' if len(runs) != 1 else ''}: use last~{len(runs) - 1} at most, or a path"
        )
    if (root / path).is_dir():
        return root / path
    raise FileNotFoundError(
        f"no run directory {str(ref)!r} (looked in . and {root}); pass the path printed as "
        "'Run directory:' by osmosis test, or 'last' (last~1 for the one before)"
    )


def _runs_back(ref: str) -> int | None:
    """How many runs before the newest ``last``, ``last~N`` names (``None``: neither)."""
    if ref == "last":
        return 0
    head, tilde, count = ref.partition("~")
    if head == "last" and tilde and count.isdigit():
        return int(count)
    return None


def write_run_file(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` describing the run."""
    (run_dir / RUN_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json`` (empty when missing)."""
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@dataclass(frozen=True)
class RunInfo:
    """What a run was, as its ``run.json`` says: what exports, comparisons and frames show."""

    #: The run's name (its directory's name), or a label for rollouts run outside a run.
    name: str
    run_dir: Path | None = None
    #: The agent: its ``module:attr``, or the URL of its rollout server.
    agent: str | None = None
    model: str | None = None
    dataset: str | None = None
    #: When it started (local time, ISO 8601).
    started: str | None = None
    attempts: int = 1
    pass_threshold: float = 1.0
    reward: str | None = None
    dataset_digest: str | None = None

    @classmethod
    def read(cls, run_dir: str | Path) -> RunInfo:
        """The run of ``run_dir`` (what its ``run.json`` has; the rest left unknown)."""
        run_dir = Path(run_dir)
        info = read_run_file(run_dir)
        urls = info.get("url") or []
        definition = info.get("definition") or {}
        return cls(
            name=run_dir.name,
            run_dir=run_dir,
            agent=info.get("module") or (urls[0] if urls else None),
            model=info.get("model"),
            dataset=info.get("dataset"),
            started=info.get("started"),
            attempts=int(info.get("attempts") or 1),
            pass_threshold=float(
                1.0 if info.get("pass_threshold") is None else info["pass_threshold"]
            ),
            reward=info.get("reward"),
            dataset_digest=definition.get("dataset_digest"),
        )


def dataset_digest(path: str | Path) -> str:
    """The SHA-256 of a dataset file's content (blocking: call it from a thread)."""
    with open(path, "rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class RunDefinition:
    """What a run is: the same rows of the same data through the same agent and model."""

    dataset_digest: str
    offset: int
    limit: int | None
    rows: str | None
    module: str | None
    urls: tuple[str, ...]
    model: str | None
    attempts: int

    @classmethod
    def of(cls, config: EngineConfig, digest: str) -> RunDefinition:
        """The definition of a run of ``config`` over a dataset whose content is ``digest``."""
        selection = config.selection
        return cls(
            dataset_digest=digest,
            offset=selection.offset,
            limit=selection.limit,
            rows=None if selection.rows is None else format_row_spec(selection.rows, sys.maxsize),
            module=config.module,
            urls=config.urls,
            model=config.model,
            attempts=config.attempts,
        )

    def to_json(self) -> dict[str, Any]:
        """Its form in ``run.json``."""
        return {**asdict(self), "urls": list(self.urls)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunDefinition:
        """Read it back from ``run.json``."""
        return cls(**{**data, "urls": tuple(data.get("urls") or ())})

    def differences(self, other: RunDefinition) -> list[str]:
        """Each field where ``other`` differs from this one: ``name: this -> other``."""
        found = []
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if mine == theirs:
                continue
            if item.name == "dataset_digest":
                found.append("dataset: its content changed (another file, or this one edited)")
            else:
                found.append(f"{item.name}: {_shown(mine)} -> {_shown(theirs)}")
        return found


def run_record(
    config: EngineConfig, definition: dict[str, Any], **selection: Any
) -> dict[str, Any]:
    """What ``run.json`` records of a run: its options, what defines it, and ``selection``
    (the rows as they were asked for: ``limit``, ``offset``, ``rows``)."""
    assert config.dataset is not None
    return {
        "definition": definition,
        "module": config.module,
        "url": list(config.urls),
        "dataset": str(Path(config.dataset).resolve()),
        "model": config.model,
        **selection,
        "attempts": config.attempts,
        "max_turns": config.max_turns,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "reward": config.reward,
        "pass_threshold": config.pass_threshold,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def start_run(config: EngineConfig, root: str | Path = DEFAULT_RUNS_DIR) -> Path:
    """A new run directory for a run of ``config``, with its ``run.json`` (blocking).

    What the workbench's dataset screen journals each batch into, as ``osmosis test`` does.
    """
    assert config.dataset is not None
    definition = RunDefinition.of(config, dataset_digest(config.dataset)).to_json()
    run_dir = new_run_dir(root, Path(config.dataset).stem)
    write_run_file(run_dir, run_record(config, definition, rows=definition["rows"]))
    return run_dir


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    return "none" if value is None else str(value)
