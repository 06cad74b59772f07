"""Ask a pre-trained ELECTRA what it learned: the generator fills in [MASK]s, the discriminator spots replaced tokens.

    python -m electra_jax.predict fill_mask --checkpoint=WORKDIR_OR_HF_DIR --text="the [MASK] sat on the mat." --top_k=5
    python -m electra_jax.predict detect --checkpoint=WORKDIR_OR_HF_DIR --text="the cat ate on the mat."

`--checkpoint` is anything `checkpoint_formats.open_checkpoint` reads: a pre-training workdir, a checkpoint folder,
a params-only export, an HF folder (one holding config.json, or the OUT folder of `convert to_hf` with
discriminator/ and generator/ inside) or an original TF checkpoint. The vocabulary is --vocab, else the one the
checkpoint names.

In notebooks:

    params, config = predict.load("workdirs/small")
    tok = predict.load_tokenizer(config)
    predict.fill_mask(params, config, tok, "the [MASK] sat on the mat.", top_k=5)
    predict.detect(params, config, tok, "the cat ate on the mat.")
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MASK_LITERAL = "[MASK]"
COMMANDS = ("fill_mask", "detect")


# ---------------------------------------------------------------------------------------------------------
# Loading


def load(path: str, generator: str | None = None) -> tuple[dict, Any]:
    """(params, config) of any checkpoint `checkpoint_formats.open_checkpoint` reads (see the module docstring)."""
    from electra_jax.checkpoint_formats import open_checkpoint

    checkpoint = open_checkpoint(path, generator, flag="--checkpoint")
    return checkpoint.params, checkpoint.config


def load_tokenizer(config: Any, vocab: str | None = None, lower_case: bool | None = None):
    """The tokenizer of a checkpoint: `vocab`, else config.data.vocab, else the records' metadata.json."""
    from electra_jax.checkpoint_formats import find_vocab
    from electra_jax.data import tokenizer

    path, configured_lower_case = find_vocab(config, vocab)
    return tokenizer(path, lower_case=configured_lower_case if lower_case is None else lower_case)


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
    """The discriminator's probability that each token of `text` was replaced ([CLS] and [SEP] left out)."""
    from electra_jax import modeling

    _check_tokenizer(config, tok)
    ids, _ = encode(tok, text)
    _check_length(config, ids)
    logits = modeling.discriminator_logits(params, config, jnp.asarray([ids], jnp.int32))[0]
    probs = np.asarray(jax.nn.sigmoid(logits.astype(jnp.float32)))
    inner = ids[1:-1]
    return list(zip(tok.convert_ids_to_tokens(inner), (float(p) for p in probs[1:-1])))


# ---------------------------------------------------------------------------------------------------------
# Printing


def format_fill_mask(text: str, results: list[list[tuple[str, float]]]) -> str:
    lines = [text]
    for i, candidates in enumerate(results, 1):
        lines.append(f"[MASK] {i}: " + ", ".join(f"{token} {prob:.3f}" for token, prob in candidates))
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
    flags.DEFINE_string("text", None, "The text; for fill_mask it holds one or more [MASK].")
    flags.DEFINE_integer("top_k", 5, "fill_mask: candidates shown per [MASK].")
    flags.DEFINE_float("threshold", 0.5, "detect: tokens with p(replaced) above this are marked.")
    flags.DEFINE_string("vocab", None, "The vocabulary (vocab.txt or .model) when the checkpoint does not name one "
                        "that exists here.")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"give one command: python -m electra_jax.predict {{{'|'.join(COMMANDS)}}} "
                             f"--checkpoint=PATH --text=TEXT (got {list(argv[1:])})")
    f = flags.FLAGS
    try:
        if not f.checkpoint or not f.text:
            raise ValueError("give --checkpoint=PATH and --text=TEXT")
        params, config = load(f.checkpoint, f.generator)
        tok = load_tokenizer(config, f.vocab)
        if argv[1] == "fill_mask":
            print(format_fill_mask(f.text, fill_mask(params, config, tok, f.text, f.top_k)))
        else:
            print(format_detect(detect(params, config, tok, f.text), f.threshold, color=sys.stdout.isatty()))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
