"""core/ knows nothing of the UI (docs/architecture.md): checked statically and at run time."""

import ast
import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = ("textual", "rich", "cockpit")


def test_core_sources_import_no_ui():
    for path in (REPO / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in FORBIDDEN, f"{path.relative_to(REPO)} imports {n}"


def test_importing_and_running_core_loads_no_ui_module():
    code = (
        "import sys, core.train, core.data, core.evaluate, core.report, core.runtime\n"
        "from core.train import parse_args\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"core pulled in UI modules: {r.stdout} {r.stderr}"
