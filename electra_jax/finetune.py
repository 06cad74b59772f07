"""Fine-tuning on GLUE, SQuAD and tagging: `python -m electra_jax.finetune --config=configs/finetune.py:TASK ...`.

    python -m electra_jax.finetune --config=configs/finetune.py:sst2 --init=CKPT_OR_HF_DIR --workdir=DIR \
        --config.data.dir=glue_data/SST-2

`--init` takes an electra_jax pre-training checkpoint or params-only export, an HF ELECTRA folder (it has a
config.json), or an original google-research/electra TF checkpoint (a prefix with a .index file, or a folder
holding one). Without `--init` the model (size from `configs/finetune.py:TASK,SIZE`) trains from scratch.

Writes DIR/results.json (per-epoch dev metrics, `best`, and for several seeds one entry per seed plus the
median), TensorBoard events under DIR, the final parameters under DIR/final (checkpoints.save_params), and
for SQuAD the dev predictions (DIR/predictions.json, DIR/null_odds.json).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import statistics
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from ml_collections import config_flags

from electra_jax import config as config_lib
from electra_jax import modeling, optim, scoring
from electra_jax.data import tasks as tasks_lib
from electra_jax.finetune_models import FinetuneModel

# Model-config fields an --init checkpoint decides (the rest, such as dtype and attention, stay the run's).
CHECKPOINT_MODEL_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_layers", "num_heads",
                           "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                           "initializer_range")


# ---------------------------------------------------------------------------------------------------------
# Initialization from checkpoints


def _tf_checkpoint_prefix(path: str) -> str | None:
    """The checkpoint prefix when `path` is an original TF checkpoint (PREFIX.index exists), else None."""
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        indexes = glob.glob(os.path.join(path, "*.index"))
        if indexes:
            def step(p):
                digits = "".join(ch for ch in os.path.basename(p).split("-")[-1] if ch.isdigit())
                return int(digits) if digits else -1
            return max(indexes, key=step)[: -len(".index")]
    return None


def _is_hf_folder(path: str) -> bool:
    config_json = os.path.join(path, "config.json")
    if not os.path.isfile(config_json):
        return False
    try:
        with open(config_json) as f:
            return "model_type" in json.load(f)
    except (OSError, json.JSONDecodeError):
        return False


def load_init(path: str) -> tuple[dict, Any, str | None, bool | None]:
    """(params, checkpoint config, vocabulary path or None, lower_case or None) from any supported format."""
    if not os.path.exists(path) and not os.path.isfile(path + ".index"):
        raise FileNotFoundError(f"--init={path} does not exist (expected an electra_jax checkpoint, an HF folder "
                                "with config.json, or a TF checkpoint prefix)")
    from electra_jax import convert

    if os.path.isdir(path) and _is_hf_folder(path):
        params, ckpt_config = convert.load_hf(path)
        logging.info("initializing from the HF folder %s", path)
    elif (prefix := _tf_checkpoint_prefix(path)) is not None:
        params, ckpt_config, report = convert.from_tf_checkpoint(prefix)
        logging.info("initializing from the TF checkpoint %s:\n%s", prefix, report.summary())
        for folder in (os.path.dirname(prefix), os.path.dirname(os.path.dirname(prefix))):
            if os.path.isfile(os.path.join(folder, "vocab.txt")) and not _config_vocab(ckpt_config):
                ckpt_config.data.vocab = os.path.join(folder, "vocab.txt")
                break
    else:
        from electra_jax import checkpoints

        params, ckpt_config = checkpoints.restore_params(path)
        logging.info("initializing from the electra_jax checkpoint %s", path)
    data = ckpt_config.get("data", {}) if hasattr(ckpt_config, "get") else {}
    lower_case = data.get("lower_case", None) if data else None
    return modeling.unstack_layers(dict(params)), ckpt_config, _config_vocab(ckpt_config) or None, lower_case


def _config_vocab(ckpt_config) -> str:
    try:
        return str(ckpt_config.data.vocab or "")
    except (AttributeError, KeyError):
        return ""


def apply_checkpoint_model(config: ml_collections.ConfigDict, ckpt_config) -> None:
    """The checkpoint decides the model sizes."""
    section = ckpt_config["model"] if "model" in ckpt_config else ckpt_config
    for field in CHECKPOINT_MODEL_FIELDS:
        if field in section:
            config.model[field] = section[field]
    config.model.generator_hidden_size = 0  # re-derived; fine-tuning has no generator
    config.model.generator_num_heads = 0
    config.model.generator_intermediate_size = 0
    config.model.generator_num_layers = 0


def merge_pretrained(params: dict, pretrained: dict) -> dict:
    """Copies `embeddings` and `discriminator` from a pre-training tree into fresh fine-tuning params by name.

    The generator, the discriminator's replaced-token head and any vocabulary padding difference are
    ignored; any other mismatch raises a ValueError naming the parameter.
    """
    params = jax.tree_util.tree_map(np.asarray, nn.unbox(params))
    pretrained = nn.unbox(pretrained)
    for top in ("embeddings", "discriminator"):
        if top not in pretrained:
            raise ValueError(f"the --init checkpoint has no '{top}' parameters (found {sorted(pretrained)}); "
                             "it is not an ELECTRA discriminator checkpoint")
        flat_new = dict(jax.tree_util.tree_flatten_with_path(params[top])[0])
        flat_old = {optim.path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(pretrained[top])[0]}
        leaves = {}
        for path, leaf in flat_new.items():
            name = optim.path_name(path)
            if name not in flat_old:
                raise ValueError(f"the --init checkpoint lacks {top}/{name} (shape {leaf.shape})")
            old = np.asarray(flat_old[name], np.float32)
            if name == "word_embeddings" and old.shape[1:] == leaf.shape[1:] and old.shape[0] != leaf.shape[0]:
                # Vocabulary padding differs (padded rows are never used); keep the real rows.
                rows = min(old.shape[0], leaf.shape[0])
                fixed = np.zeros(leaf.shape, np.float32)
                fixed[:rows] = old[:rows]
                old = fixed
            if old.shape != leaf.shape:
                raise ValueError(f"{top}/{name}: the --init checkpoint has shape {old.shape}, the model expects "
                                 f"{leaf.shape}")
            leaves[path] = old
        params[top] = jax.tree_util.tree_map_with_path(lambda p, _, found=leaves: found[p], params[top])
    return params


# ---------------------------------------------------------------------------------------------------------
# Data


def resolve_vocab(config: ml_collections.ConfigDict, init_vocab: str | None) -> str:
    vocab = config.data.vocab or init_vocab or ""
    if not vocab:
        raise ValueError("no vocabulary: pass --config.data.vocab=PATH (a WordPiece vocab.txt such as the BERT "
                         "uncased one, or a SentencePiece .model); an --init checkpoint or HF folder that records "
                         "its vocabulary supplies it automatically")
    if not os.path.isfile(vocab):
        raise FileNotFoundError(f"the vocabulary {vocab} does not exist; pass --config.data.vocab=PATH")
    return vocab


def _cap(examples: list, limit: int, seed: int) -> list:
    if not limit or limit >= len(examples):
        return examples
    order = np.random.RandomState(seed).permutation(len(examples))[:limit]
    return [examples[i] for i in sorted(order)]


class TaskData:
    """Featurized train and dev arrays of one task, plus what scoring the dev set needs."""

    def __init__(self, config: ml_collections.ConfigDict, spec: tasks_lib.TaskSpec, tokenizer):
        self.spec = spec
        data, train = config.data, config.train
        train_examples = _cap(tasks_lib.read_examples(spec, "train", data), train.max_train_examples, train.seed)
        dev_examples = _cap(tasks_lib.read_examples(spec, "dev", data), train.max_eval_examples, train.seed)
        self.dev_examples = dev_examples
        seq = data.max_seq_length
        if spec.kind in ("classification", "regression"):
            regression = spec.kind == "regression"
            self.train = tasks_lib.featurize_classification(train_examples, tokenizer, seq, regression)
            self.dev = tasks_lib.featurize_classification(dev_examples, tokenizer, seq, regression)
            if regression:  # the original trains on the score normalized to [0, 1]: (y - 0) / 5
                self.train["labels"] = self.train["labels"] / 5.0
            self.num_outputs = spec.num_labels
        elif spec.kind == "tagging":
            self.label_list = tasks_lib.tagging_label_list(train_examples + dev_examples, data.tag_scheme)
            self.train = tasks_lib.featurize_tagging(train_examples, tokenizer, seq, self.label_list, data.tag_scheme)
            self.dev = tasks_lib.featurize_tagging(dev_examples, tokenizer, seq, self.label_list, data.tag_scheme)
            self.num_outputs = len(self.label_list)
        else:
            args = (tokenizer, seq, data.doc_stride, data.max_query_length)
            self.train, _ = tasks_lib.featurize_squad(train_examples, *args, is_training=True)
            self.dev, self.dev_metas = tasks_lib.featurize_squad(dev_examples, *args, is_training=False)
            self.num_outputs = 1
        self.num_train = len(self.train["input_ids"])
        self.num_train_examples = len(train_examples)


def _batches(arrays: dict[str, np.ndarray], batch_size: int, order: np.ndarray, drop_remainder: bool):
    """Yields (batch, number of real rows); a short last batch is padded with copies of row 0."""
    n = len(order)
    stop = (n // batch_size) * batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        real = len(index)
        if real < batch_size:
            index = np.concatenate([index, np.zeros(batch_size - real, index.dtype)])
        yield {k: v[index] for k, v in arrays.items()}, real


# ---------------------------------------------------------------------------------------------------------
# Losses and evaluation


def task_loss(kind: str, outputs, batch: dict, answerable_weight: float = 0.5) -> jax.Array:
    if kind == "classification":
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"]).mean()
    if kind == "regression":
        return jnp.mean(jnp.square(outputs - batch["labels"]))
    if kind == "tagging":
        per_word = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"])
        return jnp.mean(jnp.sum(per_word * batch["label_mask"], axis=-1))  # summed over words, as the original
    start_loss = optax.softmax_cross_entropy_with_integer_labels(outputs["start_logits"], batch["start_positions"])
    end_loss = optax.softmax_cross_entropy_with_integer_labels(outputs["end_logits"], batch["end_positions"])
    answerable_loss = optax.sigmoid_binary_cross_entropy(outputs["answerable_logit"], batch["is_impossible"])
    return jnp.mean((start_loss + end_loss) / 2.0 + answerable_weight * answerable_loss)


def _eval_outputs(kind: str, outputs) -> dict:
    if kind == "classification":
        return {"predictions": jnp.argmax(outputs, -1)}
    if kind == "regression":
        return {"predictions": outputs}
    if kind == "tagging":
        return {"predictions": jnp.argmax(outputs, -1)}
    return {k: outputs[k] for k in ("start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index",
                                    "answerable_logit")}


def score_dev(data: TaskData, outputs: dict[str, np.ndarray], config: ml_collections.ConfigDict,
              workdir: str | None = None) -> dict[str, float]:
    spec = data.spec
    if spec.kind == "classification":
        labels = data.dev["labels"]
        metrics = scoring.classification_metrics(spec.metrics, labels, outputs["predictions"])
        if "accuracy" not in metrics:
            metrics["accuracy"] = scoring.accuracy(labels, outputs["predictions"])
        return metrics
    if spec.kind == "regression":
        gold, predictions = data.dev["labels"], outputs["predictions"] * 5.0
        return {"pearson": scoring.pearson(gold, predictions), "spearman": scoring.spearman(gold, predictions),
                "mse": float(np.mean(np.square(gold - predictions)))}
    if spec.kind == "tagging":
        gold_sequences, predicted_sequences = [], []
        for i, example in enumerate(data.dev_examples):
            kept = int(data.dev["label_mask"][i].sum())
            predicted = [data.label_list[t] for t in outputs["predictions"][i, :kept]]
            predicted += ["O"] * (len(example.tags) - kept)  # words cut by max_seq_length count as "O"
            gold_sequences.append(example.tags)
            predicted_sequences.append(predicted)
        return scoring.span_f1(gold_sequences, predicted_sequences)
    predictions, null_scores = tasks_lib.squad_predictions(
        data.dev_examples, data.dev_metas, outputs["start_top_log_probs"], outputs["start_top_index"],
        outputs["end_top_log_probs"], outputs["end_top_index"], outputs["answerable_logit"],
        config.qa.n_best_size, config.qa.max_answer_length, config.data.lower_case)
    gold = {e.qas_id: e.gold_answers for e in data.dev_examples}
    if workdir:
        with open(os.path.join(workdir, "predictions.json"), "w") as f:
            json.dump(predictions, f, indent=1)
        if spec.squad_v2:
            with open(os.path.join(workdir, "null_odds.json"), "w") as f:
                json.dump(null_scores, f, indent=1)
    if spec.squad_v2:
        return scoring.squad_v2_scores(gold, predictions, null_scores, config.qa.na_threshold)
    return scoring.squad_v1_scores(gold, predictions)


# ---------------------------------------------------------------------------------------------------------
# Training


def seeds_of(config: ml_collections.ConfigDict) -> list[int]:
    if config.train.seeds:
        try:
            return [int(s) for s in str(config.train.seeds).replace(" ", "").split(",") if s]
        except ValueError:
            raise config_lib.ConfigError(f"config.train.seeds = {config.train.seeds!r}: expected comma-separated "
                                         "integers such as '0,1,2'") from None
    return [config.train.seed + i for i in range(max(1, config.train.num_trials))]


def _progress(config, total: int, desc: str):
    from tqdm.auto import tqdm

    mode = config.train.progress
    disable = None if mode == "auto" else (mode != "bar")
    return tqdm(total=total, desc=desc, disable=disable, leave=False, dynamic_ncols=True)


class Runner:
    """The model, optimizer and jitted init/train/eval functions of one task, compiled once for every seed."""

    def __init__(self, config: ml_collections.ConfigDict, data: TaskData):
        spec = self.spec = data.spec
        self.config, self.data = config, data
        self.model_cfg = modeling.ModelConfig.from_config(config.model, mlm_only=False)
        model = self.model = FinetuneModel(self.model_cfg, spec.kind, data.num_outputs,
                                           beam_size=config.qa.beam_size, qa_hidden_units=config.qa.hidden_units)
        self.steps_per_epoch = data.num_train // config.train.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{data.num_train} training examples do not fill one batch of "
                             f"{config.train.batch_size}; lower --config.train.batch_size")
        self.total_steps = self.steps_per_epoch * config.train.epochs
        # The original: warmup = warmup_proportion * total steps, total = floor(n / batch) * epochs.
        self.warmup_steps = int(config.optim.warmup_proportion * self.total_steps)
        dummy = {k: v[:1] for k, v in data.train.items()}
        self.init_params = jax.jit(lambda rng: nn.unbox(model.init({"params": rng}, dummy, True,
                                                                    spec.kind == "qa")["params"]))
        shapes = jax.eval_shape(self.init_params, jax.random.key(0))
        self.tx, self.schedule = optim.make_optimizer(config.optim, self.total_steps, params=shapes,
                                                      num_layers=self.model_cfg.num_layers,
                                                      warmup_steps=self.warmup_steps)
        tx, answerable_weight = self.tx, config.qa.answerable_weight
        self.init_opt_state = jax.jit(tx.init)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def train_step(params, opt_state, batch, step_rng):
            def loss_fn(p):
                outputs = model.apply({"params": p}, batch, False, True, rngs={"dropout": step_rng})
                return task_loss(spec.kind, outputs, batch, answerable_weight)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        @jax.jit
        def eval_step(params, batch):
            return _eval_outputs(spec.kind, model.apply({"params": params}, batch, True, False))

        self.train_step, self.eval_step = train_step, eval_step


def run_seed(runner: Runner, seed: int, pretrained: dict | None, workdir: str, writer=None,
             tag_prefix: str = "") -> tuple[list[dict], dict]:
    """Fine-tunes one model; returns the per-epoch dev metrics and the final parameters."""
    config, data = runner.config, runner.data
    batch_size, epochs = config.train.batch_size, config.train.epochs
    steps_per_epoch, total_steps, schedule = runner.steps_per_epoch, runner.total_steps, runner.schedule
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    params = runner.init_params(init_rng)
    if pretrained is not None:
        params = jax.tree_util.tree_map(jnp.asarray, merge_pretrained(params, pretrained))
    opt_state = runner.init_opt_state(params)
    train_step, eval_step = runner.train_step, runner.eval_step

    eval_batch = config.train.eval_batch_size
    shuffle = np.random.RandomState(seed)
    history, step = [], 0
    for epoch in range(1, epochs + 1):
        order = shuffle.permutation(data.num_train)
        bar = _progress(config, steps_per_epoch, f"{tag_prefix}epoch {epoch}/{epochs}")
        losses, start = [], time.time()
        for batch, _ in _batches(data.train, batch_size, order, drop_remainder=True):
            params, opt_state, loss = train_step(params, opt_state, batch, jax.random.fold_in(dropout_rng, step))
            step += 1
            losses.append(loss)
            if step % config.train.log_every == 0 or step == total_steps:
                mean_loss = float(jnp.mean(jnp.stack(losses[-config.train.log_every:])))
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                if config.train.progress == "log":
                    logging.info("%sstep %d/%d: loss %.4f", tag_prefix, step, total_steps, mean_loss)
                if writer is not None:
                    writer.add_scalar(f"{tag_prefix}train/loss", mean_loss, step)
                    writer.add_scalar(f"{tag_prefix}train/learning_rate", float(schedule(step)), step)
            bar.update(1)
        bar.close()
        train_seconds = time.time() - start
        collected: dict[str, list] = {}
        num_dev = len(data.dev["input_ids"])
        for batch, real in _batches(data.dev, eval_batch, np.arange(num_dev), drop_remainder=False):
            for key, value in eval_step(params, batch).items():
                collected.setdefault(key, []).append(np.asarray(value)[:real])
        outputs = {k: np.concatenate(v) for k, v in collected.items()}
        dev = score_dev(data, outputs, config, workdir if epoch == epochs else None)
        dev = {k: float(v) for k, v in dev.items()}
        train_loss = float(jnp.mean(jnp.stack(losses))) if losses else float("nan")
        history.append({"epoch": epoch, "dev": dev, "train_loss": train_loss, "train_seconds": round(train_seconds, 2)})
        logging.info("%sepoch %d: train loss %.4f, dev %s (%.1f s)", tag_prefix, epoch, train_loss, dev,
                     train_seconds)
        if writer is not None:
            for name, value in dev.items():
                writer.add_scalar(f"{tag_prefix}dev/{name}", value, step)
            writer.flush()
    return history, jax.tree_util.tree_map(np.asarray, params)


def _best(history: list[dict], metrics: tuple[str, ...], select: bool) -> dict:
    if not select:
        return dict(history[-1]["dev"])
    return dict(max(history, key=lambda h: h["dev"].get(metrics[0], float("-inf")))["dev"])


def _median(dicts: list[dict]) -> dict:
    keys = [k for k in dicts[0] if all(k in d for d in dicts)]
    return {k: float(statistics.median(d[k] for d in dicts)) for k in keys}


def _save_final(path: str, params: dict, config: ml_collections.ConfigDict) -> None:
    try:
        from electra_jax import checkpoints
    except ImportError:
        logging.warning("electra_jax.checkpoints is unavailable; the final parameters are not saved")
        return
    checkpoints.save_params(path, params, config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, init: str | None = None) -> dict:
    """Fine-tunes config.task (once per seed), writes workdir/results.json and returns its contents."""
    init = init or config.checkpoint.init
    spec = tasks_lib.get_task(config.task)
    pretrained, init_vocab, init_lower = None, None, None
    if init:
        pretrained, ckpt_config, init_vocab, init_lower = load_init(init)
        apply_checkpoint_model(config, ckpt_config)
        if init_lower is not None and not config.data.vocab:
            config.data.lower_case = bool(init_lower)
    vocab = resolve_vocab(config, init_vocab)
    config.data.vocab = vocab
    from electra_jax.data import tokenizer as make_tokenizer

    tokenizer = make_tokenizer(vocab, lower_case=config.data.lower_case)
    if not init:
        config.model.vocab_size = tokenizer.vocab_size  # from scratch: the table fits the vocabulary
    elif tokenizer.vocab_size > config.model.vocab_size:
        raise ValueError(f"the vocabulary {vocab} has {tokenizer.vocab_size} tokens but the --init model's table "
                         f"has {config.model.vocab_size}: pass the vocabulary it was pre-trained with")
    config.model.padded_vocab_size = 0
    config_lib.finalize(config)

    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    data = TaskData(config, spec, tokenizer)
    logging.info("task %s: %d training rows (%d examples), %d dev rows, featurized in %.1f s", spec.name,
                 data.num_train, data.num_train_examples, len(data.dev["input_ids"]), time.time() - start)

    writer = None
    if jax.process_index() == 0:
        try:
            from tensorboardX import SummaryWriter

            writer = SummaryWriter(workdir)
        except ImportError:
            logging.warning("tensorboardX is not installed: no TensorBoard events")
    seeds = seeds_of(config)
    runner = Runner(config, data)
    per_seed = []
    for seed in seeds:
        prefix = f"seed_{seed}/" if len(seeds) > 1 else ""
        history, params = run_seed(runner, seed, pretrained, workdir, writer, prefix)
        per_seed.append({"seed": seed, "epochs": history, "best": _best(history, spec.metrics,
                                                                        config.train.select_best_epoch)})
        if config.checkpoint.save_final:
            _save_final(os.path.join(workdir, "final" if len(seeds) == 1 else f"final_seed_{seed}"), params, config)
    if writer is not None:
        writer.close()

    metrics = [m for m in spec.metrics if m in per_seed[0]["best"]]
    results: dict[str, Any] = {"task": spec.name, "metrics": metrics}
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
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


# ---------------------------------------------------------------------------------------------------------
# absl main

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/finetune.py:TASK[,SIZE]", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (results.json, events, final parameters)")
_INIT = flags.DEFINE_string("init", None, "electra_jax checkpoint, HF folder or TF checkpoint to start from; "
                            "omit to train from scratch")


def main(argv):
    del argv
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config=configs/finetune.py:TASK and --workdir=DIR are required")
    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value, _INIT.value)
    print(json.dumps({"task": results["task"], "best": results["best"]}), file=sys.stdout)


if __name__ == "__main__":
    from electra_jax import cli

    cli.run(main)
