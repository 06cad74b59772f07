"""Original google-research/electra TensorFlow checkpoints -> electra_jax parameters.

Sizes, generator width/depth and untied embeddings are inferred from the variable shapes; the variable names
come from the mapping table (`Rule.tf`). TensorFlow is imported inside `from_tf_checkpoint`.
"""

from __future__ import annotations

import dataclasses
import os
import re

import ml_collections

from electra_jax import modeling
from electra_jax.config import finalize_model, model_defaults
from electra_jax.convert.hf import full_config
from electra_jax.convert.mapping import get_path, hf_rules, import_tensor, set_path, tf_rules

_TF_SLOT_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum")


@dataclasses.dataclass
class TFImportReport:
    """What `from_tf_checkpoint` found besides the weights it loaded; nothing is dropped silently."""

    loaded: list[str]
    optimizer_slots: list[str]
    global_step: int | None
    unknown: list[str]
    notes: list[str]

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} model variables",
                 f"global_step: {self.global_step if self.global_step is not None else 'absent'}",
                 f"optimizer slots not imported (optimizer state starts fresh): {len(self.optimizer_slots)}"]
        lines += [f"  {name}" for name in self.optimizer_slots]
        lines.append(f"unknown variables not imported: {len(self.unknown)}")
        lines += [f"  {name}" for name in self.unknown]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def set_casing(config, lower_case: bool | None = None) -> str | None:
    """Sets config.data.lower_case of a TF import, which the checkpoint does not record: `lower_case` when given,
    else cased exactly when config.data.vocab is a cased one (`vocab_is_cased`: upper-case tokens, as the
    original's cased models have), else the original's default (lower-cased). Returns a note for the import
    report when the vocabulary decided, or held a few upper-case tokens but not enough to."""
    from electra_jax.data.tokenization import is_cased_share, upper_case_tokens

    if lower_case is not None:
        config.data.lower_case = bool(lower_case)
        return None
    vocab = str(config.data.get("vocab", "") or "")
    if not (vocab and "://" not in vocab and os.path.isfile(vocab)):
        return None
    upper, total = upper_case_tokens(vocab) or ([], 0)
    shown = ", ".join(repr(t) for t in upper[:5]) + (", ..." if len(upper) > 5 else "")
    if is_cased_share(len(upper), total):
        config.data.lower_case = False
        return (f"the vocabulary {vocab} holds upper-case tokens ({len(upper)} of {total}: {shown}): read as a "
                "cased model (data.lower_case=False; the TF checkpoint does not record its casing; from_tf "
                "--lower_case overrides)")
    if upper:
        return (f"the vocabulary {vocab} holds {len(upper)} upper-case token(s) of {total} ({shown}), too few for "
                "a cased vocabulary: read as lower-cased (pass from_tf --nolower_case if the model was trained "
                "cased)")
    return None


def _count_layers(shapes: dict, prefix: str) -> int:
    found = {int(m.group(1)) for name in shapes for m in [re.match(rf"{prefix}encoder/layer_(\d+)/", name)] if m}
    if found and found != set(range(len(found))):
        raise ValueError(f"{prefix}encoder has layers {sorted(found)}: not a contiguous 0..N-1 range")
    return len(found)


def model_config_from_tf(shapes: dict[str, tuple], num_heads: int | None = None,
                         generator_num_heads: int | None = None) -> tuple[ml_collections.ConfigDict, bool, bool]:
    """(model section, has_generator, mlm_only) inferred from original TF variable shapes.

    Heads are not recorded in a checkpoint: the original uses hidden_size // 64 for both networks
    (configure_pretraining.py), which is the default here; pass num_heads to override.
    """
    word = "electra/embeddings/word_embeddings"
    query = "electra/encoder/layer_0/attention/self/query/kernel"
    for name in (word, query):
        if name not in shapes:
            raise ValueError(f"the checkpoint has no variable {name}: not an original ELECTRA checkpoint "
                             f"(first variables: {sorted(shapes)[:8]})")
    m = model_defaults()
    m.vocab_size, m.embedding_size = (int(d) for d in shapes[word])
    m.hidden_size = int(shapes[query][1])
    m.num_layers = _count_layers(shapes, "electra/")
    m.num_heads = num_heads or max(1, m.hidden_size // 64)
    m.intermediate_size = int(shapes["electra/encoder/layer_0/intermediate/dense/kernel"][1])
    m.max_position_embeddings = int(shapes["electra/embeddings/position_embeddings"][0])
    m.type_vocab_size = int(shapes["electra/embeddings/token_type_embeddings"][0])
    gen_query = "generator/encoder/layer_0/attention/self/query/kernel"
    generator = gen_query in shapes
    mlm_only = not generator and "generator_predictions/output_bias" in shapes and not any(
        n.startswith("discriminator_predictions/") for n in shapes)
    if generator:
        m.generator_hidden_size = int(shapes[gen_query][1])
        m.generator_num_layers = _count_layers(shapes, "generator/")
        m.generator_num_heads = generator_num_heads or max(1, m.generator_hidden_size // 64)
        m.generator_intermediate_size = int(shapes["generator/encoder/layer_0/intermediate/dense/kernel"][1])
        m.generator_hidden_fraction = min(1.0, m.generator_hidden_size / m.hidden_size)
        m.untied_generator_embeddings = "generator/embeddings/word_embeddings" in shapes
    return finalize_model(m), generator, mlm_only


def from_tf_checkpoint(path: str, num_heads: int | None = None, generator_num_heads: int | None = None
                       ) -> tuple[dict, ml_collections.ConfigDict, TFImportReport]:
    """Reads a checkpoint in the original google-research/electra layout -> (params, config, report).

    Sizes, generator width/depth and untied embeddings are inferred from the tensors. Optimizer slots
    (adam_m/adam_v), global_step and variables this mapping does not know are listed in the report.
    """
    import tensorflow as tf

    try:
        listed = tf.train.list_variables(path)
    except (tf.errors.NotFoundError, ValueError) as e:
        raise FileNotFoundError(f"no TF checkpoint at {path} (give the prefix, e.g. model.ckpt-1000, or its "
                                f"folder): {e}") from e
    reader = tf.train.load_checkpoint(path)
    slots = sorted(n for n, _ in listed if n.endswith(_TF_SLOT_SUFFIXES))
    model_shapes = {n: tuple(s) for n, s in listed if n not in slots and n != "global_step"}
    model, generator, mlm_only = model_config_from_tf(model_shapes, num_heads, generator_num_heads)
    cfg = modeling.ModelConfig.from_config(model, mlm_only=mlm_only)
    shapes = modeling.param_shapes(cfg)
    disc_rules, gen_rules = hf_rules(cfg)
    rules = tf_rules(cfg) if (generator or mlm_only) else disc_rules
    # A fine-tuned checkpoint (task_specific/...) keeps the encoder but not the replaced-token head.
    headless = not (generator or mlm_only) and not any(n.startswith("discriminator_predictions/") for n in model_shapes)
    if headless:
        rules = [rule for rule in rules if rule.path[0] != "discriminator_predictions"]
    missing = [rule.tf for rule in rules if rule.tf not in model_shapes]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} variables the inferred config needs, e.g. {missing[:5]}")
    params: dict = {}
    for rule in rules:
        value = import_tensor(reader.get_tensor(rule.tf), rule.kind, get_path(shapes, rule.path).shape, cfg, rule.tf,
                              torch_layout=False)
        set_path(params, rule.path, value)
    used = {rule.tf for rule in rules}
    notes = []
    if not generator and not mlm_only:
        notes.append("no generator in the checkpoint: the import holds the discriminator only")
    if mlm_only:
        notes.append("no generator encoder and no discriminator head: imported as a masked-LM baseline")
    if headless:
        notes.append(f"no discriminator_predictions: the encoder alone ({modeling.HEADLESS})")
    global_step = int(reader.get_tensor("global_step")) if "global_step" in dict(listed) else None
    report = TFImportReport(loaded=sorted(used), optimizer_slots=slots, global_step=global_step,
                            unknown=sorted(n for n in model_shapes if n not in used), notes=notes)
    return params, full_config(model, mlm_only=mlm_only), report
