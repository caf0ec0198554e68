"""server_core.loader: "module:attr" references, with one precise message per failure."""

from __future__ import annotations

import sys
import textwrap

import pytest

from server_core import ImportFromStringError, RolloutAgentLoop, import_from_string, load_agent_loop


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throw-away project folder; sys.path and sys.modules are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    (tmp_path / "ldr_agent.py").write_text(
        textwrap.dedent(
            """
            from server_core import RolloutAgentLoop


            class Agent(RolloutAgentLoop):
                name = "ldr"

                def get_tools(self, request):
                    return []

                async def run(self, ctx):
                    return ctx.complete([])


            agent_loop = Agent()
            not_an_agent = 42
            nested = type("Holder", (), {"inner": agent_loop})
            """
        )
    )
    (tmp_path / "ldr_broken_dep.py").write_text("import ldr_no_such_dependency\n")
    (tmp_path / "ldr_raises.py").write_text("1 / 0\n")
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("ldr_"):
            del sys.modules[name]


def test_loads_an_agent_loop_from_the_search_path(project):
    agent = load_agent_loop("ldr_agent:agent_loop", search_path=project)
    assert isinstance(agent, RolloutAgentLoop)
    assert agent.name == "ldr"


def test_dotted_attributes(project):
    agent = import_from_string("ldr_agent:nested.inner", search_path=project)
    assert agent.name == "ldr"


def test_loads_the_sample_project_from_the_repository_root():
    agent = load_agent_loop("sample_project.server:agent_loop")
    assert agent.name == "calculator"


@pytest.mark.parametrize("ref", ["ldr_agent", "ldr_agent:", ":agent_loop", ""])
def test_bad_format(project, ref):
    with pytest.raises(ImportFromStringError, match='must be in format "<module>:<attribute>"'):
        import_from_string(ref, search_path=project)


def test_module_not_found(project):
    with pytest.raises(ImportFromStringError, match='Could not import module "ldr_nowhere"'):
        import_from_string("ldr_nowhere:x", search_path=project)


def test_module_whose_import_fails_on_a_missing_dependency(project):
    with pytest.raises(ImportFromStringError, match='imports "ldr_no_such_dependency"'):
        import_from_string("ldr_broken_dep:x", search_path=project)


def test_module_that_raises_on_import(project):
    with pytest.raises(ImportFromStringError, match="raised ZeroDivisionError"):
        import_from_string("ldr_raises:x", search_path=project)


def test_attribute_missing(project):
    with pytest.raises(ImportFromStringError, match='Attribute "missing" not found'):
        import_from_string("ldr_agent:missing", search_path=project)


def test_a_class_gets_a_hint_to_export_an_instance(project):
    with pytest.raises(ImportFromStringError, match="export an instance"):
        load_agent_loop("ldr_agent:Agent", search_path=project)


def test_something_else_is_refused(project):
    with pytest.raises(ImportFromStringError, match="not a RolloutAgentLoop instance"):
        load_agent_loop("ldr_agent:not_an_agent", search_path=project)
