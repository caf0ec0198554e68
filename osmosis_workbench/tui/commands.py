"""The command palette (ctrl+p): every key of the screen as a command, and the workbench's own.

Textual's palette asks the providers of the app (``WorkbenchApp.COMMANDS``) and of the screen
it was opened on (``Screen.COMMANDS``). Each screen has one provider, a ``ScreenCommands``
that lists the keys that work there now (the focused pane's, the screen's, the app's) with
their keys beside them, plus what only that screen offers (the debugger's finer copies, the
dataset's filters). ``WorkbenchCommands`` adds what no key does: step row N, switch the model,
open or compare runs. Matching is Textual's fuzzy matcher on the name; the help text matches
too, ranked lower, so "release" finds "Next".
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

if TYPE_CHECKING:
    from osmosis_workbench.engine.config import EngineConfig

#: Binding actions that move within a pane: keys everyone knows, noise in the palette.
_NAVIGATION = ("cursor_", "scroll_", "page_", "first", "last", "select", "command_palette")
#: How many runs the palette lists (newest first).
_RUNS_LISTED = 20
#: A score for a match found only in the help text: below any match of the name.
_HELP_WEIGHT = 0.4


@dataclass(frozen=True)
class PaletteCommand:
    """One palette entry: its name, a line of help, what it runs, and its key if it has one."""

    name: str
    help: str
    run: Callable[[], Any]
    key: str = ""

    def display(self, name: Content) -> Content:
        """``name`` (highlighted as matched) with the key after it, dimmed."""
        return name + Content.styled(f"  {self.key}", "dim") if self.key else name


class CommandsProvider(Provider):
    """Lists ``commands()``, and fuzzy-matches them (and ``typed(query)``) against a query."""

    async def startup(self) -> None:
        self._commands = await self.commands()

    async def commands(self) -> list[PaletteCommand]:
        """The commands this provider offers now."""
        return []

    def typed(self, query: str) -> list[PaletteCommand]:
        """Commands built from what was typed (``row 12``): offered as typed."""
        return []

    async def discover(self) -> Hits:
        for command in self._commands:
            yield DiscoveryHit(
                command.display(Content(command.name)),
                command.run,
                text=command.name,
                help=command.help,
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.typed(query):
            yield Hit(1.0, command.display(Content(command.name)), command.run, command.name,
                      command.help)  # fmt: skip
        for command in self._commands:
            score = matcher.match(command.name)
            shown = matcher.highlight(command.name) if score else Content(command.name)
            if not score and command.help:
                score = matcher.match(command.help) * _HELP_WEIGHT
            if score > 0:
                yield Hit(score, command.display(shown), command.run, command.name, command.help)


class ScreenCommands(CommandsProvider):
    """The keys that work on this screen now, as commands; subclasses add the screen's own."""

    async def commands(self) -> list[PaletteCommand]:
        return [*self.key_commands(), *self.screen_commands()]

    def key_commands(self) -> list[PaletteCommand]:
        """Each described, enabled binding of the focused pane, the screen and the app."""
        app, screen = self.app, self.screen
        found: dict[tuple[int, str], PaletteCommand] = {}
        for node, binding, enabled, tooltip in screen.active_bindings.values():
            # Only the workbench's own keys (all have an id): Textual's focus and copy keys
            # are not commands; nor are the keys that move within a pane.
            if not enabled or binding.id is None or binding.action.startswith(_NAVIGATION):
                continue
            key = (id(node), binding.action)
            if key in found:  # several keys for one action: the first one names it
                continue
            name = binding.description
            if binding.group is not None:  # "Dataset" reads better as "Dataset screen"
                name = f"{name} screen"
            found[key] = PaletteCommand(
                name,
                tooltip or "",
                functools.partial(app.run_action, binding.action, node),
                app.get_key_display(binding),
            )
        return list(found.values())

    def screen_commands(self) -> Iterable[PaletteCommand]:
        """What this screen offers beyond its keys (subclasses)."""
        return ()


# ---- the workbench's own commands ---------------------------------------------------------------

_ROW_QUERY = re.compile(r"^\s*(?:row\s*)?(\d+)\s*$", re.IGNORECASE)
_MODEL_QUERY = re.compile(r"^\s*model[:\s]+(\S+)\s*$", re.IGNORECASE)


def model_choices(
    config: EngineConfig, environ: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(``--model`` spec, why it is offered) for the models this project can run with now.

    The recorded cassettes and answer scripts next to the dataset and the agent, yourself,
    and the hosted models whose API key is set. Blocking (it lists folders): a thread.
    """
    environ = os.environ if environ is None else environ
    folders = []
    if config.dataset:
        folders.append(Path(config.dataset).resolve().parent)
    if config.module:
        parts = config.module.partition(":")[0].split(".")
        folders.append(Path(config.search_path).resolve().joinpath(*parts[:-1]))
    choices: dict[str, str] = {}
    for folder in dict.fromkeys(folders):
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else ():
            shown = _shown_path(path)
            if "cassette" in path.name:
                choices[f"replay:{shown}"] = "the answers this cassette recorded, offline"
            elif "answer" in path.name or "script" in path.name:
                choices[f"script:{shown}"] = "answers written per row and turn, offline"
    if config.record and Path(config.record).is_file():
        choices[f"replay:{config.record}"] = "the cassette this session records"
    choices["human"] = "you write each answer, tool calls checked against their schemas"
    for variable, spec in (
        ("OPENAI_API_KEY", "openai/gpt-4o-mini"),
        ("ANTHROPIC_API_KEY", "anthropic/claude-3-5-haiku-latest"),
        ("GEMINI_API_KEY", "gemini/gemini-2.0-flash"),
    ):
        if environ.get(variable):
            choices[spec] = f"live (${variable} is set): any model of the provider, typed"
    return list(choices.items())


def _shown_path(path: Path) -> str:
    """``path`` relative to here when it is under here (shorter in the palette)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class WorkbenchCommands(CommandsProvider):
    """What no key does: step row N, switch the model, open or compare runs."""

    async def commands(self) -> list[PaletteCommand]:
        from osmosis_workbench.tui.app import WorkbenchApp

        app = self.app
        if not isinstance(app, WorkbenchApp):
            return []
        from osmosis_workbench.engine.runs import DEFAULT_RUNS_DIR, list_run_dirs

        runs, models = await asyncio.gather(
            asyncio.to_thread(list_run_dirs, DEFAULT_RUNS_DIR),
            asyncio.to_thread(model_choices, app.config),
        )
        found = [
            PaletteCommand(
                f"Model: {spec}",
                f"Open the workspace again with --model {spec}: {why}",
                functools.partial(app.switch_model, spec),
            )
            for spec, why in models
            if spec != app.config.model
        ]
        from osmosis_workbench.tui.messages import RunsRequested

        if len(runs) >= 2:
            found.append(
                PaletteCommand(
                    f"Compare runs: {runs[-2].name} → {runs[-1].name}",
                    "The newest run against the one before it (osmosis compare last~1 last)",
                    functools.partial(app.post_message, RunsRequested(runs[-2], runs[-1])),
                )
            )
        found.append(
            PaletteCommand(
                "Compare runs…",
                "The runs screen: pick two runs (a, b) and see what changed",
                functools.partial(app.post_message, RunsRequested()),
            )
        )
        for run in reversed(runs[-_RUNS_LISTED:]):
            found.append(
                PaletteCommand(
                    f"Open run: {run.name}",
                    "Its rollouts, each opening its trajectory",
                    functools.partial(app.post_message, RunsRequested(None, run)),
                )
            )
        return found

    def typed(self, query: str) -> list[PaletteCommand]:
        from osmosis_workbench.tui.app import WorkbenchApp

        app = self.app
        if not isinstance(app, WorkbenchApp):
            return []
        row = _ROW_QUERY.match(query)
        if row:
            index = int(row[1])
            return [
                PaletteCommand(
                    f"Step row {index}",
                    f"Run dataset row {index} in the debugger, pausing at each LLM answer",
                    functools.partial(app.open_debugger, index),
                ),
                PaletteCommand(
                    f"Show row {index} in the dataset",
                    "The dataset screen, its cursor on the row",
                    functools.partial(app.show_dataset_row, index),
                ),
            ]
        model = _MODEL_QUERY.match(query)
        if model:
            spec = model[1]
            return [
                PaletteCommand(
                    f"Switch the model to {spec}",
                    "Open the workspace again with --model "
                    f"{spec} (openai/NAME, provider/NAME, replay:FILE, script:FILE, human)",
                    functools.partial(app.switch_model, spec),
                )
            ]
        return []
