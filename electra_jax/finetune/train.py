"""Fine-tuning on the training system: `train_and_evaluate(config, workdir, init=None)`.

One loop for every task kind. The task (electra_jax.finetune.tasks) supplies reading, featurization, the head,
the loss and scoring; `FinetuneProgram` wraps them as a `train_state.Program`, so fine-tuning runs on the same
`Trainer` as pre-training: one mesh over every device and host (data-parallel: each host feeds its rows of
every global batch), explicit shardings, donated state, AOT-compiled steps (once per task shape, reused by every
seed), orbax checkpoints, metrics.jsonl + TensorBoard through MetricsWriter, and local or gs:// workdirs.

Several seeds train one after another, or, with `train.vmap_seeds`, together: one state stacked over the seeds and
the steps vmapped over it (`Trainer.compile(seeds=K)`), so K seeds cost one launch sequence per step (what a small
model on a GPU is bound by) and K times the memory of the state. Each seed computes what it would alone (its own
initialization, data order and dropout keys), up to the rounding of batched matmuls.

Resume: each seed checkpoints at the end of every epoch (unless `checkpoint.every_epoch` is off), every
`checkpoint.every_steps` and on SIGTERM, under RUN/checkpoints, RUN being the workdir (one seed) or
WORKDIR/seed_S (vmapped seeds: their stacked state under WORKDIR/seeds_S1_S2_.../checkpoints). The data order of an
epoch is a pure function of (seed, epoch) and the dropout key of a step is fold_in(state.rng, step), so rerunning the
same command after a preemption continues exactly where the stopped run was; finished seeds are not retrained.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging

from electra_jax import checkpoints as checkpoints_lib
from electra_jax import config as config_lib
from electra_jax import modeling, optim
from electra_jax import sharding as sharding_lib
from electra_jax import train_state as train_state_lib
from electra_jax.data.pipeline import to_global_batch
from electra_jax.data.tokenization import strips_accents
from electra_jax.finetune import tasks as tasks_lib
from electra_jax.finetune.model import FinetuneModel, apply_checkpoint_model, merge_pretrained
from electra_jax.finetune.task import DataFormatError, Task, TaskData
from electra_jax.metrics_writer import MetricsWriter, Progress, with_progress
from electra_jax.safeguards import (NonFiniteLossError, check_finetune_position, check_finetune_resumable,
                                    new_workdir)

RESULTS_FILE = "results.json"


# ---------------------------------------------------------------------------------------------------------
# The program: a task's model and loss as the Trainer sees them


class FinetuneProgram:
    """`train_state.Program` of one task: FinetuneModel + the task's loss, the original's optimizer recipe.

    The optimizer decays the learning rate layer by layer (config.optim.layerwise_lr_decay) and warms up over
    warmup_proportion * total steps, total = floor(train rows / batch) * epochs, as the original.
    """

    train_metrics = ("loss",)

    def __init__(self, config: ml_collections.ConfigDict, task: Task, data: TaskData, total_steps: int):
        self.config, self.task, self.data = config, task, data
        self.total_steps = total_steps
        self.model_cfg = modeling.ModelConfig.from_config(config.model, mlm_only=False)
        self.model = FinetuneModel(self.model_cfg, task.head(data.num_outputs, config))
        self._example = {k: v[:1] for k, v in data.train.items()}

    def init_boxed_params(self, rng):
        return self.model.init({"params": rng}, self._example, deterministic=True, training=True)["params"]

    def loss(self, params, batch, rng, train: bool):
        outputs = self.model.apply({"params": params}, batch, deterministic=not train, training=True,
                                   rngs={"dropout": rng})
        return self.task.loss(outputs, batch, self.config), {}

    def evaluate(self, params, batch, rng):
        outputs = self.model.apply({"params": params}, batch, deterministic=True, training=False)
        return self.task.eval_outputs(outputs)

    def make_optimizer(self, param_shapes):
        warmup = int(self.config.optim.warmup_proportion * self.total_steps)
        return optim.make_optimizer(self.config.optim, self.total_steps, params=param_shapes,
                                    num_layers=self.model_cfg.num_layers, warmup_steps=warmup)

    def abstract_batch(self, global_batch_size: int):
        return {k: jax.ShapeDtypeStruct((global_batch_size,) + v.shape[1:], v.dtype)
                for k, v in self.data.train.items()}


# ---------------------------------------------------------------------------------------------------------
# Data


def seeds_of(config: ml_collections.ConfigDict) -> list[int]:
    if config.train.seeds:
        try:
            return [int(s) for s in str(config.train.seeds).replace(" ", "").split(",") if s]
        except ValueError:
            raise config_lib.ConfigError(f"config.train.seeds = {config.train.seeds!r}: expected comma-separated "
                                         "integers such as '0,1,2'") from None
    return [config.train.seed + i for i in range(max(1, config.train.num_trials))]


def _cap(examples: list, limit: int, seed: int) -> list:
    if not limit or limit >= len(examples):
        return examples
    order = np.random.RandomState(seed).permutation(len(examples))[:limit]
    return [examples[i] for i in sorted(order)]


def prepare_data(task: Task, config: ml_collections.ConfigDict, tokenizer) -> TaskData:
    """Reads, caps and featurizes both splits; refuses an empty split before any training."""
    train = _cap(task.read("train", config.data), config.train.max_train_examples, config.train.seed)
    dev = _cap(task.read("dev", config.data), config.train.max_eval_examples, config.train.seed)
    where = config.data.dir or f"TFDS under {config.data.tfds_data_dir or '~/tensorflow_datasets'}"
    for split, examples in (("train", train), ("dev", dev)):
        if not examples:
            raise DataFormatError(f"the {task.name} {split} set in {where} has no examples; fine-tuning needs "
                                  f"labelled train and dev examples (check config.data.dir and the {split} file)")
    data = task.featurize(train, dev, tokenizer, config)
    missing = sorted(set(data.train) - set(data.dev))
    if missing:
        raise ValueError(f"task {task.name}: its dev features lack {missing}; train and dev must share keys")
    return data


def epoch_order(seed: int, epoch: int, num_rows: int) -> np.ndarray:
    """The row order of `epoch` (0-based): the epoch-th permutation drawn from RandomState(seed)."""
    shuffle = np.random.RandomState(seed)
    for _ in range(epoch):
        shuffle.permutation(num_rows)
    return shuffle.permutation(num_rows)


def _host_rows(rows: np.ndarray) -> np.ndarray:
    """This host's slice of a global batch's rows (hosts own consecutive blocks, as to_global_batch expects)."""
    per_host = len(rows) // jax.process_count()
    return rows[jax.process_index() * per_host:(jax.process_index() + 1) * per_host]


def _global_batch(arrays: dict[str, np.ndarray], rows: list[np.ndarray], sharding, keys) -> dict[str, jax.Array]:
    """One batch of `rows`; several seeds' rows (a list of K) give K batches stacked along a leading axis."""
    if len(rows) == 1:
        return to_global_batch({k: arrays[k][_host_rows(rows[0])] for k in keys}, sharding)
    return to_global_batch({k: np.stack([arrays[k][_host_rows(r)] for r in rows]) for k in keys}, sharding)


# ---------------------------------------------------------------------------------------------------------
# The loop


def evaluate(trainer, compiled, params, data: TaskData, config, stacked: bool = False) -> dict[str, np.ndarray]:
    """Eval outputs of every dev row, in order (the last batch padded with copies of row 0, then cut); with
    `stacked` (params of several seeds, compile(seeds=K)), outputs of shape [K, rows, ...]."""
    batch_size, keys = config.train.eval_batch_size, list(data.train)
    rng = jax.device_put(np.zeros((2,), np.uint32), trainer.replicated)
    axis = 1 if stacked else 0
    collected: dict[str, list] = {}
    starts = range(0, data.num_dev, batch_size)
    for start in with_progress(starts, len(starts), config.train.progress, f"dev set ({data.num_dev} rows)",
                               enabled=jax.process_index() == 0):
        rows = np.arange(start, min(start + batch_size, data.num_dev))
        real = len(rows)
        rows = np.concatenate([rows, np.zeros(batch_size - real, rows.dtype)])
        outputs = compiled.eval_step(params, _global_batch(data.dev, [rows], trainer.batch_sharding, keys), rng)
        for key, value in jax.device_get(outputs).items():
            collected.setdefault(key, []).append(np.take(np.asarray(value), np.arange(real), axis=axis))
    return {k: np.concatenate(v, axis=axis) for k, v in collected.items()}


def _fresh_state(trainer, seed: int, pretrained: dict | None):
    state = trainer.init_state(seed)
    if pretrained is None:
        return state
    params = merge_pretrained(jax.device_get(state.params), pretrained)
    return trainer.state_from_params(params, seed)


def run_seeds(trainer, compiled, task: Task, data: TaskData, config, seeds: list[int], run_dirs: list[str],
              checkpoint_dir, pretrained: dict | None, init: str = "") -> dict[str, Any]:
    """Fine-tunes (or resumes) seeds in lockstep: one seed with the plain steps, or K > 1 seeds with the steps of
    `trainer.compile(seeds=K)` (`compiled`) on one stacked state. Each seed keeps its own initialization, data order
    (epoch_order(seed, epoch)), dropout keys and metrics in its run dir; the checkpoints under `checkpoint_dir`
    hold the (stacked) state, the seeds and `init` (where `pretrained` came from): a checkpoint of another task,
    data set, model, seeds or init is refused, not resumed. Returns {"histories": [per seed], "params": [per seed],
    "preempted"}."""
    lanes, stacked = len(seeds), len(seeds) > 1
    batch_size, epochs = config.train.batch_size, config.train.epochs
    steps_per_epoch = data.num_train // batch_size
    total_steps = steps_per_epoch * epochs
    is_main = jax.process_index() == 0
    checkpointer = checkpoints_lib.Checkpointer(checkpoint_dir, keep=config.checkpoint.keep,
                                                async_save=config.checkpoint.async_save)
    latest = checkpointer.latest_step()
    histories: list[list[dict]] = [[] for _ in seeds]
    carried = [{"sum": 0.0, "count": 0} for _ in seeds]  # each seed's current-epoch train losses before a resume
    if latest is not None:
        check_finetune_resumable(checkpointer.saved_config(latest), config, checkpointer.directory / str(latest))
        state, positions, _ = checkpointer.restore(latest, trainer.abstract_state(lanes if stacked else 0))
        position = positions.get(jax.process_index(), {})
        if stacked and "seeds" not in position:
            raise checkpoints_lib.ResumeMismatchError(
                f"the checkpoint in {checkpointer.directory} holds one seed, not the stacked seeds {seeds}")
        check_finetune_position(position, seeds, init, checkpointer.directory)
        if stacked:
            histories, carried = position["history"], position["epoch_loss"]
        else:
            histories = [list(position.get("history", []))]
            carried = [dict(position.get("epoch_loss", carried[0]))]
        logging.info("seeds %s: resumed from step %d of %s (%d epochs done)", seeds, latest, checkpointer.directory,
                     len(histories[0]))
    else:
        states = [_fresh_state(trainer, seed, pretrained) for seed in seeds]
        state = trainer.stack_states(states) if stacked else states[0]
        del states
    step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
    rng = jax.device_put(np.asarray(jax.device_get(state.rng)), trainer.replicated)
    writers = [MetricsWriter(run_dir, enabled=is_main) for run_dir in run_dirs]
    progress = Progress(config.train.progress, step, total_steps, config.train.log_every, enabled=is_main)
    watcher = checkpoints_lib.PreemptionWatcher(checkpointer)
    keys = list(data.train)
    batch_sharding = trainer.stacked_batch_sharding if stacked else trainer.batch_sharding
    tokens_per_step = lanes * batch_size * config.data.max_seq_length
    first_step, started = step, time.time()
    preempted, epoch_start = False, time.time()
    # Device values of this epoch (scalars, or [K] when stacked), pulled only when needed (no per-step host sync):
    losses: list[jax.Array] = []
    params_ok: list[jax.Array] = []  # per step: 1.0 when the parameters after it are all finite
    orders: dict[int, list[np.ndarray]] = {}  # the current epoch's row order of each seed

    def per_lane(values) -> np.ndarray:
        """[steps, K] float64 of a list of per-step device values."""
        return np.asarray(jax.device_get(values), np.float64).reshape(len(values), lanes)

    def epoch_loss(lane: int) -> dict:
        values = per_lane(losses)[:, lane] if losses else np.zeros(0)
        return {"sum": carried[lane]["sum"] + float(np.sum(values)), "count": carried[lane]["count"] + len(values)}

    def check_finite(at_step: int) -> None:
        """Stops the seeds when a training loss of this epoch, or the parameters after an update, are not finite,
        before anything of it is saved or scored (pulled here, at logs, saves and epoch ends, not every step)."""
        if not losses:
            return
        loss_values = per_lane(losses)
        bad = ~np.isfinite(loss_values) | ~(per_lane(params_ok) > 0)
        if not bad.any():
            return
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        lane = int(np.flatnonzero(bad[row])[0])
        first, loss = at_step - len(loss_values) + row + 1, loss_values[row, lane]  # the last row is at_step's
        what = (f"the training loss is {loss} at step {first}" if not np.isfinite(loss)
                else f"the update of step {first} made the parameters non-finite (loss {loss})")
        good = checkpointer.latest_step()
        rate = config.optim.learning_rate
        where = (f"the last good checkpoint is step {good} in {checkpointer.directory}" if good is not None
                 else f"no checkpoint of {'these seeds' if stacked else 'this seed'} was saved")
        raise NonFiniteLossError(
            f"seed {seeds[lane]}: {what} (epoch {(first - 1) // steps_per_epoch + 1} of {epochs}); fine-tuning "
            f"stopped there without saving or scoring it; {where}, but the same command would diverge the same way. "
            f"Fix: lower config.optim.learning_rate (now {rate:g}; e.g. --config.optim.learning_rate={rate / 10:g}) "
            "with a new --workdir; a loss that breaks suddenly can also mean bad data or an --init checkpoint of "
            "another vocabulary.")

    def save(at_step: int) -> None:
        check_finite(at_step)
        if stacked:
            position = {"seeds": list(seeds), "history": histories, "epoch_loss": [epoch_loss(i) for i in range(lanes)]}
        else:
            position = {"seeds": list(seeds), "history": histories[0], "epoch_loss": epoch_loss(0)}
        position["init"] = init
        checkpointer.save(at_step, state, data_states=checkpoints_lib.gather_host_json(position), config=config)

    def finish_epoch(epoch: int, at_step: int) -> None:
        check_finite(at_step)
        outputs = evaluate(trainer, compiled, state.params, data, config, stacked)
        seconds = round(time.time() - epoch_start, 2)  # the seeds trained this epoch together, in these seconds
        for lane, seed in enumerate(seeds):
            mine = {k: v[lane] for k, v in outputs.items()} if stacked else outputs
            final_dir = run_dirs[lane] if epoch == epochs else None
            dev = {k: float(v) for k, v in task.score(data, mine, config, final_dir).items()}
            total = epoch_loss(lane)
            train_loss = total["sum"] / total["count"] if total["count"] else float("nan")
            histories[lane].append({"epoch": epoch, "dev": dev, "train_loss": train_loss, "train_seconds": seconds})
            logging.info("seed %d epoch %d: train loss %.4f, dev %s", seed, epoch, train_loss, dev)
            writers[lane].write(at_step, dev, split="dev")
            writers[lane].flush()

    try:
        while step < total_steps or len(histories[0]) < epochs:
            epoch = step // steps_per_epoch  # 0-based epoch the next step belongs to
            if len(histories[0]) < min(epoch, epochs):  # an epoch ended before its evaluation (preempted there)
                finish_epoch(len(histories[0]) + 1, step)
                losses, params_ok = [], []
                carried = [{"sum": 0.0, "count": 0} for _ in seeds]
                if config.checkpoint.every_epoch:
                    save(step)
                continue
            if epoch not in orders:
                orders = {epoch: [epoch_order(seed, epoch, data.num_train) for seed in seeds]}
            position = step - epoch * steps_per_epoch
            rows = [order[position * batch_size:(position + 1) * batch_size] for order in orders[epoch]]
            state, metrics = compiled.train_step(state, _global_batch(data.train, rows, batch_sharding, keys), rng)
            step += 1
            losses.append(metrics["loss"])
            params_ok.append(metrics["params_finite"])
            loss = None
            if step % config.train.log_every == 0 or step == total_steps:
                window = per_lane(losses[-config.train.log_every:])
                loss = float(np.mean(window))
                if not np.isfinite(window).all():
                    check_finite(step)
                rate = float(np.asarray(jax.device_get(metrics["learning_rate"])).reshape(-1)[0])
                for lane, writer in enumerate(writers):
                    writer.write(step, {"loss": float(np.mean(window[:, lane])), "learning_rate": rate})
            speed = (step - first_step) / max(time.time() - started, 1e-9)
            progress.update(step, {"steps_per_sec": speed, "tokens_per_sec": speed * tokens_per_step}, loss)
            epoch_end = step % steps_per_epoch == 0
            if epoch_end:
                finish_epoch(step // steps_per_epoch, step)
                losses, params_ok, epoch_start = [], [], time.time()
                carried = [{"sum": 0.0, "count": 0} for _ in seeds]
            if ((epoch_end and config.checkpoint.every_epoch)
                    or (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0)):
                save(step)
            if watcher.requested(step) and step < total_steps:
                if checkpointer.latest_step() != step:
                    save(step)
                preempted = True
                logging.warning("seeds %s: stopping at step %d after a preemption signal; checkpoint saved in %s; "
                                "rerun the same command to resume", seeds, step, checkpointer.directory)
                break
    finally:
        checkpointer.close()
        watcher.restore_handlers()
        progress.close()
        for writer in writers:
            writer.close()
    params = jax.device_get(state.params)
    if stacked:
        params_of = [jax.tree_util.tree_map(lambda x, i=i: x[i], params) for i in range(lanes)]
    else:
        params_of = [params]
    return {"histories": histories, "params": params_of, "preempted": preempted}


# ---------------------------------------------------------------------------------------------------------
# Entry point


def _best(history: list[dict], metrics: tuple[str, ...], select: bool) -> dict:
    if not select:
        return dict(history[-1]["dev"])
    return dict(max(history, key=lambda h: h["dev"].get(metrics[0], float("-inf")))["dev"])


def _median(dicts: list[dict]) -> dict:
    keys = [k for k in dicts[0] if all(k in d for d in dicts)]
    return {k: float(statistics.median(d[k] for d in dicts)) for k in keys}


def _tokenizer_for(config: ml_collections.ConfigDict, checkpoint) -> Any:
    """The run's tokenizer: config.data.vocab, else the --init checkpoint's vocabulary (and its casing and accent
    handling)."""
    from electra_jax.checkpoint_formats import find_vocab
    from electra_jax.data import tokenizer as make_tokenizer

    if config.data.vocab or checkpoint is None or not checkpoint.vocab:
        if not config.data.vocab:
            raise ValueError("no vocabulary: pass --config.data.vocab=PATH (a WordPiece vocab.txt such as the BERT "
                             "uncased one, or a SentencePiece .model); an --init checkpoint or HF folder that "
                             "records its vocabulary supplies it automatically")
        vocab, _ = find_vocab(config, vocab=config.data.vocab, flag="--config.data.vocab")
        if checkpoint is not None and checkpoint.vocab:
            _check_vocab_matches(vocab, bool(config.data.lower_case), config.data.get("strip_accents"), checkpoint)
    else:
        asked, asked_strip = bool(config.data.lower_case), config.data.get("strip_accents")
        vocab, config.data.lower_case = find_vocab(checkpoint.config, flag="--config.data.vocab")
        config.data.strip_accents = checkpoint.strip_accents
        if bool(config.data.lower_case) != asked:  # the default cannot be told from an explicit value: say so
            logging.warning("the --init checkpoint was pre-trained with lower_case=%s: this run tokenizes that way, "
                            "not with config.data.lower_case=%s (a --config.data.lower_case applies only beside "
                            "--config.data.vocab)", config.data.lower_case, asked)
        stripped = strips_accents(config.data.lower_case, checkpoint.strip_accents)
        if asked_strip is not None and asked_strip != stripped:
            logging.warning("the --init checkpoint was pre-trained with strip_accents=%s: this run tokenizes that "
                            "way, not with config.data.strip_accents=%s (it applies only beside "
                            "--config.data.vocab)", stripped, asked_strip)
    config.data.vocab = vocab
    return make_tokenizer(vocab, lower_case=config.data.lower_case, strip_accents=config.data.strip_accents)



def _check_vocab_matches(vocab: str, lower_case: bool, strip_accents: bool | None, checkpoint) -> None:
    """Warns when a --config.data.vocab given beside --init is not the checkpoint's vocabulary, or is read with
    other casing or accent handling than the checkpoint was pre-trained with: its embeddings would be read as
    other words."""
    from electra_jax.data.tokenization import same_vocabulary

    theirs = checkpoint.vocab
    if "://" in vocab or "://" in theirs or not os.path.isfile(theirs):
        return
    if not same_vocabulary(vocab, theirs):  # token lists: a vocab.txt and a tokenizer.json of it are the same
        logging.warning("--config.data.vocab=%s differs from the vocabulary the --init checkpoint names (%s): its "
                        "embeddings are read as this vocabulary's words; drop --config.data.vocab to use the "
                        "checkpoint's", vocab, theirs)
    elif lower_case != checkpoint.lower_case:
        logging.warning("the --init checkpoint was pre-trained with lower_case=%s but this run tokenizes with "
                        "--config.data.lower_case=%s; pass --config.data.lower_case=%s (or drop "
                        "--config.data.vocab to take both from the checkpoint)", checkpoint.lower_case, lower_case,
                        checkpoint.lower_case)
    elif strips_accents(lower_case, strip_accents) != (theirs_strip := strips_accents(checkpoint.lower_case,
                                                                         checkpoint.strip_accents)):
        logging.warning("the --init checkpoint was pre-trained with strip_accents=%s but this run tokenizes with "
                        "strip_accents=%s; pass --config.data.strip_accents=%s (or drop --config.data.vocab to "
                        "take it from the checkpoint)", theirs_strip, not theirs_strip, theirs_strip)


class TaskSession:
    """One task's featurized data, Trainer and compiled steps, for any number of (pre-trained weights, seed) runs
    of one network.

    `train_and_evaluate` is one session; an experiment that fine-tunes many checkpoints of the same network on a
    task builds one session per task (one featurization, one compile) and calls `fine_tune` for each.
    """

    def __init__(self, config: ml_collections.ConfigDict, tokenizer, task: Task | None = None):
        self.config = config
        self.task = task if task is not None else tasks_lib.get_task(config.task)
        start = time.time()
        self.data = prepare_data(self.task, config, tokenizer)
        logging.info("task %s: %d training rows (%d examples), %d dev rows, featurized in %.1f s", self.task.name,
                     self.data.num_train, self.data.num_train_examples, self.data.num_dev, time.time() - start)
        steps_per_epoch = self.data.num_train // config.train.batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"{self.data.num_train} training examples do not fill one batch of "
                             f"{config.train.batch_size}; lower --config.train.batch_size")
        program = FinetuneProgram(config, self.task, self.data, total_steps=steps_per_epoch * config.train.epochs)
        self.trainer = train_state_lib.Trainer(config, sharding_lib.make_mesh(config.mesh), program)
        self._compiled: dict[int, train_state_lib.Compiled] = {}
        self.compiled_for(len(self.seed_groups(seeds_of(config))[0]))  # the config's own seeds' steps, compiled now

    @property
    def compiled(self) -> train_state_lib.Compiled:
        """The plain (one-seed) train and eval steps."""
        return self.compiled_for(1)

    def compiled_for(self, seeds: int) -> train_state_lib.Compiled:
        """The steps of one seed, or vmapped over `seeds` > 1 stacked seeds; each compiled once, on first use."""
        if seeds not in self._compiled:
            self._compiled[seeds] = self.trainer.compile(self.config.train.batch_size, log_memory=False,
                                                         eval_batch_size=self.config.train.eval_batch_size,
                                                         seeds=seeds if seeds > 1 else 0)
        return self._compiled[seeds]

    def seed_groups(self, seeds: list[int]) -> list[list[int]]:
        """The seeds that train together: all of them with config.train.vmap_seeds, else one at a time."""
        return [list(seeds)] if self.config.train.get("vmap_seeds", False) else [[seed] for seed in seeds]

    def fine_tune(self, workdir: str, pretrained: dict | None = None, seeds: list[int] | None = None,
                  init: str | None = None) -> dict:
        """Fine-tunes (or resumes) every seed from `pretrained` (None: from scratch) and writes workdir/results.json.

        Returns its contents, or {"preempted": True, ...} (no results.json) when a SIGTERM stopped a seed.
        """
        config, task, data = self.config, self.task, self.data
        seeds = seeds if seeds is not None else seeds_of(config)
        root = checkpoints_lib.as_path(workdir)
        if jax.process_index() == 0:
            root.mkdir(parents=True, exist_ok=True)
        start = time.time()
        per_seed = []
        for group in self.seed_groups(seeds):
            run_dirs = [root if len(seeds) == 1 else root / f"seed_{seed}" for seed in group]
            # A group's stacked state checkpoints apart from single seeds' (a rerun without vmap_seeds starts over).
            state_dir = run_dirs[0] if len(group) == 1 else root / ("seeds_" + "_".join(str(s) for s in group))
            outcome = run_seeds(self.trainer, self.compiled_for(len(group)), task, data, config, group,
                                [str(d) for d in run_dirs], state_dir / checkpoints_lib.CHECKPOINTS_SUBDIR, pretrained,
                                init=str(checkpoints_lib.as_path(init)) if init else "")  # as resume compares it
            if outcome["preempted"]:
                return {"task": task.name, "preempted": True, "seed": group[0], "seeds": group}
            for seed, history, params in zip(group, outcome["histories"], outcome["params"], strict=True):
                per_seed.append({"seed": seed, "epochs": history,
                                 "best": _best(history, task.metrics, config.train.select_best_epoch)})
                if config.checkpoint.save_final:
                    final = root / ("final" if len(seeds) == 1 else f"final_seed_{seed}")
                    checkpoints_lib.save_params(str(final), params, config)
        metrics = [m for m in task.metrics if m in per_seed[0]["best"]]
        results: dict[str, Any] = {"task": task.name, "metrics": metrics}
        if len(per_seed) == 1:
            results["epochs"] = per_seed[0]["epochs"]
            results["best"] = per_seed[0]["best"]
        else:
            results["seeds"] = per_seed
            results["epochs"] = [{"epoch": e + 1, "dev": _median([s["epochs"][e]["dev"] for s in per_seed])}
                                 for e in range(len(per_seed[0]["epochs"]))]
            results["best"] = _median([s["best"] for s in per_seed])  # the median over seeds, as the README reports
        results["init"] = init or None
        results["train_examples"] = data.num_train_examples
        results["seconds"] = round(time.time() - start, 1)
        if jax.process_index() == 0:
            (root / RESULTS_FILE).write_text(json.dumps(results, indent=2))
        return results


def _warn_if_a_generator(init: str, folder: str) -> None:
    """An ElectraForMaskedLM folder imports as a masked-LM model; say so unless it is a masked-LM baseline's
    `convert to_hf` export (OUT/generator with no discriminator beside it)."""
    sibling = os.path.join(os.path.dirname(os.path.abspath(folder)), "discriminator")
    if os.path.basename(os.path.abspath(folder)) == "generator" and not os.path.isdir(sibling):
        return
    where = (f"pass {sibling}, " if os.path.isdir(sibling) else "pass its discriminator (ElectraForPreTraining) "
             "folder instead, ")
    logging.warning("--init=%s is an ElectraForMaskedLM folder: fine-tuning its encoder as a masked-LM model. "
                    "If it is an ELECTRA generator, %sthe model ELECTRA fine-tunes (a generator scores far "
                    "lower)", init, where)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, init: str | None = None) -> dict:
    """Fine-tunes config.task (once per seed) and writes workdir/results.json; returns its contents.

    `init` (or config.checkpoint.init) is anything `checkpoint_formats.open_checkpoint` reads; without it the
    model trains from scratch. A run stopped by SIGTERM returns {"preempted": True, ...} without results.json;
    rerunning the same command resumes it.
    """
    init = init or config.checkpoint.init
    checkpoint = None
    if init:
        from electra_jax.checkpoint_formats import open_checkpoint

        checkpoint = open_checkpoint(init, flag="--init")
        logging.info("initializing from the %s checkpoint %s", checkpoint.kind, checkpoint.path)
        if checkpoint.kind == "hf" and checkpoint.config.objective.kind == "mlm":
            _warn_if_a_generator(init, checkpoint.path)
        apply_checkpoint_model(config, checkpoint.config)
    tokenizer = _tokenizer_for(config, checkpoint)
    if checkpoint is None:
        config.model.vocab_size = tokenizer.vocab_size  # from scratch: the table fits the vocabulary
    elif tokenizer.vocab_size > config.model.vocab_size:
        raise ValueError(f"the vocabulary {config.data.vocab} has {tokenizer.vocab_size} tokens but the --init "
                         f"model's table has {config.model.vocab_size}: pass the vocabulary it was pre-trained with")
    elif tokenizer.vocab_size < config.model.vocab_size:  # published tables are sometimes padded; say it anyway
        logging.warning("the vocabulary %s has %d tokens and the --init model's table %d rows: the last %d are never "
                        "read (padding, or not the vocabulary it was pre-trained with)", config.data.vocab,
                        tokenizer.vocab_size, config.model.vocab_size, config.model.vocab_size - tokenizer.vocab_size)
    config.model.padded_vocab_size = 0
    config_lib.finalize(config)
    session = TaskSession(config, tokenizer)
    pretrained = nn.unbox(checkpoint.params) if checkpoint is not None else None
    with new_workdir(workdir):  # a run that fails before it writes a file leaves no empty workdir behind
        return session.fine_tune(workdir, pretrained, init=init)
