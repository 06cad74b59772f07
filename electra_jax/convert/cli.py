r"""The command line: `python -m electra_jax.convert {to_hf|from_hf|from_tf|check} --flags`.

  python -m electra_jax.convert to_hf --checkpoint=WORKDIR --output_dir=OUT [--dtype=bfloat16] [--vocab=PATH]
  python -m electra_jax.convert from_hf --input=HF_DISC_DIR [--generator=HF_GEN_DIR] --output_dir=OUT
  python -m electra_jax.convert from_hf --input=TO_HF_OUT --output_dir=OUT     # discriminator/ + generator/
  python -m electra_jax.convert from_tf --input=TF_CKPT --output_dir=OUT
  python -m electra_jax.convert check --checkpoint=ELECTRA_JAX_CKPT --hf_dir=OUT

`--checkpoint` is anything `checkpoint_formats.open_checkpoint` reads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

from absl import logging

from electra_jax.convert.hf import has_generator
from electra_jax.convert.hf_folders import HF_DTYPES, load_hf, save_hf
from electra_jax.convert.parity import check_parity
from electra_jax.convert.tf import from_tf_checkpoint, set_casing
from electra_jax.convert.tokenizer_files import HF_TOKENIZER_CLASSES

COMMANDS = ("to_hf", "from_hf", "from_tf", "check")
# The flags each command reads; one given on the command line that its command does not read is refused, not ignored.
COMMAND_FLAGS = {
    "to_hf": ("checkpoint", "output_dir", "dtype", "vocab", "tokenizer_class", "discriminator_only", "check",
              "tolerance"),
    "from_hf": ("input", "generator", "output_dir", "check", "tolerance"),
    "from_tf": ("input", "output_dir", "vocab", "lower_case", "num_heads", "generator_num_heads"),
    "check": ("checkpoint", "hf_dir", "tolerance"),
}


def _check_import_output_dir(output_dir: str) -> None:
    """Refuses a pre-training workdir (or its checkpoints) as an import's --output_dir, before any reading.

    A params export written there would hide the run's own steps: every reader of the folder (resume, --init,
    to_hf) takes an export before the latest step.
    """
    from electra_jax import checkpoints

    root = checkpoints.as_path(output_dir)
    if not root.is_dir():
        return
    if ((root / checkpoints.CHECKPOINTS_SUBDIR).is_dir() or (root / checkpoints.STATE_ITEM).is_dir()
            or any(c.is_dir() and c.name.isdigit() and (c / checkpoints.STATE_ITEM).is_dir() for c in root.iterdir())):
        raise ValueError(f"--output_dir={output_dir} holds pre-training checkpoints; an imported checkpoint written "
                         "there would be read instead of the run's own steps. Pick a new folder, and pass it as "
                         "pretrain's --config.checkpoint.init for continued pre-training")


def _check_vocab_size(vocab: str, config) -> None:
    from electra_jax.data import tokenizer

    size, rows = tokenizer(vocab, lower_case=config.data.lower_case).vocab_size, config.model.vocab_size
    if size > rows:
        raise ValueError(f"the vocabulary {vocab} has {size} tokens but the checkpoint's embedding table has "
                         f"{rows} rows; pass the vocabulary the checkpoint was trained with")
    if size < rows:  # some published folders pad the table; a vocabulary far smaller is probably another one
        logging.warning("the vocabulary %s has %d tokens and the checkpoint's embedding table %d rows: the last %d "
                        "rows are never read (padding, or the wrong vocabulary)", vocab, size, rows, rows - size)


def _save_checkpoint(output_dir: str, params, config, vocab: str | None) -> None:
    from electra_jax import checkpoints

    if vocab:
        _check_vocab_size(vocab, config)
    os.makedirs(output_dir, exist_ok=True)
    if vocab:  # keep the vocabulary with the weights, so the checkpoint is self-contained
        copy = os.path.join(os.path.abspath(output_dir), os.path.basename(vocab))
        if os.path.abspath(vocab) != copy:
            shutil.copyfile(vocab, copy)
        config.data.vocab = copy
    checkpoints.save_params(output_dir, params, config)


def run(command: str, args: Any) -> None:
    """Runs one subcommand with the parsed flags (an object with the attributes `define_flags` defines)."""
    if command == "to_hf":
        _require(args, "checkpoint", "output_dir")
        params, config = _open(args.checkpoint)
        written = save_hf(params, config, args.output_dir, vocab_path=args.vocab, dtype=args.dtype,
                          discriminator_only=args.discriminator_only, tokenizer_class=args.tokenizer_class)
        for name, folder in written.items():
            print(f"wrote {name}: {folder}")
        if "discriminator" not in written:
            print("note: a masked-LM baseline has no discriminator; fine-tune from the generator folder's encoder")
        if args.check:
            check_parity(params, config, args.output_dir, args.tolerance)
    elif command == "from_hf":
        _require(args, "input", "output_dir")
        _check_import_output_dir(args.output_dir)
        from electra_jax.checkpoint_formats import hf_folders

        # A `convert to_hf` OUT folder, or its discriminator/ with generator/ beside it, brings both networks, as
        # finetune --init reads them (checkpoint_formats); any other folder is read as given.
        main, generator = hf_folders(args.input, args.generator) or (args.input, args.generator)
        generator = args.generator or generator  # a --generator given is read (and named when it is wrong)
        params, config = load_hf(main, generator)
        vocab = config.data.vocab or None
        _save_checkpoint(args.output_dir, params, config, vocab)
        if config.objective.kind == "mlm":
            what = "a masked-LM model (an ElectraForMaskedLM alone)"
            parent, name = os.path.split(os.path.abspath(main))
            beside = os.path.join(parent, "discriminator")
            if name == "generator" and os.path.isdir(beside):
                what += f"; {beside} is beside it: for the ELECTRA pair pass their parent folder ({parent}) as --input"
        elif has_generator(params):
            what = "discriminator + generator"
        else:
            what = ("discriminator only (for fine-tuning; continued pre-training needs the generator too: "
                    "--generator=HF_GEN_DIR)")
        print(f"wrote {what} to {args.output_dir}" + ("" if vocab else " (no vocabulary found in the HF folder)"))
        if args.check:
            folders = ({"generator": main} if config.objective.kind == "mlm"
                       else {"discriminator": main, "generator": generator})
            check_parity(params, config, None, args.tolerance, folders=folders)
    elif command == "from_tf":
        _require(args, "input", "output_dir")
        _check_import_output_dir(args.output_dir)
        params, config, report = from_tf_checkpoint(args.input, args.num_heads, args.generator_num_heads)
        config.data.vocab = args.vocab or ""
        note = set_casing(config, args.lower_case)
        report.notes.extend([note] if note else [])
        print(report.summary())
        _save_checkpoint(args.output_dir, params, config, args.vocab)
        print(f"wrote {args.output_dir}")
    elif command == "check":
        _require(args, "checkpoint", "hf_dir")
        params, config = _open(args.checkpoint)
        check_parity(params, config, args.hf_dir, args.tolerance)
    else:
        raise ValueError(f"unknown command {command!r}; choose one of {list(COMMANDS)}")


def _open(path: str):
    from electra_jax.checkpoint_formats import open_checkpoint

    checkpoint = open_checkpoint(path, flag="--checkpoint")
    return checkpoint.params, checkpoint.config


def _require(args, *names: str) -> None:
    missing = [f"--{name}" for name in names if not getattr(args, name)]
    if missing:
        raise ValueError(f"this command needs {' and '.join(missing)}")


def unread_flags_error(command: str, given: set[str]) -> str | None:
    """The one-line error for flags of this tool given to a command that does not read them (None: all read)."""
    ours = {name for names in COMMAND_FLAGS.values() for name in names}
    unread = sorted((given & ours) - set(COMMAND_FLAGS[command]))
    if not unread:
        return None
    hint = ""
    if "checkpoint" in unread:
        hint = f" ({command} takes its source as --input; --checkpoint is to_hf's and check's)"
    elif "input" in unread:
        hint = f" ({command} takes an electra_jax checkpoint as --checkpoint; --input is from_hf's and from_tf's)"
    return (f"{command} does not read {', '.join('--' + name for name in unread)}{hint}; it reads "
            f"{', '.join('--' + name for name in COMMAND_FLAGS[command])}")


def define_flags() -> None:
    """Defines the flags of every subcommand (only when the tool runs as a program)."""
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "to_hf/check: an electra_jax workdir, checkpoint folder or "
                        "params-only export.")
    flags.DEFINE_string("output_dir", None, "to_hf: folder for discriminator/ and generator/ (mlm: generator/ "
                        "only; electric: discriminator/ only, its two-tower generator has no HF class); from_*: the "
                        "params-only electra_jax checkpoint to write.")
    flags.DEFINE_enum("dtype", "float32", list(HF_DTYPES), "to_hf: weight dtype of model.safetensors.")
    flags.DEFINE_string("vocab", None, "to_hf: the vocabulary (vocab.txt or .model) when config.data.vocab and "
                        "the records' metadata do not name one; from_tf: a vocabulary to store alongside.")
    flags.DEFINE_enum("tokenizer_class", "BertTokenizer", list(HF_TOKENIZER_CLASSES),
                      "to_hf: tokenizer_class in tokenizer_config.json. BertTokenizer is what released ELECTRA "
                      "models use (transformers 5 rebuilds it from vocab.txt with a 100-character word limit); "
                      "PreTrainedTokenizerFast loads tokenizer.json as written (the original 200 limit).")
    flags.DEFINE_bool("discriminator_only", False, "to_hf: export only the discriminator (for checkpoints "
                      "without a generator).")
    flags.DEFINE_string("input", None, "from_hf: an HF ElectraForPreTraining folder (or ElectraForMaskedLM alone); "
                        "from_tf: a TF checkpoint prefix or folder.")
    flags.DEFINE_string("generator", None, "from_hf: the matching HF ElectraForMaskedLM folder (continued "
                        "pre-training needs it).")
    flags.DEFINE_string("hf_dir", None, "check: a folder written by to_hf.")
    flags.DEFINE_bool("check", False, "to_hf and from_hf: run the parity check on the converted weights.")
    flags.DEFINE_float("tolerance", None, "check, and to_hf/from_hf with --check: largest allowed |logit difference| "
                       "(default 1e-4 for a float32 "
                       "export, 5% of the logit scale for bfloat16).")
    flags.DEFINE_bool("lower_case", None, "from_tf: whether the model lower-cases its input, which a TF checkpoint "
                      "does not record; default: cased exactly when --vocab is a cased one (0.5% or more of its "
                      "tokens hold upper-case letters).")
    flags.DEFINE_integer("num_heads", None, "from_tf: discriminator heads (default hidden_size // 64, as the "
                         "original).")
    flags.DEFINE_integer("generator_num_heads", None, "from_tf: generator heads (default width // 64).")


def main(argv: Sequence[str]) -> None:
    from absl import app, flags

    if len(argv) != 2 or argv[1] not in COMMANDS:
        from electra_jax.cli import did_you_mean

        raise app.UsageError(f"give one command: python -m electra_jax.convert {{{'|'.join(COMMANDS)}}} --flags "
                             f"(got {list(argv[1:])}){did_you_mean(argv[1:], COMMANDS)}")
    error = unread_flags_error(argv[1], {name for name in flags.FLAGS if flags.FLAGS[name].present})
    if error:
        raise app.UsageError(error)
    run(argv[1], flags.FLAGS)
