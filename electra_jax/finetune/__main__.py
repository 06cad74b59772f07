"""`python -m electra_jax.finetune --config=configs/finetune.py:TASK[,SIZE] --workdir=DIR [--init=CKPT]`."""

from __future__ import annotations

import json
import sys

from absl import app, flags

from electra_jax import cli


def define_flags() -> None:
    """Defines this tool's flags (only when it runs as a program, so every tool imports side by side)."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "configs/finetune.py:TASK[,SIZE]", lock_config=False)
    flags.DEFINE_string("workdir", None, "output folder (results.json, metrics, checkpoints, final parameters); "
                        "rerunning with the same folder resumes")
    flags.DEFINE_string("init", None, "electra_jax checkpoint, HF folder, `convert to_hf` output or TF checkpoint "
                        "to start from; omit to train from scratch")
    flags.DEFINE_bool("multihost", None, "call jax.distributed.initialize() (TPU pods, Slurm, several GPU hosts). "
                      "Default: only when JAX_COORDINATOR_ADDRESS is set")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if f.config is None or f.workdir is None:
        raise app.UsageError("--config=configs/finetune.py:TASK and --workdir=DIR are required")
    from electra_jax import sharding
    from electra_jax.finetune.train import train_and_evaluate

    sharding.initialize_distributed(f.multihost)
    results = train_and_evaluate(f.config, f.workdir, f.init)
    if results.get("preempted"):
        print(json.dumps({"task": results["task"], "preempted": True}), file=sys.stdout)
        sys.exit(cli.EXIT_PREEMPTED)  # saved; the same command resumes (what schedulers rerun on)
    print(json.dumps({"task": results["task"], "best": results["best"]}), file=sys.stdout)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
