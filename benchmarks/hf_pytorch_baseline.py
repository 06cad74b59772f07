"""The ELECTRA pre-training step built from HF transformers PyTorch models: the baseline electra_jax is timed against.

    python benchmarks/hf_pytorch_baseline.py --config=configs/pretrain.py:base --batch_size=64 --seq_len=512 \
        --steps=30 --dtype=bfloat16

One step, as electra_jax's (ELECTRA_REFERENCE.md section 3): dynamic masking (k = round(0.15 n) slots per
example, capped at max_predictions_per_seq; 85% [MASK], 15% kept), the generator (ElectraForMaskedLM) with its
MLM loss, Gumbel-max sampled replacements (no gradient), the discriminator (ElectraForPreTraining) with its
sigmoid loss on every real token, loss = mlm + 50 x disc, global-norm clipping at 1.0 and AdamW (fused on CUDA).
The generator shares the discriminator's embeddings module (and its tied output layer reads the same table),
as the original does. bf16 autocast, attn_implementation="sdpa", eager PyTorch (no torch.compile unless
--compile).

The generator head runs on the gathered masked positions only, as electra_jax's does (by calling
ElectraForMaskedLM's own submodules), so both sides do the same work and are divided by the same FLOP count
(electra_jax.flops.model_flops_per_step); --full_generator_logits runs HF's usual head over every position.
Differences that do not change the work: positions are drawn without replacement (the original draws with
replacement) and the learning-rate schedule is constant.

Prints one JSON line with the fields of `python -m electra_jax.benchmark` plus impl. Runs on CPU for tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: electra_jax lives beside benchmarks/
    sys.path.insert(0, str(REPO))

from electra_jax import config as config_lib  # noqa: E402  (needs the path above)
from electra_jax import flops as flops_lib  # noqa: E402


def build_models(config: Any, device: torch.device):
    """Generator and discriminator with one shared embeddings module (the original's tied embeddings)."""
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    m = config.model
    common = dict(vocab_size=m.vocab_size, embedding_size=m.embedding_size,
                  max_position_embeddings=m.max_position_embeddings, type_vocab_size=m.type_vocab_size,
                  hidden_dropout_prob=m.hidden_dropout,
                  attention_probs_dropout_prob=m.attention_dropout, layer_norm_eps=m.layer_norm_eps,
                  hidden_act="gelu", attn_implementation="sdpa")
    disc_config = ElectraConfig(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
                                num_attention_heads=m.num_heads, intermediate_size=m.intermediate_size, **common)
    gen_config = ElectraConfig(hidden_size=m.generator_hidden_size, num_hidden_layers=m.generator_num_layers,
                               num_attention_heads=m.generator_num_heads,
                               intermediate_size=m.generator_intermediate_size, **common)
    discriminator = ElectraForPreTraining(disc_config)
    generator = ElectraForMaskedLM(gen_config)
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight
    for model in (generator, discriminator):
        if getattr(model.config, "_attn_implementation", "sdpa") != "sdpa":
            raise RuntimeError(f"transformers chose attention {model.config._attn_implementation!r}, not sdpa")
    return generator.to(device).train(), discriminator.to(device).train()


def unique_parameters(*modules) -> list[torch.nn.Parameter]:
    """Parameters of all modules with shared ones once (the embeddings belong to both networks)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def mask_batch(input_ids, input_mask, *, max_predictions: int, mask_prob: float, mask_id: int, special_ids,
               mask_token_prob: float = 0.85):
    """ELECTRA masking on device: positions [B, N], targets [B, N], weights [B, N] and the masked ids."""
    batch, _ = input_ids.shape
    candidates = input_mask.bool()
    for token in special_ids:
        candidates &= input_ids != token
    num_real = input_mask.sum(-1).float()
    num_to_predict = torch.clamp(torch.round(num_real * mask_prob), 1, max_predictions).long()
    scores = torch.rand(input_ids.shape, device=input_ids.device).masked_fill(~candidates, -1.0)
    positions = scores.topk(max_predictions, dim=-1).indices
    weights = (torch.arange(max_predictions, device=input_ids.device)[None, :] < num_to_predict[:, None]).float()
    positions = positions * weights.long()  # unused slots point at position 0 ([CLS]), as in the original
    targets = torch.gather(input_ids, 1, positions) * weights.long()
    to_mask = (torch.rand((batch, max_predictions), device=input_ids.device) < mask_token_prob) & (weights > 0)
    masked_ids = input_ids.clone()
    masked_ids.scatter_(1, positions, torch.where(to_mask, torch.full_like(targets, mask_id),
                                                  torch.gather(input_ids, 1, positions)))
    masked_ids[:, 0] = input_ids[:, 0]
    return masked_ids, positions, targets, weights


def make_step(generator, discriminator, optimizer, params, config, *, dtype: str, full_generator_logits: bool):
    o, d = config.objective, config.data
    device_type = next(generator.parameters()).device.type
    autocast_dtype = torch.bfloat16 if dtype == "bfloat16" else None

    def step(input_ids, input_mask, segment_ids):
        masked_ids, positions, targets, weights = mask_batch(
            input_ids, input_mask, max_predictions=o.max_predictions_per_seq, mask_prob=o.mask_prob,
            mask_id=d.mask_id, special_ids=(d.cls_id, d.sep_id, d.mask_id), mask_token_prob=o.mask_token_prob)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            if full_generator_logits:
                all_logits = generator(input_ids=masked_ids, attention_mask=input_mask,
                                       token_type_ids=segment_ids).logits
                gen_logits = torch.gather(all_logits, 1, positions[..., None].expand(-1, -1, all_logits.shape[-1]))
            else:
                hidden = generator.electra(input_ids=masked_ids, attention_mask=input_mask,
                                           token_type_ids=segment_ids).last_hidden_state
                hidden = torch.gather(hidden, 1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
                gen_logits = generator.generator_lm_head(generator.generator_predictions(hidden))
            gen_logits = gen_logits.float()
            nll = F.cross_entropy(gen_logits.transpose(1, 2), targets, reduction="none")
            mlm_loss = (nll * weights).sum() / (weights.sum() + 1e-6)
            with torch.no_grad():
                uniform = torch.rand_like(gen_logits)
                gumbel = -torch.log(-torch.log(uniform + 1e-9) + 1e-9)
                sampled = torch.argmax(gen_logits / o.temperature + gumbel, dim=-1)
                sampled = torch.where(weights > 0, sampled, torch.gather(input_ids, 1, positions))
                fake_ids = input_ids.clone()
                fake_ids.scatter_(1, positions, sampled)
                fake_ids[:, 0] = input_ids[:, 0]
                labels = (fake_ids != input_ids).float()
            disc_logits = discriminator(input_ids=fake_ids, attention_mask=input_mask,
                                        token_type_ids=segment_ids).logits.float()
            mask_f = input_mask.float()
            per_token = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none") * mask_f
            disc_loss = per_token.sum() / (mask_f.sum() + 1e-6)
            loss = o.gen_weight * mlm_loss + o.disc_weight * disc_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def synthetic_batch(batch_size: int, seq_len: int, config: Any, device: torch.device, seed: int = 0):
    """Full-length [CLS] a [SEP] b [SEP] examples of random word pieces, as electra_jax.benchmark's."""
    generator = torch.Generator().manual_seed(seed)
    d = config.data
    first_word = max(d.pad_id, d.unk_id, d.cls_id, d.sep_id, d.mask_id) + 1
    ids = torch.randint(first_word, config.model.vocab_size, (batch_size, seq_len), generator=generator)
    middle = seq_len // 2
    ids[:, 0] = d.cls_id
    ids[:, middle] = d.sep_id
    ids[:, -1] = d.sep_id
    segments = torch.zeros((batch_size, seq_len), dtype=torch.long)
    segments[:, middle + 1:] = 1
    mask = torch.ones((batch_size, seq_len), dtype=torch.long)
    return ids.to(device), mask.to(device), segments.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device, dtype: str, size: int | None = None, repeats: int = 3) -> float:
    """Achievable matmul FLOP/s: a chain of [n, n] x [n, n] products in the step's compute dtype."""
    n = size or (8192 if device.type == "cuda" else 512)
    chain = 32 if device.type == "cuda" else 4
    compute = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    x = torch.randn((n, n), device=device, dtype=compute)
    w = (torch.randn((n, n), device=device) / n**0.5).to(compute)

    def run():
        acc = x
        for _ in range(chain):
            acc = acc @ w
        return acc

    run()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 * chain / best


def run(args) -> dict[str, Any]:
    overrides = dict(args.override or [])
    overrides.update({"data.max_seq_length": args.seq_len, "train.batch_size": args.batch_size})
    config = config_lib.load(args.config, {k: _parse(v) for k, v in overrides.items()})
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.train.seed)
    # TF32 for float32 matmuls on Ampere+, which is what XLA does by default for float32 on GPU.
    torch.set_float32_matmul_precision("high")
    generator, discriminator = build_models(config, device)
    params = unique_parameters(generator, discriminator)
    decay = [p for p in params if p.ndim > 1]  # LayerNorm weights and biases are not decayed
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.optim.learning_rate, betas=(config.optim.adam_b1, config.optim.adam_b2), eps=config.optim.adam_eps,
        fused=device.type == "cuda")
    step = make_step(generator, discriminator, optimizer, params, config, dtype=args.dtype,
                     full_generator_logits=args.full_generator_logits)
    if args.compile:
        step = torch.compile(step)
    batch = synthetic_batch(args.batch_size, args.seq_len, config, device, config.train.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    start = time.perf_counter()
    for _ in range(args.warmup):
        loss = step(*batch)
    _sync(device)
    warmup_s = time.perf_counter() - start
    window = max(1, min(args.window, args.steps))
    per_step, done = [], 0
    while done < args.steps:
        count = min(window, args.steps - done)
        start = time.perf_counter()
        for _ in range(count):
            loss = step(*batch)
        _sync(device)
        per_step.append((time.perf_counter() - start) / count)
        done += count
    final_loss = float(loss)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del optimizer, generator, discriminator, params, decay, no_decay
    if device.type == "cuda":
        torch.cuda.empty_cache()

    step_s = statistics.median(per_step)
    model_flops = flops_lib.model_flops_per_step(config, args.batch_size, args.seq_len)
    peak = measure_matmul_peak(device, args.dtype) if args.measure_peak else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    import transformers

    return {
        "impl": "hf_pytorch_compile" if args.compile else "hf_pytorch_eager",
        "size": config.size,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "step_ms": step_s * 1e3,
        "step_ms_min": min(per_step) * 1e3,
        "tokens_per_sec": args.batch_size * args.seq_len / step_s,
        "model_tflops_per_step": model_flops / 1e12,
        "mfu": model_flops / step_s / peak if peak else None,
        "peak_tflops_measured": peak / 1e12 if peak else None,
        "device": f"{device.type}:{name}",
        "peak_memory_gb": memory,
        "dtype": args.dtype,
        "attention": "sdpa",
        "full_generator_logits": bool(args.full_generator_logits),
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": warmup_s,  # warm-up steps, including any torch.compile time
        "final_loss": final_loss,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        **({"variant": args.variant} if args.variant else {}),
    }


def _parse(value: str):
    """Override values: ints, floats and booleans as such, anything else as a string."""
    if value in ("True", "False", "true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/pretrain.py:SIZE")
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--seq_len", type=int, required=True)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--window", type=int, default=5, help="steps per timed window (one sync per window)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="autocast dtype")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    parser.add_argument("--full_generator_logits", action="store_true",
                        help="run the generator head over every position (HF's default) and gather afterwards")
    parser.add_argument("--no_measure_peak", dest="measure_peak", action="store_false")
    parser.add_argument("--override", action="append", type=lambda s: tuple(s.split("=", 1)), metavar="FIELD=VALUE",
                        help="config override, e.g. --override model.num_layers=2 (repeatable)")
    parser.add_argument("--variant", default="", help="a free-form label copied into the JSON row")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(run(parse_args())), flush=True)
