r"""ELECTRA pre-training: the absl main and `train_and_evaluate(config, workdir)`.

  python -m electra_jax.pretrain --config=configs/pretrain.py:small --workdir=/tmp/electra_small \
      --config.data.train_files='data/pretrain_128/*.tfrecord*' --config.data.eval_files='data/eval_128/*'

The main only parses flags and calls `train_and_evaluate`, which notebooks can call too. Rerunning the same
command resumes from the latest checkpoint in WORKDIR/checkpoints (params, optimizer state, step, PRNG key and
every host's input position), so a resumed run continues exactly where the stopped one was.

Multi-host: pass --multihost (the launch scripts do), or set JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES
and JAX_PROCESS_ID); either makes the main call `jax.distributed.initialize()` before anything touches JAX.
Without them the run is single-process and unchanged. On TPU pods and under Slurm, --multihost alone is
enough (JAX detects the cluster); on CPU the gloo collectives are selected.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from electra_jax import checkpoints as checkpoints_lib
from electra_jax import cli, safeguards
from electra_jax import config as config_lib
from electra_jax import sharding as sharding_lib
from electra_jax import train_state as train_state_lib
from electra_jax.data.inputs import EVAL_SEED_OFFSET, check_eval_files, make_input
from electra_jax.data.records import apply_records_metadata
from electra_jax.metrics_writer import MetricsWriter, Progress, peak_flops_per_device, with_progress
from electra_jax.safeguards import NonFiniteLossError  # noqa: F401  (re-exported: pretrain.NonFiniteLossError)



# -------------------------------------------------------------------------------------------------------
# The loop


def _flops_per_step(config) -> float | None:
    try:
        from electra_jax.flops import model_flops_per_step

        return float(model_flops_per_step(config, config.train.batch_size, config.data.max_seq_length))
    except Exception as e:  # MFU is informative only; never stop training over it
        logging.warning("no model FLOP count (%s): mfu is reported as null", e)
        return None


def _peak_flops(config) -> float | None:
    peak = float(config.train.get("peak_tflops_per_device", 0) or 0) * 1e12
    if not peak:
        peak = peak_flops_per_device(jax.devices()[0].device_kind) or 0.0
    return peak * jax.device_count() if peak else None


def eval_batches(trainer, config, per_host_batch_size: int):
    """The eval pass's (global batch, rng) pairs: config.train.eval_steps batches from the start of the eval
    input, with the same rngs (so the same masks and samples) at every eval; nothing without eval files."""
    eval_input = make_input(config, split="eval", per_host_batch_size=per_host_batch_size)
    if eval_input is None:
        return
    from electra_jax.data.pipeline import to_global_batch

    base = jax.random.PRNGKey(config.train.seed + EVAL_SEED_OFFSET)
    for i in range(config.train.eval_steps):
        host_batch = next(eval_input)
        safeguards.check_token_ids(host_batch, config.model.vocab_size, where=f"eval batch {i} "
                                   f"(config.data.eval_files = {config.data.eval_files!r})")
        batch = to_global_batch(host_batch, trainer.batch_sharding)
        yield batch, jax.device_put(np.asarray(jax.random.fold_in(base, i)), trainer.replicated)


def evaluate(trainer, compiled, params, config, per_host_batch_size: int) -> dict[str, float]:
    """config.train.eval_steps batches from the start of the eval input, same masks every time."""
    batches = with_progress(eval_batches(trainer, config, per_host_batch_size), config.train.eval_steps,
                            config.train.progress, "eval", enabled=jax.process_index() == 0)
    return train_state_lib.accumulate_eval(compiled.eval_step(params, batch, rng) for batch, rng in batches)


def _restore_or_init(config, trainer, checkpointer, train_input):
    """The state to start from: the newest readable checkpoint, else checkpoint.init, else a fresh init."""
    def check_config(saved: dict, step_dir) -> None:
        safeguards.check_resumable(saved, config, step_dir)

    restored = checkpointer.restore_latest(trainer.abstract_state(), check_config,
                                           on_corrupt=config.checkpoint.on_corrupt)
    if restored is not None:
        step, state, data_states, _ = restored
        position = data_states.get(jax.process_index())
        try:
            if position is None:
                raise ValueError(f"no input position for process {jax.process_index()}")
            train_input.set_state(position)
        except ValueError as e:
            logging.warning("the input position could not be restored (%s); the data stream restarts", e)
        logging.info("resumed from step %d of %s", step, checkpointer.directory)
        if config.checkpoint.reset_optimizer:
            state = trainer.reset_optimizer(state)
            logging.info("checkpoint.reset_optimizer: the optimizer state starts afresh at step %d", step)
        return state, step
    if config.checkpoint.init:
        from electra_jax.checkpoint_formats import open_checkpoint

        params = open_checkpoint(config.checkpoint.init, flag="--config.checkpoint.init").params
        state = trainer.state_from_params(params, config.train.seed)
        logging.info("continued pre-training from %s (fresh optimizer state, step 0)", config.checkpoint.init)
        return state, None
    return trainer.init_state(config.train.seed), None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Pre-trains per `config`, writing checkpoints, metrics.jsonl and TensorBoard events under `workdir`.

    Returns a summary: the final step, the last train metrics, the last eval metrics, whether the run stopped
    early on a preemption signal (and which: `stop_signal`), and how many updates were skipped.
    """
    config = config_lib.finalize(config)
    config = apply_records_metadata(config)
    # A run that fails before it writes anything (a glob that matches nothing, a compile error) leaves no empty
    # workdir behind.
    with safeguards.new_workdir(workdir) as root:  # absolute, or gs://... kept as it is
        return _train_and_evaluate(config, str(root))


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    from electra_jax.data.pipeline import to_global_batch

    is_main = jax.process_index() == 0

    mesh = sharding_lib.make_mesh(config.mesh)
    sharding_lib.check_batch_size(config.train.batch_size, mesh)
    per_host_batch_size = config.train.batch_size // jax.process_count()
    m = config.model
    logging.info("model %s: %d layers, hidden %d, embedding %d, %d heads, generator hidden %d, vocab %d; objective "
                 "%s; %d steps of %d x %d tokens", config.get("size", "custom"), m.num_layers, m.hidden_size,
                 m.embedding_size, m.num_heads, m.generator_hidden_size, m.vocab_size, config.objective.kind,
                 config.train.steps, config.train.batch_size, config.data.max_seq_length)
    logging.info("mesh %s over %d devices (%d processes); sharding rules %s; global batch %d (%d per host)",
                 dict(mesh.shape), mesh.size, jax.process_count(), config.sharding.rules, config.train.batch_size,
                 per_host_batch_size)
    # The inputs first: a glob that matches nothing fails here, before a compile or an empty checkpoints/.
    train_input = make_input(config, split="train", per_host_batch_size=per_host_batch_size)
    check_eval_files(config)
    trainer = train_state_lib.Trainer(config, mesh)
    checkpointer = checkpoints_lib.Checkpointer(os.path.join(workdir, checkpoints_lib.CHECKPOINTS_SUBDIR),
                                                keep=config.checkpoint.keep, async_save=config.checkpoint.async_save)
    state, latest = _restore_or_init(config, trainer, checkpointer, train_input)
    start_step = int(jax.device_get(state.step))
    total_steps = config.train.steps

    compiled = trainer.compile(include_eval=config.train.eval_every > 0)
    # The step's key argument is a separate copy of state.rng: the state is donated, so passing its own
    # buffer as a second argument would alias a donated buffer.
    rng = jax.device_put(np.asarray(jax.device_get(state.rng)), trainer.replicated)
    writer = MetricsWriter(workdir, enabled=is_main)
    progress = Progress(config.train.progress, start_step, total_steps, config.train.log_every, enabled=is_main)
    watcher = checkpoints_lib.PreemptionWatcher(checkpointer)
    guard = safeguards.DivergenceGuard(checkpointer, max_skipped_updates=config.train.max_skipped_updates,
                                       learning_rate=config.optim.learning_rate)
    flops_per_step = _flops_per_step(config)
    peak = _peak_flops(config)
    tokens_per_step = config.train.batch_size * config.data.max_seq_length
    every = max(1, config.checkpoint.every_steps)
    last_saved = latest
    summary: dict[str, Any] = {"preempted": False, "stop_signal": None, "train": {}, "eval": {}}
    window = {"time": time.time(), "step": start_step}
    last_rates: dict[str, float | None] = {"steps_per_sec": 0.0, "tokens_per_sec": 0.0, "mfu": None}
    train_source = ("synthetic data" if config.data.synthetic
                    else f"config.data.train_files = {config.data.train_files!r}")

    def check_and_log(step: int, metrics) -> bool:
        """Checks step's metrics (raises when the run must stop), logs them; False when the update was skipped."""
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        applied = guard.check(step, host)
        host.pop("params_finite", None)
        summary["train"] = host
        if step % config.train.log_every == 0 or step == total_steps:
            now = time.time()
            steps = step - window["step"]
            if steps > 0:
                rate = steps / max(now - window["time"], 1e-9)
                last_rates.update(steps_per_sec=rate, tokens_per_sec=rate * tokens_per_step,
                                  mfu=flops_per_step * rate / peak if flops_per_step and peak else None)
            window.update(time=now, step=step)
            writer.write(step, {**host, **last_rates})
        progress.update(step, last_rates, host["loss"])
        return applied

    def run_eval(step: int) -> None:
        if config.data.eval_files and not config.data.synthetic:
            logging.info("eval at step %d: %d batches ...", step, config.train.eval_steps)
        metrics = evaluate(trainer, compiled, state.params, config, per_host_batch_size)
        if metrics:
            summary["eval"] = metrics
            writer.write(step, metrics, split="eval")
            logging.info("eval at step %d: %s", step, ", ".join(
                f"{k} {metrics[k]:.4f}" for k in ("loss", "mlm_accuracy", "disc_auc", "disc_accuracy") if k in metrics))
        window["time"] = time.time()  # eval time does not count against training throughput

    def save(step: int) -> None:
        checkpointer.save(step, state, data_states=checkpoints_lib.gather_host_json(train_input.get_state()),
                          config=config)

    if start_step == 0 and config.train.eval_every > 0 and start_step < total_steps:
        run_eval(0)  # the initial values make learning visible in the metrics
    pending = None
    save_due = False
    step = start_step
    finished = False
    try:
        while step < total_steps:
            checkpointer.poll()  # a failed background save stops the run now, not at the next save
            host_batch = next(train_input)
            safeguards.check_token_ids(host_batch, config.model.vocab_size,
                                       where=f"training batch of step {step + 1} ({train_source})")
            batch = to_global_batch(host_batch, trainer.batch_sharding)
            state, metrics = compiled.train_step(state, batch, rng)
            step += 1
            if pending is not None:  # one step late: the host waits on step-1 while step runs
                check_and_log(*pending)
            pending = (step, metrics)
            preempted = watcher.requested(step)
            save_due = save_due or step % every == 0 or step == total_steps or preempted
            if save_due:
                applied = check_and_log(*pending)  # never save a state whose metrics were not checked
                pending = None
                # A skipped update (max_skipped_updates > 0) postpones the save to the next applied one.
                if applied or preempted or step == total_steps:
                    save(step)
                    last_saved, save_due = step, False
            if config.train.eval_every > 0 and (step % config.train.eval_every == 0 or step == total_steps):
                if pending is not None:
                    check_and_log(*pending)
                    pending = None
                run_eval(step)
            if preempted:
                summary.update(preempted=True, stop_signal=watcher.received_signal)
                logging.warning("stopping at step %d after a preemption signal; checkpoint saved in %s; rerun the "
                                "same command to resume", step, checkpointer.directory)
                break
        if pending is not None:
            check_and_log(*pending)
        if last_saved != step and step > start_step:
            save(step)
        checkpointer.wait_until_finished()  # a failed last save is an error of this run
        finished = True
    finally:
        checkpointer.close(raise_errors=finished)
        watcher.restore_handlers()
        progress.close()
        writer.close()
    summary["step"] = step
    summary["skipped_updates"] = guard.total_skipped
    return summary


# -------------------------------------------------------------------------------------------------------
# absl main


def define_flags() -> None:
    """Defines this tool's flags (only when it runs as a program, so every tool imports side by side)."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "pre-training config file, e.g. configs/pretrain.py:small",
                                    lock_config=False)
    flags.DEFINE_string("workdir", None, "output folder: checkpoints/, metrics.jsonl, TensorBoard events; "
                        "a run resumes from the latest checkpoint here")
    flags.DEFINE_bool("multihost", None, "call jax.distributed.initialize() (multi-process runs: TPU pods, Slurm, "
                      "several GPU hosts). Default: only when JAX_COORDINATOR_ADDRESS is set")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    sharding_lib.initialize_distributed(flags.FLAGS.multihost)
    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    if summary["preempted"]:
        # A distinct status tells schedulers to run the same command again (launch/ scripts do); after
        # Ctrl-C / SIGINT the user asked to stop, so the status is the shell's usual 130 instead.
        interrupted = summary["stop_signal"] == signal.SIGINT
        code = cli.EXIT_INTERRUPTED if interrupted else cli.EXIT_PREEMPTED
        logging.warning("%s at step %d after saving a checkpoint: exit status %d (run the same command to resume)",
                        "interrupted" if interrupted else "preempted", summary["step"], code)
        sys.exit(code)
    logging.info("finished at step %d", summary["step"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
