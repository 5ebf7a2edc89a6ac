"""The directions of knowledge, checked at run time (make lint checks them statically
with import-linter): core knows nothing of the UI; the run model, the collectors,
the checks and the supervisor load no display; the CLI loads nothing heavy until a
command needs it. Modules are found by globbing, so a new one is checked too."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

FORBIDDEN = ("textual", "rich", "cockpit")


def modules(package: str) -> list[str]:
    root = REPO / package.replace(".", "/")
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def loaded_after(imports: list[str], roots: tuple[str, ...]) -> list[str]:
    """Which modules under `roots` importing `imports` loads, in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"for m in {imports!r}: importlib.import_module(m)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in {roots!r}}}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return eval(r.stdout)  # a printed list of names


def test_core_sources_import_no_ui():
    paths = list((REPO / "core").rglob("*.py"))
    assert len(paths) > 10
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in FORBIDDEN, f"{path.relative_to(REPO)} imports {n}"


def test_importing_every_core_module_loads_no_ui_module():
    assert loaded_after(modules("core"), FORBIDDEN) == []


@pytest.mark.parametrize(
    "package", ["cockpit.collect", "cockpit.model", "cockpit.checks", "cockpit.wrap"]
)
def test_the_display_free_packages_load_no_display(package):
    mods = modules(package) + ["cockpit.session", "cockpit.supervisor", "cockpit.fmt"]
    assert loaded_after(mods, ("textual", "rich")) == []


def test_the_cli_and_the_checklists_load_no_torch_until_a_step_needs_it():
    """`cockpit --help`, `cockpit verify`, reading a checklist: none loads torch."""
    mods = ["cockpit.cli", "cockpit.commands.verify", "cockpit.checks.registry"]
    assert loaded_after(mods, ("torch", "textual")) == []
