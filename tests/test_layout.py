"""The package's layout: the import contracts in pyproject.toml hold, the README's tree is the code's,
and nothing under valence/ parses the command line."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE_LINE = re.compile(r"^(?P<indent> *)(?P<name>[\w.\-]+/?)(?:\s+.*)?$")


def readme_tree():
    """Return the paths the README's annotated tree names, from the fenced block under '## Layout'."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1]
    block = section.split("```", 2)[1]
    paths, parents = [], []
    for line in block.splitlines()[1:]:
        match = TREE_LINE.match(line)
        if not match:
            continue
        depth = len(match["indent"]) // 2
        parents = parents[:depth]
        name = match["name"]
        path = "/".join([*parents, name.rstrip("/")])
        paths.append(path + ("/" if name.endswith("/") else ""))
        if name.endswith("/"):
            parents.append(name.rstrip("/"))
    return paths


def test_the_import_contracts_hold():
    # In a process of its own: import-linter configures logging, which would silence the loggers of other tests.
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_readme_tree_names_every_module_and_only_modules_that_exist():
    named = readme_tree()
    assert len(named) > 40  # the block was found and parsed
    user_folders = {"data/", "models/"}  # git-ignored: a clean clone has neither until a run makes them
    missing = [path for path in named if not (ROOT / path).exists() and path not in user_folders]
    assert missing == []
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "valence").rglob("*.py") if path.name != "__init__.py"}
    assert modules - set(named) == set(), "modules the README's tree leaves out"
    packages = {str(path.parent.relative_to(ROOT)) + "/" for path in (ROOT / "valence").rglob("__init__.py")}
    assert packages - set(named) == set(), "packages the README's tree leaves out"


def test_readme_tree_parsing_follows_indentation(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n## Layout\n```text\na.py        one\npkg/        two\n  b.py      three\n"
                      "  sub/\n    c.py\nd/\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert readme_tree() == ["a.py", "pkg/", "pkg/b.py", "pkg/sub/", "pkg/sub/c.py", "d/"]


@pytest.mark.parametrize("path", sorted((ROOT / "valence").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_of_the_package_parses_the_command_line(path):
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "argparse" not in imported
    argv = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "argv"]
    assert argv == []
