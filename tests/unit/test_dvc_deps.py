"""``dvc.yaml`` lists every library module each stage runs, so editing one re-runs the stage.

The modules a stage runs are derived, not listed by hand: the stage's ``cmd`` names a CLI
subcommand; that command function's imports (and those of the ``cli`` helpers it calls and of
``cli``'s own module level), followed transitively through every ``newsrnn`` import in each module
reached (function-level imports included: lazy imports run when the stage runs), give the files.
A stage must list each of them under ``deps`` and must not list the package directory (a
directory dep re-runs every stage on any edit and hides which module matters).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from support import ROOT

SRC = ROOT / "src"
PKG = SRC / "newsrnn"


def module_file(name: str) -> Path | None:
    """The file of module ``newsrnn.x.y``, or None when it is not a module of the package."""
    base = SRC.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_modules(nodes: list[ast.AST]) -> set[str]:
    """``newsrnn`` modules imported anywhere inside ``nodes`` (``from newsrnn.nn import layers``
    counts ``newsrnn.nn.layers`` when that is a module)."""
    out: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                out.update(a.name for a in sub.names if a.name.startswith("newsrnn"))
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("newsrnn") and not sub.level:
                out.add(sub.module)
                out.update(f"{sub.module}.{a.name}" for a in sub.names if module_file(f"{sub.module}.{a.name}"))
    return out


def closure(start: set[str]) -> set[Path]:
    """Files of ``start`` and of everything they import, transitively, with their packages' __init__."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen)
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        tree = ast.parse(module_file(name).read_text())  # type: ignore[union-attr]
        todo.extend(imported_modules([tree]) - seen)
    return {module_file(n) for n in seen}  # type: ignore[misc]


def has_code(path: Path) -> bool:
    """False for a package ``__init__`` holding only a docstring and constants (nothing a stage runs)."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               and not (isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)) for n in body)


def command_modules(subcommand: str) -> set[Path]:
    """The library files ``newsrnn <subcommand>`` runs."""
    tree = ast.parse((PKG / "cli.py").read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    name = f"cmd_{subcommand.replace('-', '_')}"
    assert name in funcs, f"cli.py has no {name} for the DVC command `newsrnn {subcommand}`"
    reached, todo = set(), [name]
    while todo:  # cli helpers the command calls (_cfg, _read_lines, ...)
        fn = todo.pop()
        reached.add(fn)
        todo.extend(c.func.id for c in ast.walk(funcs[fn]) if isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Name) and c.func.id in funcs and c.func.id not in reached)
    files = closure(imported_modules([*top, *(funcs[f] for f in reached)]))
    return {f for f in files if f.name != "__init__.py" or has_code(f)}


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_body(stage: dict) -> dict:
    return stage["do"] if "foreach" in stage else stage


def missing_deps(stage: dict) -> list[str]:
    """Library files the stage runs that its deps do not list."""
    body = stage_body(stage)
    argv = body["cmd"].split()
    assert argv[0] == "newsrnn", body["cmd"]
    listed = {ROOT / d for d in body.get("deps", [])}
    needed = command_modules(argv[1])
    return sorted(str(f.relative_to(ROOT)) for f in needed - listed)


@pytest.mark.parametrize("name", list(stages()))
def test_a_stage_lists_every_module_it_runs(name: str) -> None:
    assert missing_deps(stages()[name]) == [], f"dvc.yaml stage {name}: add these to deps"


@pytest.mark.parametrize("name", list(stages()))
def test_a_stage_lists_files_not_the_package_or_stale_paths(name: str) -> None:
    for dep in stage_body(stages()[name]).get("deps", []):
        path = ROOT / dep
        if dep.startswith("src/"):
            assert path.is_file(), f"dvc.yaml stage {name}: dep {dep} is not a file of the library"


def test_the_derivation_follows_lazy_and_package_imports() -> None:
    # train imports its helpers inside the function; nn.trainable imports nn.networks lazily,
    # which imports nn.layers at module level: all must be found.
    files = {str(f.relative_to(ROOT)) for f in command_modules("train")}
    for f in ("src/newsrnn/train.py", "src/newsrnn/nn/trainable.py", "src/newsrnn/nn/networks.py",
              "src/newsrnn/nn/layers.py", "src/newsrnn/fit.py", "src/newsrnn/data.py",
              "src/newsrnn/config.py", "src/newsrnn/errors.py"):
        assert f in files
    assert "src/newsrnn/tune.py" not in files and "src/newsrnn/nn/__init__.py" not in files
    # The old dvc.yaml's evaluate stage missed modules it runs; the check names them.
    old = {"foreach": "${models}", "do": {"cmd": "newsrnn evaluate ${item}",
                  "deps": ["src/newsrnn/evaluate.py", "src/newsrnn/serving.py"]}}
    assert {"src/newsrnn/predictor.py", "src/newsrnn/modelio.py", "src/newsrnn/data.py"} <= set(missing_deps(old))


def test_no_import_cycle_between_library_modules() -> None:
    """No module reaches itself through imports, lazy ones included (evaluate and ensemble once did)."""
    graph = {}
    for f in PKG.rglob("*.py"):
        name = ".".join(("newsrnn", *f.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")
        graph[name] = {m for m in imported_modules([ast.parse(f.read_text())]) if module_file(m)} - {name}

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a in reaches(b) and a < b)
    assert cycles == []
