r"""Re-evaluates finished pre-training runs at initialisation and at their newest checkpoint; one JSON document.

  python benchmarks/rtd_auc.py RUN_DIR [RUN_DIR ...] --output=benchmarks/results/rtd_auc.json

For each workdir: the config saved with its newest checkpoint, and the eval pass `pretrain` runs
(config.train.eval_steps batches from the start of config.data.eval_files, the same masks at every eval) on
  * the parameters at initialisation (config.train.seed: what the run started from), and
  * the parameters of the newest checkpoint.
Each row has the eval metrics, among them two discriminator AUCs:
  * disc_auc, the original's `tf.metrics.auc(labels * mask, probs * mask)`: probabilities in 1,000 bins, padding
    counted as negatives at probability 0 (what metrics.jsonl logs);
  * disc_auc_tokens: over the real tokens only, the logits in 0.0001-wide bins (objective.token_auc_histograms);
  * for Electric, energy_auc_tokens: the energy network's output alone, without the noise term
    log q + log(p / (1 - p)) (what `predict score` sums), against ELECTRA's labels (the tokens that changed).
The newest checkpoint's disc_auc is also read from the run's metrics.jsonl (`logged_disc_auc`), which it must equal.

Electric rows also take its NCE logit, E(x)_t + log q(x_t) + log(p / (1 - p)), apart (`electric`), on the same
batches, masks and samples (objective.forward; its total's AUC must equal the eval's disc_auc_tokens):
  * noise_auc_changed: log q(x_t) alone against the changed tokens: below 0.5 when the text's tokens are likelier
    under q than q's own samples;
  * noise_entropy and noise_cross_entropy: the mean entropy of q and -log q(original) at the written positions
    (entropy above cross-entropy: q is under-confident, its samples less likely under it than the text);
  * energy_slope and energy_correlation: the energy regressed on -log q(x_t) over the real tokens left alone
    (not [CLS]/[SEP]): how far the energy network has become the language model that cancels log q (slope 1);
  * nce_loss against nce_loss_prior, the loss of a constant logit at the share of replaced tokens.
docs/TRAINING.md ("On real text", "The AUC over real tokens") quotes the committed results file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KEYS = ("mlm_loss", "mlm_accuracy", "sampled_mlm_accuracy", "disc_loss", "disc_accuracy", "disc_auc",
        "disc_auc_tokens", "energy_auc_tokens", "replaced_fraction")


def _logged_eval(workdir: Path, step: int) -> dict:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return next((r for r in reversed(rows) if r.get("split") == "eval" and r.get("step") == step), {})


def _current_config(saved, base: str):
    """`saved` (a config an older version may have written) on top of this version's `base`: every field both
    have takes the saved value; fields the saved one lacks keep this version's defaults."""
    from electra_jax import checkpoints
    from electra_jax import config as config_lib
    from electra_jax.safeguards import DERIVED_FIELDS, flatten_config

    known = flatten_config(checkpoints.config_to_dict(config_lib.load(base)))
    saved_fields = flatten_config(checkpoints.config_to_dict(saved))
    return config_lib.load(base, {field: value for field, value in saved_fields.items()
                                  if field in known and field not in DERIVED_FIELDS})


def _binned_auc(scores, labels, input_mask) -> float:
    from electra_jax import objective

    pos, neg = objective.token_auc_histograms(scores, labels, input_mask)
    return float(objective.auc_from_histograms(pos, neg))


def electric_decomposition(trainer, params, config, batches) -> dict:
    """Electric's NCE logit taken apart over `batches`, (batch, rng) pairs such as pretrain.eval_batches gives
    (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from electra_jax import objective

    d = config.data

    @jax.jit
    def parts(params, batch, rng):
        f = objective.forward(params, batch, rng, model=trainer.program.model, config=config, train=False)
        log_probs = jax.nn.log_softmax(f.cloze_logits.astype(jnp.float32), axis=-1)
        entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
        return {"energy": f.disc_logits.astype(jnp.float32), "total": objective.electric_logits(
                    f.disc_logits, f.cloze_logits, f.fake_ids, config.objective.mask_prob),
                "log_q": objective.token_log_probs(f.cloze_logits, f.fake_ids),
                "log_q_original": objective.token_log_probs(f.cloze_logits, f.input_ids), "entropy": entropy,
                "written": f.labels, "changed": f.changed, "input_mask": f.input_mask,
                "inner": objective.candidates_mask(f.input_ids, f.input_mask, (d.cls_id, d.sep_id))}

    outputs = [jax.device_get(parts(params, batch, rng)) for batch, rng in batches]
    a = {key: np.concatenate([out[key] for out in outputs]) for key in outputs[0]}
    real, written = a["input_mask"].astype(bool), a["written"].astype(bool)
    left = a["inner"].astype(bool) & ~written
    slope, _ = np.polyfit(-a["log_q"][left], a["energy"][left], 1)
    share = a["written"][real].mean()
    nce_loss, _ = objective.disc_loss(a["total"], a["written"], a["input_mask"])  # the mean over the real tokens
    return {"total_auc_written": _binned_auc(a["total"], a["written"], a["input_mask"]),
            "energy_auc_changed": _binned_auc(a["energy"], a["changed"], a["input_mask"]),
            "noise_auc_changed": _binned_auc(a["log_q"], a["changed"], a["input_mask"]),
            "noise_entropy": float(a["entropy"][written].mean()),
            "noise_cross_entropy": float(-a["log_q_original"][written].mean()),
            "energy_slope": float(slope),
            "energy_correlation": float(np.corrcoef(-a["log_q"][left], a["energy"][left])[0, 1]),
            "nce_loss": float(nce_loss),
            "nce_loss_prior": float(-(share * np.log(share) + (1 - share) * np.log(1 - share)))}


def evaluate_run(workdir: Path, base: str) -> list[dict]:
    import jax

    from electra_jax import pretrain, sharding
    from electra_jax import train_state as train_state_lib
    from electra_jax.checkpoint_formats import open_checkpoint

    checkpoint = open_checkpoint(str(workdir), flag="RUN_DIR")
    config = _current_config(checkpoint.config, base)
    step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())  # what it read
    if not config.data.eval_files:
        raise ValueError(f"{workdir}: its config has no data.eval_files to evaluate on")
    mesh = sharding.make_mesh(config.mesh)
    trainer = train_state_lib.Trainer(config, mesh)
    compiled = trainer.compile(include_eval=True, log_memory=False)
    per_host = config.train.batch_size // jax.process_count()
    rows = []
    for label, params in (("init", trainer.init_state(config.train.seed).params),
                          ("newest", trainer.state_from_params(checkpoint.params, config.train.seed).params)):
        metrics = pretrain.evaluate(trainer, compiled, params, config, per_host)
        rows.append({"run": workdir.name, "params": label, "step": 0 if label == "init" else step,
                     "objective": config.objective.kind, "embedding_sharing": config.model.embedding_sharing,
                     **{k: metrics[k] for k in KEYS if k in metrics}})
        if config.objective.kind == "electric":
            parts = electric_decomposition(trainer, params, config, pretrain.eval_batches(trainer, config, per_host))
            for mine, theirs in (("total_auc_written", "disc_auc_tokens"), ("energy_auc_changed", "energy_auc_tokens")):
                if abs(parts[mine] - metrics[theirs]) > 2e-3:  # the same batches and bins: only float noise
                    raise RuntimeError(f"{workdir}: the decomposition's {mine} {parts[mine]:.4f} is not the eval's "
                                       f"{theirs} {metrics[theirs]:.4f}")
            rows[-1]["electric"] = parts
    logged = _logged_eval(workdir, step)
    if "eval_disc_auc" in logged:
        rows[-1]["logged_disc_auc"] = logged["eval_disc_auc"]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="pre-training workdirs")
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument("--base_config", default="configs/pretrain.py:tiny",
                        help="this version's config the saved one is laid over (fields it lacks keep these)")
    args = parser.parse_args(argv)
    import jax

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    machine = (f"{os.cpu_count()}-core {platform.machine()} CPU" if jax.default_backend() == "cpu"
               else jax.devices()[0].device_kind)
    document = {"date": datetime.date.today().isoformat(), "commit": commit, "machine": machine, "rows": []}
    if Path(args.output).exists():  # what the runs were trained with is known only to whoever wrote it there
        document.update({key: value for key, value in json.loads(Path(args.output).read_text()).items()
                         if key in ("runs_trained_at", "command")})
    for run in args.runs:
        document["rows"] += evaluate_run(Path(run).resolve(), args.base_config)
        Path(args.output).write_text(json.dumps(document, indent=1) + "\n")  # written as it grows
        for row in document["rows"][-2:]:
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
