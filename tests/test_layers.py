"""The package's two layers (docs/architecture.md §1): the library core never imports the training side, and no
module imports itself back through others — counting imports inside functions, since those run too.

The graph is read from the sources with `ast` (no import runs), relative imports resolved against the importing
module, `from pkg import name` counted as an edge to `pkg.name` when that is a module and to `pkg` otherwise.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = "metaprompt_hf"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# The library: a model, its adapters and their files, Hub I/O and the model card, the pipeline, and their leaves.
CORE = (
    "backbones",
    "modeling",
    "adapters",
    "hub",
    "inputs",
    "pipelines",
    "embedded",
    "constants",
    "utils",
    "validation",
    "plugins",
)
# What trains and evaluates: everything the core must never reach.
TRAINING = (
    "methods",
    "protocols",
    "training",
    "data",
    "meta",
    "episodes",
    "scoring",
    "evaluation",
    "metrics",
    "miniworld",
    "download",
    "export_dataset",
    "checkpoints",
    "convert",
    "compare",
    "stats",
)


def _module_names() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (a package is its `__init__`)."""
    names = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports anywhere in its file (top level, functions, TYPE_CHECKING blocks
    excluded: those never run)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body
            for node in ast.walk(stmt)
        }
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module attribute path
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _layer(module: str, layer: tuple[str, ...]) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in layer


def test_the_layer_sets_name_every_module() -> None:
    """A module added to the package is put in one layer here, so the checks below cover it."""
    unplaced = {
        m.split(".")[1]
        for m in _module_names()
        if m != PACKAGE and not _layer(m, CORE) and not _layer(m, TRAINING) and m.split(".")[1] != "testing"
    }
    assert not unplaced, f"modules in neither layer: {sorted(unplaced)}"


def test_core_imports_nothing_from_training() -> None:
    """Nor the package's root, which re-exports the core: a core module importing it closes a cycle."""
    graph = import_graph()
    bad = sorted(
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        if _layer(src, CORE)
        for dst in dsts
        if _layer(dst, TRAINING) or dst == PACKAGE
    )
    assert not bad, "core modules import the training side:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    """Depth-first search over the whole graph; the package's `__init__` re-exports are edges like any other."""
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    """The parser itself: a relative import inside a function is an edge (else the checks above prove little)."""
    graph = import_graph()
    assert f"{PACKAGE}.modeling.configuration_metaprompt" in graph[f"{PACKAGE}.modeling.modeling_metaprompt"]
    assert f"{PACKAGE}.backbones" in graph[f"{PACKAGE}.modeling.modeling_metaprompt"]
    # `from .. import miniworld` inside a function of protocols/run.py
    assert f"{PACKAGE}.miniworld" in graph[f"{PACKAGE}.protocols.run"]


_PREDICT = """
import json, sys
import torch
from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.testing import tiny_clip

clip, processor = tiny_clip(seed=0)
adapter = MetaPromptModel(clip, MetaPromptConfig(base_model_name_or_path=sys.argv[1]), processor)
adapter.save_pretrained(sys.argv[2])
model = MetaPromptModel.from_pretrained(sys.argv[2])
probs = model.predict(torch.rand(2, 3, 32, 32), ["red", "green", "blue"])
assert probs.shape == (2, 3), probs.shape
print(json.dumps(sorted(sys.modules)))
"""


def test_predicting_loads_no_training_module(tiny_clip_dir, tmp_path) -> None:
    """`import metaprompt_hf`, saving an adapter, `from_pretrained` and a prediction load neither the training side
    nor `datasets`, `evaluate` or `gradio` (transformers itself may import accelerate; that is not the package's
    doing)."""
    argv = [sys.executable, "-c", _PREDICT, tiny_clip_dir, str(tmp_path / "adapter")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.split(".")[0] in ("datasets", "evaluate", "gradio")]
    training = [m for m in loaded if m.startswith(PACKAGE + ".") and _layer(m, TRAINING)]
    assert not heavy and not training, f"loaded by predict: {heavy + training}"
