"""The parity check: electra_jax logits against HF PyTorch on a fixed batch (torch loads inside)."""

from __future__ import annotations

import json
import os

import numpy as np

from electra_jax import modeling


def _check_batch(cfg: modeling.ModelConfig, batch: int = 2, seq: int = 32, seed: int = 0):
    """A fixed batch: random ids, the second row half padding, a second segment in the later half."""
    rng = np.random.default_rng(seed)
    seq = min(seq, cfg.max_position_embeddings)
    ids = rng.integers(0, cfg.vocab_size, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1:, seq // 2:] = 0
    segments = np.zeros_like(ids)
    if cfg.type_vocab_size > 1:
        segments[:, seq // 2:] = 1
    return ids * mask, segments * mask, mask


def check_parity(params, config, hf_dir: str | None, tolerance: float | None = None,
                 folders: dict[str, str] | None = None) -> dict[str, float]:
    """Largest |logit difference| between electra_jax and HF PyTorch (discriminator and generator) on a fixed
    batch. HF models load in float32; a bfloat16 export is allowed a tolerance relative to the logit scale.
    Returns {"discriminator": diff, "generator": diff} for the folders present; raises above the tolerance.
    `folders` ({"discriminator": path, "generator": path}) replaces hf_dir's discriminator/ and generator/.
    """
    import torch
    import transformers

    cfg = modeling.ModelConfig.from_config(config)
    ids, segments, mask = _check_batch(cfg)
    valid = mask.astype(bool)
    results, failures = {}, []
    for name, cls, ours_fn in (("discriminator", transformers.ElectraForPreTraining, modeling.discriminator_logits),
                               ("generator", transformers.ElectraForMaskedLM, modeling.generator_logits)):
        folder = folders.get(name) if folders is not None else os.path.join(hf_dir, name)
        if not folder or not os.path.isdir(folder):
            continue
        model = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            theirs = model(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                           attention_mask=torch.tensor(mask)).logits.numpy()
        ours = np.asarray(ours_fn(params, config, ids, segments, mask))
        diff = float(np.abs(ours[valid] - theirs[valid]).max())
        scale = float(np.abs(ours[valid]).max())
        exported_dtype = _read_json(os.path.join(folder, "config.json")).get("dtype", "float32")
        tol = tolerance if tolerance is not None else (1e-4 if exported_dtype == "float32"
                                                        else 0.05 * max(1.0, scale))
        results[name] = diff
        print(f"{name}: max |logit difference| {diff:.3g} (logit scale {scale:.3g}, tolerance {tol:.3g})")
        if not diff <= tol:
            failures.append(f"{name} differs by {diff:.3g} > {tol:.3g}")
    if not results:
        raise FileNotFoundError(f"{hf_dir or folders} has neither discriminator/ nor generator/")
    if failures:
        raise ValueError("parity check failed: " + "; ".join(failures))
    return results


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)
