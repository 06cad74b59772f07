"""HF folders on disk: `save_hf` writes OUT/discriminator/ and OUT/generator/; `load_hf` reads one back.

Each folder holds config.json, model.safetensors (float32, or bfloat16 on request) and the tokenizer files;
`load_hf` also reads sharded safetensors and pytorch_model.bin. safetensors and torch load inside the functions.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
from absl import logging

from electra_jax import cli, modeling
from electra_jax.checkpoint_formats import find_vocab, hf_vocab
from electra_jax.convert.hf import from_hf_state_dicts, full_config, has_generator, to_hf_state_dicts, to_numpy
from electra_jax.convert.tokenizer_files import write_tokenizer_files


HF_DTYPES = ("float32", "bfloat16")
NETWORKS = ("discriminator", "generator")
STAGING_DIR = ".to_hf-staging"
# What `save_hf` and transformers' save_pretrained put in a model folder: an earlier export holding only these
# is replaced by a new one.
HF_FOLDER_FILES = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                   "pytorch_model*.bin", "pytorch_model.bin.index.json", "vocab.txt", "*.model", "tokenizer.json",
                   "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def _write_safetensors(state_dict: dict, path: str, dtype: str) -> None:
    metadata = {"format": "pt"}  # what transformers' save_pretrained writes
    if dtype == "float32":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in state_dict.items()}, path, metadata=metadata)
    else:  # numpy has no bfloat16 that safetensors accepts; go through torch
        import torch
        from safetensors.torch import save_file

        save_file({k: torch.from_numpy(np.array(v, np.float32)).to(torch.bfloat16) for k, v in state_dict.items()},
                  path, metadata=metadata)
    # safetensors creates the file 0600; give it the permissions every other exported file gets (0644 under
    # the usual umask), so a shared model folder is readable by others.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_hf(params, config, output_dir: str, vocab_path: str | None = None, dtype: str = "float32",
            discriminator_only: bool = False, tokenizer_class: str = "BertTokenizer") -> dict[str, str]:
    """Writes OUT/discriminator/ (ElectraForPreTraining) and OUT/generator/ (ElectraForMaskedLM).

    Each folder gets config.json, model.safetensors (float32, or bfloat16 on request) and tokenizer files.
    The vocabulary is `vocab_path`, else config.data.vocab, else the one named in the records' metadata.json.
    A masked-LM baseline (objective.kind='mlm') has no discriminator: only OUT/generator/ is written (its
    encoder loads into any ElectraFor* class for fine-tuning). Parameters without a generator (a discriminator
    imported for fine-tuning) raise unless `discriminator_only`. Returns {"discriminator"|"generator": folder}.
    An earlier export in `output_dir` is replaced whole, the network this export lacks included; a folder there
    holding files that no HF export writes is refused rather than deleted.
    """
    if dtype not in HF_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {list(HF_DTYPES)}")
    cfg = modeling.ModelConfig.from_config(config)
    params = modeling.unstack_layers(jax.device_get(params))
    if not has_generator(params) and not discriminator_only:
        raise ValueError("this checkpoint holds no generator (it was probably imported from a discriminator-only "
                         "HF folder); pass --discriminator_only (discriminator_only=True) to export "
                         "OUT/discriminator alone")
    config = config if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config)
    vocab, lower_case = find_vocab(config, vocab_path)
    strip_accents = config.get("data", {}).get("strip_accents")
    for name in NETWORKS:
        _check_replaceable(os.path.join(output_dir, name))
    disc, gen, (disc_config, gen_config) = to_hf_state_dicts(params, cfg)
    # Each folder is written whole under a staging folder, then replaces the earlier export's: a failed export
    # leaves the earlier one as it was, and no file of an earlier export (another tokenizer's vocabulary, the
    # other network of an earlier pair) stays to be read back with this one.
    staging = os.path.join(output_dir, STAGING_DIR)
    shutil.rmtree(staging, ignore_errors=True)
    staged = {}
    for name, state, hf_config in (("discriminator", disc, disc_config), ("generator", gen, gen_config)):
        if state is None or (name == "generator" and discriminator_only):
            continue
        folder = os.path.join(staging, name)
        # Tokenizer first: a wrong vocabulary fails before any model file is written.
        write_tokenizer_files(vocab, folder, cfg.vocab_size, lower_case, cfg.max_position_embeddings,
                              tokenizer_class, strip_accents=strip_accents)
        # The lm_head weight is tied to the word embeddings; like save_pretrained, store it once.
        state = {k: v for k, v in state.items() if k != "generator_lm_head.weight"}
        _write_safetensors(state, os.path.join(folder, "model.safetensors"), dtype)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(dict(hf_config, dtype=dtype), f, indent=2)
        staged[name] = folder
    written = {}
    for name in NETWORKS:
        final = os.path.join(output_dir, name)
        if os.path.exists(final):
            if name not in staged:
                logging.warning("removing %s, left by an earlier export: this checkpoint has no %s to export, "
                                "and a reader of %s would pair it with this export", final, name, output_dir)
            shutil.rmtree(final)
        if name in staged:
            os.replace(staged[name], final)
            written[name] = final
    shutil.rmtree(staging, ignore_errors=True)
    return written


def _check_replaceable(folder: str) -> None:
    """Raises when an earlier export's `folder` holds anything an HF model folder does not (it would be lost)."""
    if not os.path.exists(folder):
        return
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is a file; an export writes a folder there: move it or pick another output folder")
    foreign = sorted(n for n in os.listdir(folder)
                     if not os.path.isfile(os.path.join(folder, n))
                     or not any(fnmatch.fnmatch(n, pattern) for pattern in HF_FOLDER_FILES))
    if foreign:
        raise ValueError(f"{folder} holds {', '.join(foreign[:5])}, which an HF model export does not write; the "
                         "export replaces that folder whole, so move them away or pick another output folder")


def _read_hf_state_dict(folder: str) -> dict[str, np.ndarray]:
    """model.safetensors (single or sharded) or pytorch_model.bin -> {name: float32 numpy array}."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    binary = os.path.join(folder, "pytorch_model.bin")
    files: list[str] = []
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index) as f:
            files = [os.path.join(folder, n) for n in sorted(set(json.load(f)["weight_map"].values()))]
    state: dict[str, np.ndarray] = {}
    if files:
        try:  # torch reads bfloat16; numpy cannot
            from safetensors.torch import load_file
        except ImportError:
            from safetensors.numpy import load_file
        for file in files:
            try:
                tensors = load_file(file)
            except Exception as error:  # SafetensorError and friends: none of them names the file
                raise ValueError(f"{file} is not a readable safetensors file ({cli.one_line(error, 200)}); it is "
                                 "probably truncated or corrupt: export or download it again") from error
            state.update({k: np.asarray(to_numpy(v), np.float32) for k, v in tensors.items()})
    elif os.path.isfile(binary):
        import torch

        loaded = torch.load(binary, map_location="cpu", weights_only=True)
        state = {k: np.asarray(to_numpy(v), np.float32) for k, v in loaded.items()}
    else:
        raise FileNotFoundError(f"{folder} holds neither model.safetensors(.index.json) nor pytorch_model.bin")
    if not any(k.startswith("electra.") for k in state):  # an ElectraModel saved on its own has no prefix
        state = {("electra." + k if k.startswith(("embeddings", "encoder")) else k): v for k, v in state.items()}
    return state


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def load_hf(folder: str, generator_folder: str | None = None) -> tuple[dict, ml_collections.ConfigDict]:
    """An HF ELECTRA folder (+ optionally its generator) -> (params, full electra_jax config).

    `folder` is an ElectraForPreTraining discriminator (or an ElectraForMaskedLM alone: the masked-LM
    baseline). config.data.vocab points at the folder's vocab.txt / SentencePiece model when it has one.
    """
    for f in (folder, generator_folder):
        if not f:
            continue
        if not os.path.exists(f):
            raise FileNotFoundError(f"{f} does not exist (give the folder that save_pretrained or `convert to_hf` "
                                    "wrote)")
        if os.path.isfile(f):
            raise FileNotFoundError(f"{f} is a file: pass the HF model folder that holds it "
                                    f"({os.path.dirname(f) or '.'})")
        if not os.path.isfile(os.path.join(f, "config.json")):
            raise FileNotFoundError(f"{f} holds no config.json: not an HF model folder (give the folder that "
                                    "save_pretrained or `convert to_hf` wrote)")
    disc_config = _read_json(os.path.join(folder, "config.json"))
    gen_config = _read_json(os.path.join(generator_folder, "config.json")) if generator_folder else None
    disc_state = _read_hf_state_dict(folder)
    gen_state = _read_hf_state_dict(generator_folder) if generator_folder else None
    params, model_config = from_hf_state_dicts(disc_state, gen_state, disc_config, gen_config)
    vocab, lower_case, strip_accents = hf_vocab(folder)
    config = full_config(model_config.model, mlm_only="objective" in model_config, vocab=vocab or "",
                         lower_case=lower_case, strip_accents=strip_accents)
    return params, config
