"""The import layering of docs/ARCHITECTURE.md, enforced: what each part of the package may import.

Read from the source (every import statement, at module level or inside functions) and checked at run time
(importing the core, the training step and the tools leaves TensorFlow, torch and transformers unloaded).
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "electra_jax"
HEAVY = ("tensorflow", "tensorflow_datasets", "torch", "transformers")

# Lowest first; a module may import its own layer and the layers below. The most specific prefix wins
# (finetune.__main__ is a tool, the rest of finetune a library). docs/ARCHITECTURE.md draws this table.
LAYERS = (
    ("foundation", ("config", "tree_paths", "cli")),
    ("model", ("modeling", "attention", "splash", "flash", "objective", "optim", "flops")),
    ("training system", ("train_state", "sharding", "checkpoints", "orbax_logs", "metrics_writer", "data",
                         "safeguards")),
    ("libraries", ("checkpoint_formats", "finetune", "convert", "corpus")),
    ("tools", ("pretrain", "predict", "build_vocab", "build_data", "benchmark", "plot", "demo_corpus",
               "profile_summary", "experiments", "finetune.__main__", "convert.cli", "convert.__main__",
               "corpus.__main__")),
)
CORE = ("foundation", "model", "training system")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{alias.name}" for alias in node.names]
                                     if node.module.startswith("electra_jax") else [])
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer():
    missing = [_module_name(p) for p in MODULES if _layer(_module_name(p)) is None]
    assert not missing, f"add these modules to the layer table (tests/test_architecture.py, docs/ARCHITECTURE.md): " \
                        f"{missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_stay_in_their_layer(path):
    module = _module_name(path)
    layer = _layer(module)
    if layer is None:
        pytest.skip(f"{module} has no layer yet (test_every_module_has_a_layer names it)")
    for name, line, _ in _imports(path):
        if not name.startswith("electra_jax."):
            continue
        target = name[len("electra_jax."):]
        target_layer = _layer(target)
        if target_layer is None:  # `from electra_jax.x import function`: the module is the prefix
            continue
        assert target_layer <= layer, (
            f"electra_jax/{path.relative_to(PACKAGE)}:{line} ({LAYERS[layer][0]}) imports electra_jax.{target} "
            f"({LAYERS[target_layer][0]}), a layer above it")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_heavy_frameworks_load_only_inside_functions(path):
    """TensorFlow, TFDS, torch and transformers are never imported at module level in the package."""
    for name, line, top_level in _imports(path):
        if name.split(".")[0] in HEAVY:
            assert not top_level, f"electra_jax/{path.relative_to(PACKAGE)}:{line} imports {name} at module level"


@pytest.mark.parametrize("path", [p for p in MODULES if _layer(_module_name(p)) is not None
                                  and LAYERS[_layer(_module_name(p))][0] in CORE], ids=lambda p: _module_name(p))
def test_the_core_never_imports_torch_or_transformers(path):
    for name, line, _ in _imports(path):
        assert name.split(".")[0] not in ("torch", "transformers"), \
            f"electra_jax/{path.relative_to(PACKAGE)}:{line} imports {name}: torch belongs to convert/ and benchmarks/"


def test_modules_fit_in_a_head():
    long = {str(p.relative_to(REPO)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"split these modules by concern (over 600 lines): {long}"


IMPORT_EVERYTHING = r"""
import importlib, json, sys
tools = ["electra_jax.pretrain", "electra_jax.finetune", "electra_jax.finetune.__main__", "electra_jax.convert",
         "electra_jax.convert.cli", "electra_jax.predict", "electra_jax.build_vocab", "electra_jax.build_data",
         "electra_jax.benchmark", "electra_jax.plot", "electra_jax.demo_corpus", "electra_jax.checkpoint_formats",
         "electra_jax.train_state", "electra_jax.objective", "electra_jax.data.inputs", "electra_jax.data.records",
         "electra_jax.data.token_corpus", "electra_jax.profile_summary", "electra_jax.corpus.__main__",
         "electra_jax.convert.__main__", "electra_jax.experiments.compute_efficiency",
         "electra_jax.experiments.finetuning", "electra_jax.experiments.bundle", "electra_jax.experiments.gpu_plan"]
for name in tools:
    importlib.import_module(name)
from absl import flags
defined = sorted(set(flags.FLAGS) - BEFORE)
from electra_jax import pretrain
pretrain.define_flags()  # works after every tool was imported
print(json.dumps({"heavy": sorted(m for m in ("tensorflow", "torch", "transformers", "tensorflow_datasets")
                                  if m in sys.modules), "defined_at_import": defined}))
"""


def test_every_tool_imports_side_by_side_without_heavy_frameworks():
    """Importing every tool defines no flag and loads no TensorFlow/torch; a notebook can then define any tool's
    flags (`from electra_jax import finetune, pretrain; pretrain.define_flags()`)."""
    libraries = "import absl.app, absl.logging, orbax.checkpoint\n"  # they define their own flags on import
    code = libraries + "from absl import flags\nBEFORE = set(flags.FLAGS)\n" + IMPORT_EVERYTHING
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "defined_at_import": []}
