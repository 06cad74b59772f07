"""The ELECTRA pre-training step built from HF transformers PyTorch models: the baseline electra_jax is timed against.

    python benchmarks/hf_pytorch_baseline.py --config=configs/pretrain.py:base --batch_size=64 --seq_len=512 \
        --steps=50 --head=gathered [--compile=regional] [--attention_dropout=0]

One step, as electra_jax's (ELECTRA_REFERENCE.md section 3): dynamic masking (k = round(0.15 n) slots per
example, capped at max_predictions_per_seq; 85% [MASK], 15% kept), the generator (ElectraForMaskedLM) with its
MLM loss, Gumbel-max sampled replacements (no gradient), the discriminator (ElectraForPreTraining) with its
sigmoid loss on every real token, loss = mlm + 50 x disc, global-norm clipping at 1.0 and fused AdamW. The
generator shares the discriminator's embeddings module (and its tied output layer reads the same table), as
the original does. bf16 autocast, TF32 for float32 matmuls, attn_implementation="sdpa".

Written the way a careful PyTorch user would, so that the baseline gets the same care as our own step:
- the MLM loss is a cross-entropy over rows ([B*N, V] logits, one row per masked slot); the [B, V, N]
  "spatial" layout sends PyTorch to a log-softmax kernel that walks all 30,522 classes per column;
- no attention mask is passed: the synthetic batch has no padding, and with a mask transformers 5 checks
  `mask.all()` on the host before every forward (a sync that stops the host queueing the next step).

Heads (`--head`): `gathered` runs the generator's dense + tied output layer at the masked slots only, as
electra_jax does (through ElectraForMaskedLM's own submodules: the same work, the same FLOP count);
`stock` is what a user writes from the HF docs: `ElectraForMaskedLM(...).logits` over every position, then
the loss on the masked rows (6-28% more FLOPs than ours; MFU still divides by our FLOP count).
`--compile=regional` compiles every encoder layer with torch.compile (PyTorch's recipe for repeated blocks:
each distinct layer compiles once, so compile time does not grow with depth); `--compile=step` compiles the
whole step function. `--cuda_graph` captures the whole step (masking, both forwards, backward, clipping and the
AdamW update, `capturable=True`) in one CUDA graph after warm-up steps on a side stream, and replays it: one
launch per step instead of thousands, PyTorch's "whole-network capture" for launch-bound models (the batch is
static; PyTorch's CUDA random generator advances on every replay, so masks, samples and dropout stay fresh).
Differences that do not change the work: positions are drawn without replacement (the original draws with
replacement) and the learning-rate schedule is constant.

Prints one JSON line with the fields of `python -m electra_jax.benchmark` plus impl. Runs on CPU for tests.
benchmarks/same_call.py times these steps beside electra_jax's in one process.
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

from electra_jax import benchmark as benchmark_lib  # noqa: E402  (needs the path above)
from electra_jax import config as config_lib  # noqa: E402
from electra_jax import flops as flops_lib  # noqa: E402

HEADS = ("gathered", "stock")
COMPILE_MODES = ("none", "regional", "step")


def impl_name(head: str, compile_mode: str = "none", cuda_graph: bool = False) -> str:
    """The `impl` of a result row: hf_pytorch_eager (gathered head), hf_pytorch_stock, hf_pytorch_compile, and
    hf_pytorch_cudagraph / hf_pytorch_compile_cudagraph for a step captured in a CUDA graph."""
    if compile_mode != "none":
        name = "hf_pytorch_compile"
    else:
        name = {"gathered": "hf_pytorch_eager", "stock": "hf_pytorch_stock"}[head]
    if cuda_graph:
        name = "hf_pytorch_compile_cudagraph" if compile_mode != "none" else "hf_pytorch_cudagraph"
    return name


def build_models(config: Any, device: torch.device, attention_dropout: float | None = None):
    """Generator and discriminator with one shared embeddings module (the original's tied embeddings)."""
    from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

    m = config.model
    common = dict(vocab_size=m.vocab_size, embedding_size=m.embedding_size,
                  max_position_embeddings=m.max_position_embeddings, type_vocab_size=m.type_vocab_size,
                  hidden_dropout_prob=m.hidden_dropout,
                  attention_probs_dropout_prob=m.attention_dropout if attention_dropout is None else attention_dropout,
                  layer_norm_eps=m.layer_norm_eps, hidden_act="gelu", attn_implementation="sdpa")
    disc_config = ElectraConfig(hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
                                num_attention_heads=m.num_heads, intermediate_size=m.intermediate_size, **common)
    gen_config = ElectraConfig(hidden_size=m.generator_hidden_size, num_hidden_layers=m.generator_num_layers,
                               num_attention_heads=m.generator_num_heads,
                               intermediate_size=m.generator_intermediate_size, **common)
    with torch.device(device):  # initialise on the device: building Large on the host takes seconds
        discriminator = ElectraForPreTraining(disc_config)
        generator = ElectraForMaskedLM(gen_config)
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight
    for model in (generator, discriminator):
        skip_all_true_mask(model.electra)
    for model in (generator, discriminator):
        if getattr(model.config, "_attn_implementation", "sdpa") != "sdpa":
            raise RuntimeError(f"transformers chose attention {model.config._attn_implementation!r}, not sdpa")
    return generator.train(), discriminator.train()


def skip_all_true_mask(encoder) -> None:
    """Without an attention mask, no mask reaches SDPA, also while tracing.

    transformers 5 builds no mask for `attention_mask=None` in eager mode, but while it traces (torch.compile, and
    CUDA stream capture, which its `is_tracing` counts) it builds an all-True [B, 1, S, S] one, which rules out the
    flash kernel: a captured or compiled step would run slower attention than the eager step. A given mask still
    goes through transformers' own code. A transformers without that method is left alone (said once): its
    eager steps are unaffected, and the compiled and captured ones may run a slower attention kernel."""
    build = getattr(encoder, "_create_attention_masks", None)
    if build is None:
        print("hf_pytorch_baseline: this transformers has no ElectraModel._create_attention_masks; compiled and "
              "captured steps keep its own mask handling", file=sys.stderr)
        return

    def masks(attention_mask=None, encoder_attention_mask=None, **kwargs):
        if attention_mask is None and encoder_attention_mask is None:
            return None, None
        return build(attention_mask=attention_mask, encoder_attention_mask=encoder_attention_mask, **kwargs)

    encoder._create_attention_masks = masks


def unique_parameters(*modules) -> list[torch.nn.Parameter]:
    """Parameters of all modules with shared ones once (the embeddings belong to both networks)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def make_optimizer(params: list[torch.nn.Parameter], config: Any, device: torch.device,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """AdamW as the original (LayerNorm weights and biases not decayed), fused (one kernel for all tensors);
    `capturable` keeps its step count on the device, as a CUDA graph needs."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    o = config.optim
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.learning_rate, betas=(o.adam_b1, o.adam_b2), eps=o.adam_eps, fused=True, capturable=capturable)


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


def gather_positions(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """values[b, positions[b, n], :] as [B, N, D]."""
    return torch.gather(values, 1, positions[..., None].expand(-1, -1, values.shape[-1]))


def mlm_loss(gen_logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean cross-entropy of [B, N, V] logits, computed on [B*N, V] rows in float32."""
    vocab = gen_logits.shape[-1]
    nll = F.cross_entropy(gen_logits.reshape(-1, vocab).float(), targets.reshape(-1), reduction="none")
    flat_weights = weights.reshape(-1)
    return (nll * flat_weights).sum() / (flat_weights.sum() + 1e-6)


def make_step(generator, discriminator, optimizer, params, config, *, head: str = "gathered",
              dtype: str = "bfloat16"):
    """step(input_ids, input_mask, segment_ids) -> loss (on device). The models get no attention mask: the
    batches here have no padding (HFStep checks), and a mask would cost a host sync per forward."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    o, d = config.objective, config.data
    device_type = next(generator.parameters()).device.type
    autocast_dtype = torch.bfloat16 if dtype == "bfloat16" else None

    def step(input_ids, input_mask, segment_ids):
        masked_ids, positions, targets, weights = mask_batch(
            input_ids, input_mask, max_predictions=o.max_predictions_per_seq, mask_prob=o.mask_prob,
            mask_id=d.mask_id, special_ids=(d.cls_id, d.sep_id, d.mask_id), mask_token_prob=o.mask_token_prob)
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            if head == "stock":
                all_logits = generator(input_ids=masked_ids, token_type_ids=segment_ids).logits
                gen_logits = gather_positions(all_logits, positions)
            else:
                hidden = generator.electra(input_ids=masked_ids, token_type_ids=segment_ids).last_hidden_state
                gen_logits = generator.generator_lm_head(generator.generator_predictions(
                    gather_positions(hidden, positions)))
            gen_logits = gen_logits.float()
            loss_mlm = mlm_loss(gen_logits, targets, weights)
            with torch.no_grad():
                uniform = torch.rand_like(gen_logits)
                gumbel = -torch.log(-torch.log(uniform + 1e-9) + 1e-9)
                sampled = torch.argmax(gen_logits / o.temperature + gumbel, dim=-1)
                sampled = torch.where(weights > 0, sampled, torch.gather(input_ids, 1, positions))
                fake_ids = input_ids.clone()
                fake_ids.scatter_(1, positions, sampled)
                fake_ids[:, 0] = input_ids[:, 0]
                labels = (fake_ids != input_ids).float()
            disc_logits = discriminator(input_ids=fake_ids, token_type_ids=segment_ids).logits.float()
            mask_f = input_mask.float()
            per_token = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none") * mask_f
            disc_loss = per_token.sum() / (mask_f.sum() + 1e-6)
            loss = o.gen_weight * loss_mlm + o.disc_weight * disc_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optim.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def compile_models(generator, discriminator, step, mode: str, backend: str = "inductor"):
    """Applies torch.compile as `mode` says (see the module docstring); returns the step to call."""
    if mode == "none":
        return step
    if mode == "regional":
        for model in (generator, discriminator):
            for layer in model.electra.encoder.layer:
                layer.compile(backend=backend)
        return step
    if mode == "step":
        return torch.compile(step, backend=backend)
    raise ValueError(f"unknown compile mode {mode!r}; choose one of {COMPILE_MODES}")


class GraphedStep:
    """`step(*batch)` captured whole in one CUDA graph; calling it replays the graph and returns the loss tensor.

    PyTorch's whole-network capture: `warmup` real steps on a side stream first (autograd's buffers, the kernels'
    first-call setup and the optimizer state exist before capture), gradients set to None so that the captured backward
    allocates them in the graph's pool, then one capture. Capturing records kernels without running them, so the
    steps taken are the warm-up ones plus one per replay. The batch tensors are the graph's static inputs."""

    def __init__(self, step, batch: tuple[torch.Tensor, ...], optimizer: torch.optim.Optimizer, warmup: int = 3):
        if not all(t.is_cuda for t in batch):
            raise ValueError("a CUDA graph needs the batch on a CUDA device")
        begin = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step(*batch)
        torch.cuda.current_stream().wait_stream(side)
        optimizer.zero_grad(set_to_none=True)
        self.batch = batch  # the graph's static inputs live as long as it does
        self.graph = torch.cuda.CUDAGraph()
        failure = None  # the step's own error, raised in place of the "capture invalidated" that follows it
        try:
            # thread_local: JAX shares this process and the card, and its runtime threads may call CUDA meanwhile
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                try:
                    self.loss = step(*batch)
                except Exception as error:  # noqa: BLE001
                    failure = error
        except Exception as end_error:
            if failure is None:
                raise
            raise failure from end_error
        if failure is not None:
            raise failure
        torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - begin

    def __call__(self, *batch) -> torch.Tensor:
        if any(a is not b for a, b in zip(batch, self.batch)):
            raise ValueError("a CUDA graph replays on the tensors it was captured with: copy new inputs into them")
        self.graph.replay()
        return self.loss


def synthetic_batch(batch_size: int, seq_len: int, config: Any, device: torch.device, seed: int = 0):
    """electra_jax.benchmark's batch (full-length [CLS] a [SEP] b [SEP], no padding) as torch tensors."""
    batch = benchmark_lib.synthetic_batch(batch_size, seq_len, config.model.vocab_size, config, seed)
    return tuple(torch.from_numpy(batch[k]).long().to(device) for k in ("input_ids", "input_mask", "segment_ids"))


def check_no_padding(input_mask: torch.Tensor) -> None:
    if not bool(input_mask.all()):
        raise ValueError("the HF step passes no attention mask, so its batch must have no padding "
                         f"({int((input_mask == 0).sum())} padded positions)")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class HFStep:
    """One HF PyTorch pre-training step with its models, optimizer and batch on the device, timed in windows.

    `run(n)` dispatches n steps and waits for the last (the same protocol as electra_jax.benchmark.PreparedStep).
    """

    def __init__(self, config: Any, device: torch.device, *, head: str = "gathered", compile_mode: str = "none",
                 dtype: str = "bfloat16", attention_dropout: float | None = None, compile_backend: str = "inductor",
                 cuda_graph: bool = False):
        if cuda_graph and device.type != "cuda":
            raise ValueError(f"--cuda_graph needs a CUDA device, not {device.type}")
        # TF32 for float32 matmuls on Ampere+, which is what XLA does by default for float32 on GPU.
        torch.set_float32_matmul_precision("high")
        torch.manual_seed(config.train.seed)
        self.config, self.device, self.head, self.compile_mode, self.dtype = config, device, head, compile_mode, dtype
        self.cuda_graph = cuda_graph
        self.batch_size, self.seq_len = config.train.batch_size, config.data.max_seq_length
        self.generator, self.discriminator = build_models(config, device, attention_dropout)
        self.attention_dropout = config.model.attention_dropout if attention_dropout is None else attention_dropout
        self.params = unique_parameters(self.generator, self.discriminator)
        self.optimizer = make_optimizer(self.params, config, device, capturable=cuda_graph)
        step = make_step(self.generator, self.discriminator, self.optimizer, self.params, config, head=head,
                         dtype=dtype)
        self.step = compile_models(self.generator, self.discriminator, step, compile_mode, compile_backend)
        self.batch = synthetic_batch(self.batch_size, self.seq_len, config, device, config.train.seed)
        check_no_padding(self.batch[1])  # once, outside the timed steps
        self.last_loss = None
        self.warmup_s: float | None = None
        self.graphed: GraphedStep | None = None  # captured at the first run(), so that capture counts as warm-up

    def run(self, count: int) -> None:
        step = self.step
        if self.cuda_graph:
            if self.graphed is None:
                self.graphed = GraphedStep(self.step, self.batch, self.optimizer)
            step = self.graphed
        for _ in range(count):
            self.last_loss = step(*self.batch)
        sync(self.device)

    def optimizer_steps(self) -> int:
        """AdamW's step count (a device tensor when capturable): steps really taken, replays included."""
        state = self.optimizer.state[self.params[0]]
        return int(state["step"]) if "step" in state else 0

    def warm_up(self, count: int) -> float:
        """Runs `count` untimed steps; returns their seconds (torch.compile compiles during the first)."""
        start = time.perf_counter()
        self.run(count)
        self.warmup_s = time.perf_counter() - start
        return self.warmup_s

    def loss(self) -> float:
        return float(self.last_loss) if self.last_loss is not None else float("nan")

    def peak_memory_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None

    def variant(self) -> str:
        head = "gathered head" if self.head == "gathered" else "full-vocab logits"
        compiled = f", torch.compile ({self.compile_mode})" if self.compile_mode != "none" else ""
        graphed = ", whole step in one CUDA graph" if self.cuda_graph else ""
        precision = "bf16 autocast" if self.dtype == "bfloat16" else self.dtype
        return f"{head}{compiled}{graphed}, {precision}, sdpa, attention dropout {self.attention_dropout:g}"

    def describe(self) -> dict[str, Any]:
        import transformers

        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return {"impl": impl_name(self.head, self.compile_mode, self.cuda_graph), "variant": self.variant(),
                "size": self.config.size, "batch_size": self.batch_size, "seq_len": self.seq_len,
                "device": f"{self.device.type}:{name}", "dtype": self.dtype, "attention": "sdpa",
                "attention_dropout": self.attention_dropout, "head": self.head, "compile": self.compile_mode,
                "cuda_graph": self.cuda_graph, "capture_s": self.graphed.capture_s if self.graphed else None,
                "torch_version": torch.__version__, "transformers_version": transformers.__version__}

    def close(self) -> None:
        self.generator = self.discriminator = self.optimizer = self.params = self.step = self.batch = None
        self.graphed = self.last_loss = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def run(args) -> dict[str, Any]:
    overrides = dict(args.override or [])
    overrides.update({"data.max_seq_length": args.seq_len, "train.batch_size": args.batch_size})
    config = config_lib.load(args.config, {k: _parse(v) for k, v in overrides.items()})
    device = torch.device(args.device) if args.device != "auto" else default_device()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hf_step = HFStep(config, device, head=args.head, compile_mode=args.compile, dtype=args.dtype,
                     attention_dropout=args.attention_dropout, cuda_graph=args.cuda_graph)
    hf_step.warm_up(args.warmup)
    per_step = benchmark_lib.time_windows(hf_step.run, args.steps, args.window)
    row = hf_step.describe()
    final_loss, memory = hf_step.loss(), hf_step.peak_memory_gib()
    hf_step.close()

    step_s = statistics.median(per_step)
    model_flops = flops_lib.model_flops_per_step(config, args.batch_size, args.seq_len)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    datasheet = benchmark_lib.datasheet_peak_flops(row["device"], args.dtype)
    row.update({
        "step_ms": step_s * 1e3,
        "step_ms_min": min(per_step) * 1e3,
        "window_ms": [t * 1e3 for t in per_step],
        "tokens_per_sec": args.batch_size * args.seq_len / step_s,
        "model_tflops_per_step": model_flops / 1e12,
        "mfu": model_flops / step_s / peak if peak else None,
        "peak_tflops_measured": args.peak_tflops,
        "mfu_datasheet": model_flops / step_s / datasheet if datasheet else None,
        "peak_tflops_datasheet": datasheet / 1e12 if datasheet else None,
        "peak_memory_gb": memory,
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": hf_step.warmup_s,  # the warm-up steps, including any torch.compile time
        "final_loss": final_loss,
    })
    if args.variant:
        row["variant"] = args.variant
    return row


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
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (torch.compile compiles here)")
    parser.add_argument("--window", type=int, default=10, help="steps per timed window (one sync per window)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="autocast dtype")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto")
    parser.add_argument("--head", choices=HEADS, default="gathered",
                        help="gathered: the generator head at the masked slots (as electra_jax); stock: "
                             "ElectraForMaskedLM(...).logits over every position")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="none", help="torch.compile: none, regional "
                        "(every encoder layer) or step (the whole step function)")
    parser.add_argument("--cuda_graph", action="store_true",
                        help="capture the whole step in one CUDA graph and replay it (needs a GPU)")
    parser.add_argument("--attention_dropout", type=float, default=None,
                        help="attention-probability dropout (default: the config's, 0.1)")
    parser.add_argument("--peak_tflops", type=float, default=None, help="a measured peak for `mfu` (else null)")
    parser.add_argument("--override", action="append", type=lambda s: tuple(s.split("=", 1)), metavar="FIELD=VALUE",
                        help="config override, e.g. --override model.num_layers=2 (repeatable)")
    parser.add_argument("--variant", default="", help="a free-form label copied into the JSON row")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(run(parse_args())), flush=True)
