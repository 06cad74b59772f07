"""Ask a pre-trained ELECTRA what it learned: the generator fills in [MASK]s, the discriminator spots replaced tokens,
and an Electric discriminator scores how plausible a sentence is.

    python -m electra_jax.predict fill_mask --checkpoint=WORKDIR_OR_HF_DIR --text="the [MASK] sat on the mat." --top_k=5
    python -m electra_jax.predict detect --checkpoint=WORKDIR_OR_HF_DIR --text="the cat ate on the mat."
    python -m electra_jax.predict score --checkpoint=ELECTRIC_WORKDIR_OR_HF_DIR --text="the cat sat on the mat."

`--checkpoint` is anything `checkpoint_formats.open_checkpoint` reads: a pre-training workdir, a checkpoint folder,
a params-only export, an HF folder (one holding config.json, or the OUT folder of `convert to_hf` with
discriminator/ and generator/ inside) or an original TF checkpoint. The vocabulary is --vocab, else the one the
checkpoint names.

In notebooks:

    params, config = predict.load("workdirs/small")
    tok = predict.load_tokenizer(config)
    predict.fill_mask(params, config, tok, "the [MASK] sat on the mat.", top_k=5)
    predict.detect(params, config, tok, "the cat ate on the mat.")
    predict.score(params, config, tok, "the cat sat on the mat.")      # Electric: energy, per-token energies
    predict.rerank(params, config, tok, ["the cat sat.", "the cat sit."])  # lowest energy first
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MASK_LITERAL = "[MASK]"
COMMANDS = ("fill_mask", "detect", "score")


# ---------------------------------------------------------------------------------------------------------
# Loading


def load(path: str, generator: str | None = None) -> tuple[dict, Any]:
    """(params, config) of any checkpoint `checkpoint_formats.open_checkpoint` reads (see the module docstring)."""
    from electra_jax.checkpoint_formats import open_checkpoint

    checkpoint = open_checkpoint(path, generator, flag="--checkpoint")
    return checkpoint.params, checkpoint.config


def load_tokenizer(config: Any, vocab: str | None = None, lower_case: bool | None = None):
    """The tokenizer of a checkpoint: `vocab`, else config.data.vocab, else the records' metadata.json; with the
    checkpoint's casing (unless `lower_case` is given) and config.data.strip_accents."""
    from electra_jax.checkpoint_formats import find_vocab
    from electra_jax.data import tokenizer

    path, configured_lower_case = find_vocab(config, vocab)
    data = config.get("data", {}) if hasattr(config, "get") else {}
    return tokenizer(path, lower_case=configured_lower_case if lower_case is None else lower_case,
                     strip_accents=data.get("strip_accents"))


# ---------------------------------------------------------------------------------------------------------
# Inputs


def _model_vocab_size(config: Any) -> int:
    model = config.model if "model" in config else config
    return int(model.vocab_size)


def _check_tokenizer(config: Any, tok) -> None:
    # A different vocabulary gives fluent-looking garbage rather than an error, so refuse it up front.
    if tok.vocab_size != _model_vocab_size(config):
        raise ValueError(
            f"the vocabulary {tok.path} has {tok.vocab_size} tokens but the model was trained with "
            f"config.model.vocab_size = {_model_vocab_size(config)}; pass --vocab=PATH to the vocabulary the "
            "pre-training records were built with")


def encode(tok, text: str) -> tuple[list[int], list[int]]:
    """[CLS] text [SEP] as ids, with each literal "[MASK]" mapped to the mask id; also the mask positions.

    The tokenizers do not protect special tokens (a literal "[MASK]" would become "[", "mask", "]"), so the
    text is split around "[MASK]" and the pieces are encoded separately.
    """
    ids = [tok.cls_id]
    positions = []
    for i, piece in enumerate(text.split(MASK_LITERAL)):
        if i > 0:
            positions.append(len(ids))
            ids.append(tok.mask_id)
        if piece.strip():
            ids.extend(tok.encode(piece))
    ids.append(tok.sep_id)
    return ids, positions


def _check_length(config: Any, ids: Sequence[int]) -> None:
    model = config.model if "model" in config else config
    if len(ids) > model.max_position_embeddings:
        raise ValueError(f"the text is {len(ids)} tokens with [CLS] and [SEP], more than the model's "
                         f"max_position_embeddings = {model.max_position_embeddings}; shorten it")


# ---------------------------------------------------------------------------------------------------------
# Predictions


def fill_mask(params: dict, config: Any, tok, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The generator's `top_k` (token, probability) candidates for each [MASK] in `text`, in order."""
    from electra_jax import modeling

    _check_tokenizer(config, tok)
    if "generator_predictions" not in params:
        raise ValueError("these parameters hold no generator (a discriminator-only import); load a pre-training "
                         "checkpoint, or give the HF generator folder with --generator")
    ids, positions = encode(tok, text)
    if not positions:
        raise ValueError(f"the text has no {MASK_LITERAL}: write one where the generator should fill in a word, "
                         "e.g. --text='the [MASK] sat on the mat.'")
    _check_length(config, ids)
    logits = modeling.generator_logits(params, config, jnp.asarray([ids], jnp.int32))[0]
    probs = np.asarray(jax.nn.softmax(logits[jnp.asarray(positions)].astype(jnp.float32), axis=-1))
    top_k = max(1, min(int(top_k), probs.shape[-1]))
    results = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:top_k]
        tokens = tok.convert_ids_to_tokens(best.tolist())
        results.append([(token, float(row[i])) for token, i in zip(tokens, best)])
    return results


def detect(params: dict, config: Any, tok, text: str) -> list[tuple[str, float]]:
    """The discriminator's probability that each token of `text` was replaced ([CLS] and [SEP] left out).

    For an Electric checkpoint with its generator, that is its NCE posterior, sigmoid(energy + log q(x_t) +
    log(mask_prob / (1 - mask_prob))), as in training; without the generator (an HF folder), sigmoid(energy).
    """
    from electra_jax import modeling, objective

    _check_tokenizer(config, tok)
    ids, _ = encode(tok, text)
    _check_length(config, ids)
    batch = jnp.asarray([ids], jnp.int32)
    logits = modeling.discriminator_logits(params, config, batch)
    if is_electric(config) and "generator_predictions" in params:
        cloze = modeling.generator_logits(params, config, batch)
        logits = objective.electric_logits(logits, cloze, batch, config.objective.mask_prob)
    logits = logits[0]
    probs = np.asarray(jax.nn.sigmoid(logits.astype(jnp.float32)))
    inner = ids[1:-1]
    return list(zip(tok.convert_ids_to_tokens(inner), (float(p) for p in probs[1:-1])))


class Energy(NamedTuple):
    """Electric's energy of a text: the sum over its tokens, and each token's E(x)_t ([CLS]/[SEP] left out)."""

    energy: float
    tokens: list[tuple[str, float]]


def _energies(params: dict, config: Any, tok, texts: Sequence[str]) -> list[Energy]:
    from electra_jax import modeling

    _check_tokenizer(config, tok)
    encoded = [encode(tok, text)[0] for text in texts]
    for ids in encoded:
        _check_length(config, ids)
    # One padded batch, one discriminator pass: padding is masked, so each row's energies are its own.
    width = max(len(ids) for ids in encoded)
    batch = np.zeros((len(encoded), width), np.int32)
    mask = np.zeros((len(encoded), width), np.int32)
    for row, ids in enumerate(encoded):
        batch[row, : len(ids)], mask[row, : len(ids)] = ids, 1
    logits = np.asarray(modeling.discriminator_logits(params, config, batch, input_mask=mask), np.float64)
    results = []
    for row, ids in enumerate(encoded):
        inner = logits[row, 1: len(ids) - 1]
        results.append(Energy(float(inner.sum()), list(zip(tok.convert_ids_to_tokens(ids[1:-1]), inner.tolist()))))
    return results


def score(params: dict, config: Any, tok, text: str) -> Energy:
    """Electric's energy of `text` from one discriminator pass, with no masking passes (Clark et al., EMNLP 2020).

    Electric's discriminator is trained so that sigmoid(logit + log q(x_t) + log(p / (1 - p))) is the
    probability that x_t came from the noise q, which makes its raw logit the energy E(x)_t of the model
    p(x_t | context) ∝ exp(-E(x)_t). The sum over the tokens is an unnormalised negative pseudo-log-likelihood:
    lower means more plausible, which is how Electric re-ranks candidates (`rerank`). A discriminator trained
    with ELECTRA's objective gives numbers too, but they are replaced-token scores, not energies.
    """
    return _energies(params, config, tok, [text])[0]


def rerank(params: dict, config: Any, tok, texts: Sequence[str]) -> list[tuple[str, float]]:
    """(text, energy) for each text, lowest energy (most plausible) first; all texts in one batch."""
    energies = _energies(params, config, tok, list(texts))
    return sorted(((text, e.energy) for text, e in zip(texts, energies)), key=lambda pair: pair[1])


def is_electric(config: Any) -> bool:
    return "objective" in config and config.objective.kind == "electric"


# ---------------------------------------------------------------------------------------------------------
# Printing


def format_fill_mask(text: str, results: list[list[tuple[str, float]]]) -> str:
    lines = [text]
    for i, candidates in enumerate(results, 1):
        lines.append(f"[MASK] {i}: " + ", ".join(f"{token} {prob:.3f}" for token, prob in candidates))
    return "\n".join(lines)


def format_score(result: Energy) -> str:
    width = max([len(token) for token, _ in result.tokens] + [5])
    lines = [f"energy {result.energy:.4f} (sum over {len(result.tokens)} tokens; lower = more plausible)",
             f"{'token':<{width}}  energy"]
    lines += [f"{token:<{width}}  {energy:.4f}" for token, energy in result.tokens]
    return "\n".join(lines)


def format_detect(results: list[tuple[str, float]], threshold: float = 0.5, color: bool = False) -> str:
    """One line per token with its probability; tokens above `threshold` are marked (and red with `color`)."""
    width = max([len(token) for token, _ in results] + [5])
    lines = [f"{'token':<{width}}  p(replaced)"]
    marked = []
    for token, prob in results:
        replaced = prob > threshold
        line = f"{token:<{width}}  {prob:.3f}" + ("  <- replaced?" if replaced else "")
        if replaced and color:
            line = f"\033[1;31m{line}\033[0m"
        lines.append(line)
        marked.append(f"[{token}]" if replaced else token)
    lines.append("tokens judged replaced (p > {:.2f}) are bracketed: {}".format(threshold, " ".join(marked)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Command line


def define_flags() -> None:
    """Defines this tool's flags (only when it runs as a program, so every tool imports side by side)."""
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "An electra_jax workdir / checkpoint / params-only export, or an HF "
                        "ELECTRA folder (config.json inside, or the OUT folder of `convert to_hf`).")
    flags.DEFINE_string("generator", None, "An HF ElectraForMaskedLM folder, when --checkpoint is an HF "
                        "discriminator folder without its generator beside it.")
    flags.DEFINE_string("text", None, "The text; for fill_mask it holds one or more [MASK]; score gives its Electric "
                        "energy.")
    flags.DEFINE_integer("top_k", 5, "fill_mask: candidates shown per [MASK].")
    flags.DEFINE_float("threshold", 0.5, "detect: tokens with p(replaced) above this are marked.")
    flags.DEFINE_string("vocab", None, "The vocabulary (vocab.txt or .model) when the checkpoint does not name one "
                        "that exists here.")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) != 2 or argv[1] not in COMMANDS:
        from electra_jax.cli import did_you_mean

        raise app.UsageError(f"give one command: python -m electra_jax.predict {{{'|'.join(COMMANDS)}}} "
                             f"--checkpoint=PATH --text=TEXT (got {list(argv[1:])}){did_you_mean(argv[1:], COMMANDS)}")
    f = flags.FLAGS
    missing = [f"--{name}" for name in ("checkpoint", "text") if getattr(f, name) is None]
    if missing:
        raise ValueError(f"give {' and '.join(missing)} (--checkpoint=PATH --text=TEXT)")
    if not f.text.strip():
        example = "the [MASK] sat on the mat." if argv[1] == "fill_mask" else "the chef ate the meal."
        raise ValueError(f"--text is empty: give the text to {'fill in' if argv[1] == 'fill_mask' else 'check'}, "
                         f"e.g. --text='{example}'")
    params, config = load(f.checkpoint, f.generator)
    tok = load_tokenizer(config, f.vocab)
    if argv[1] == "fill_mask":
        print(format_fill_mask(f.text, fill_mask(params, config, tok, f.text, f.top_k)))
    elif argv[1] == "score":
        if not is_electric(config):
            print("note: the checkpoint does not say it was trained with objective.kind='electric' (HF folders "
                  "never do); only an Electric discriminator's logits are energies", file=sys.stderr)
        print(format_score(score(params, config, tok, f.text)))
    else:
        print(format_detect(detect(params, config, tok, f.text), f.threshold, color=sys.stdout.isatty()))


if __name__ == "__main__":
    from electra_jax import cli

    define_flags()
    cli.run(main)
