"""The training state, its shardings, and the jitted train and evaluation steps of every training program.

`TrainState` holds params, opt_state, step and the run's base PRNG key. The train step is a pure function
`step(state, batch, rng) -> (state, metrics)`; `rng` is the run's base key (the loop passes a copy of
`state.rng`: the state is donated, so its own buffer cannot be a second argument) and the step's key is
`fold_in(rng, state.step)`, so a resumed run draws exactly the masks, samples and dropout an
uninterrupted one would. Both steps are compiled once, ahead of time, with explicit in/out shardings and the
state donated (`Trainer.compile`). `Trainer.compile(seeds=K)` compiles the same steps vmapped over K stacked states
(a leading seeds axis on every leaf, unsharded): K independent runs, e.g. fine-tuning seeds, in one launch sequence.

What is trained is a `Program`: parameters with logical axis names, a loss, an evaluation and an optimizer.
`PretrainProgram` is ELECTRA pre-training (the default); fine-tuning supplies its own
(`electra_jax.finetune.train.FinetuneProgram`), so both run on the same mesh, shardings, compiled steps and
checkpoint layout.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, PartitionSpec

from electra_jax import modeling, objective, optim
from electra_jax import sharding as sharding_lib
from electra_jax.tree_paths import path_name

BATCH_KEYS = ("input_ids", "input_mask", "segment_ids")
# Train metrics that leave the device every step (histograms stay behind: only eval sums them).
TRAIN_METRICS = ("loss", "mlm_loss", "mlm_accuracy", "disc_loss", "disc_accuracy", "disc_precision",
                 "disc_recall", "disc_auc", "sampled_mlm_accuracy", "replaced_fraction", "cloze_loss")


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: completed updates
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32[2] raw key (raw, not typed, so checkpoints store plain integers)

    def to_dict(self) -> dict:
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(step=d["step"], params=d["params"], opt_state=d["opt_state"], rng=d["rng"])


class Compiled(NamedTuple):
    train_step: Any
    eval_step: Any


def stacked_specs(specs: Any) -> Any:
    """The partition specs of a tree stacked over seeds: a leading, unsharded axis before each leaf's own."""
    return jax.tree_util.tree_map(lambda spec: PartitionSpec(None, *spec), specs,
                                  is_leaf=lambda x: isinstance(x, PartitionSpec))


def _scalar(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


class Program(Protocol):
    """What a Trainer trains. Every method is traced inside jit except `make_optimizer`."""

    train_metrics: tuple[str, ...]  # the scalar metrics of `loss` that leave the device every step

    def init_boxed_params(self, rng: jax.Array) -> Any:
        """Fresh parameters, still wrapped in their logical-axis boxes (`nn.with_logical_partitioning`)."""

    def loss(self, params, batch: dict, rng: jax.Array, train: bool) -> tuple[jax.Array, dict]:
        """(scalar loss, metrics) of one global batch; `rng` is the step's key."""

    def evaluate(self, params, batch: dict, rng: jax.Array) -> dict:
        """Eval-mode outputs of one batch (metrics or per-row predictions), replicated on every host."""

    def make_optimizer(self, param_shapes: Any) -> tuple[optax.GradientTransformation, Callable]:
        """(optimizer, learning-rate schedule)."""

    def abstract_batch(self, global_batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one global batch (no shardings)."""


class PretrainProgram:
    """ELECTRA pre-training (or the masked-LM baseline): objective.pretrain_loss on the ElectraPretrainer."""

    train_metrics = TRAIN_METRICS

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.model = modeling.build_model(config)

    def init_boxed_params(self, rng):
        return modeling.init_boxed_params(self.config, rng)

    def loss(self, params, batch, rng, train: bool):
        return objective.pretrain_loss(params, batch, rng, model=self.model, config=self.config, train=train)

    def evaluate(self, params, batch, rng):
        """Deterministic (no dropout) objective metrics of one batch, histograms included for exact AUC."""
        _, metrics = self.loss(params, batch, rng, train=False)
        return {k: v.astype(jnp.float32) for k, v in metrics.items()}

    def make_optimizer(self, param_shapes):
        return optim.make_optimizer(self.config.optim, total_steps=self.config.train.steps)

    def abstract_batch(self, global_batch_size: int):
        seq = self.config.data.max_seq_length
        return {k: jax.ShapeDtypeStruct((global_batch_size, seq), jnp.int32) for k in BATCH_KEYS}


def all_finite(tree) -> jax.Array:
    """bool scalar: every element of every array in `tree` is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def train_step(state: TrainState, batch: dict, rng: jax.Array, *, program: Program, tx, schedule,
               skip_nonfinite: bool = False):
    """One update: value_and_grad of the program's loss at the step's key, then the optax update.

    The metrics carry what the loop needs to trust a checkpoint: `loss` and `grad_norm` (computed with the
    parameters *before* this update) and `params_finite` (1.0 when every parameter *after* it is finite).
    With skip_nonfinite (config.train.max_skipped_updates > 0), an update whose loss, gradient norm or result
    is not finite is dropped: params and optimizer state stay as they were, the step counter still advances
    (the batch is consumed and the next step draws new masks), and `update_skipped` is 1.0.
    """
    step_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
        return program.loss(params, batch, step_rng, train=True)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params_finite = all_finite(params)
    out = {k: _scalar(metrics[k]) for k in program.train_metrics if k in metrics}
    out["loss"] = _scalar(loss)
    out["grad_norm"] = grad_norm
    out["learning_rate"] = _scalar(schedule(state.step))
    out["params_finite"] = _scalar(params_finite)
    if skip_nonfinite:
        keep_update = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & params_finite
        params, opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(keep_update, new, old),
                                                   (params, opt_state), (state.params, state.opt_state))
        out["update_skipped"] = _scalar(~keep_update)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), out


def eval_step(params, batch: dict, rng: jax.Array, *, program: Program):
    return program.evaluate(params, batch, rng)


def accumulate_eval(per_batch: Iterable[dict]) -> dict[str, float]:
    """Mean of per-batch scalars; AUC recomputed from the summed histograms (not a mean of AUCs).

    The histograms are summed as the batches come, where they are, so an eval of any length holds one set."""
    scalars: dict[str, list] = {}
    hists: dict[str, Any] = {}
    for metrics in per_batch:
        for key, value in metrics.items():
            if key.startswith("auc_"):
                hists[key] = value if key not in hists else hists[key] + value
            else:
                scalars.setdefault(key, []).append(value)
    out = {key: float(np.mean(jax.device_get(values))) for key, values in scalars.items()}
    for name, prefix in objective.AUC_METRICS.items():
        if f"{prefix}pos_hist" in hists:
            pos, neg = (jnp.asarray(jax.device_get(hists[f"{prefix}{side}_hist"])) for side in ("pos", "neg"))
            out[name] = float(objective.auc_from_histograms(pos, neg))
    return out


class Trainer:
    """Owns the mesh, program, optimizer and shardings of one run; builds states and compiled steps.

    >>> trainer = Trainer(config, mesh)  # ELECTRA pre-training; Trainer(config, mesh, program) for others
    >>> state = trainer.init_state(seed=0)
    >>> compiled = trainer.compile()
    >>> rng = jax.device_put(np.asarray(state.rng), trainer.replicated)  # a copy: the state is donated
    >>> state, metrics = compiled.train_step(state, global_batch, rng)
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, program: Program | None = None):
        self.config = config
        self.mesh = mesh
        self.program = program if program is not None else PretrainProgram(config)
        boxed = jax.eval_shape(self.program.init_boxed_params, jax.random.PRNGKey(0))
        self.param_shapes = nn.unbox(boxed)
        self.tx, self.schedule = self.program.make_optimizer(self.param_shapes)
        self.param_specs = sharding_lib.param_specs(nn.get_partition_spec(boxed), self.param_shapes,
                                                    config.sharding.rules, mesh)
        opt_shapes = jax.eval_shape(self.tx.init, self.param_shapes)
        self.opt_specs = sharding_lib.state_specs_like(opt_shapes, self.param_specs, self.param_shapes)
        rep = PartitionSpec()
        self.state_specs = TrainState(step=rep, params=self.param_specs, opt_state=self.opt_specs, rng=rep)
        self.state_shardings = sharding_lib.named(mesh, self.state_specs)
        self.batch_sharding = sharding_lib.batch_sharding(mesh)
        self.replicated = sharding_lib.replicated(mesh)
        # With a leading seeds axis (compile(seeds=K)): every state leaf and batch array stacked K times.
        self.stacked_state_shardings = sharding_lib.named(mesh, stacked_specs(self.state_specs))
        self.stacked_batch_sharding = sharding_lib.named(mesh, stacked_specs(self.batch_sharding.spec))
        self._abstract_state = jax.eval_shape(lambda: TrainState(
            step=jnp.zeros([], jnp.int32), params=self.param_shapes, opt_state=opt_shapes,
            rng=jax.random.PRNGKey(0)))

    # -- states -------------------------------------------------------------------------------------------

    def abstract_state(self, seeds: int = 0) -> TrainState:
        """ShapeDtypeStructs with this mesh's shardings: the restore target for checkpoints (with `seeds`, the
        state of `stack_states`: every leaf with a leading axis of that size)."""
        lead, shardings = ((seeds,), self.stacked_state_shardings) if seeds else ((), self.state_shardings)
        return jax.tree_util.tree_map(
            lambda shape, sharding: jax.ShapeDtypeStruct(lead + shape.shape, shape.dtype, sharding=sharding),
            self._abstract_state, shardings)

    def stack_states(self, states: list[TrainState]) -> TrainState:
        """One state holding `states` along a leading seeds axis, for the steps of `compile(seeds=len(states))`."""
        with sharding_lib.use_mesh(self.mesh):
            return self._jitted_stack(*states)

    @functools.cached_property
    def _jitted_init(self):
        """init_state's program, traced and compiled once per Trainer (every seed is an argument, not a retrace)."""

        def init(key):
            param_key, train_key = jax.random.split(key)
            params = nn.unbox(self.program.init_boxed_params(param_key))
            return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=self.tx.init(params),
                              rng=train_key)

        return jax.jit(init, out_shardings=self.state_shardings)

    @functools.cached_property
    def _jitted_fresh(self):
        """state_from_params's program (new optimizer state and key around given params), compiled once."""

        def fresh(params, key):
            return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=self.tx.init(params),
                              rng=jax.random.split(key)[1])

        return jax.jit(fresh, in_shardings=(self.state_shardings.params, self.replicated),
                       out_shardings=self.state_shardings)

    @functools.cached_property
    def _jitted_stack(self):
        return jax.jit(lambda *trees: jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees),
                       out_shardings=self.stacked_state_shardings)

    def init_state(self, seed: int) -> TrainState:
        """A fresh state created directly in its shardings (no parameter is ever whole on one device)."""
        with sharding_lib.use_mesh(self.mesh):
            return self._jitted_init(jax.random.PRNGKey(seed))

    def state_from_params(self, params: dict, seed: int) -> TrainState:
        """A fresh state (step 0, new optimizer state) around given host params (continued pre-training)."""
        expected = self.param_shapes
        if self.config.model.scan_layers:
            params = modeling.stack_layers(params)
        check_params_match(params, expected)
        params = jax.tree_util.tree_map(
            lambda x, shape, sharding: jax.make_array_from_callback(
                shape.shape, sharding, lambda index, x=x: np.asarray(x, np.float32)[index]),
            params, expected, self.state_shardings.params)
        with sharding_lib.use_mesh(self.mesh):
            return self._jitted_fresh(params, jax.random.PRNGKey(seed))

    def reset_optimizer(self, state: TrainState) -> TrainState:
        """The same params, step and key with a freshly initialized optimizer state (in its shardings)."""
        with sharding_lib.use_mesh(self.mesh):
            opt_state = jax.jit(self.tx.init, in_shardings=(self.state_shardings.params,),
                                out_shardings=self.state_shardings.opt_state)(state.params)
        return state.replace(opt_state=opt_state)

    # -- steps --------------------------------------------------------------------------------------------

    def abstract_batch(self, global_batch_size: int, seeds: int = 0) -> dict:
        """The program's batch as ShapeDtypeStructs with the batch sharding (rows over the data axes); with
        `seeds`, one batch per seed stacked along a leading axis."""
        lead, sharding = ((seeds,), self.stacked_batch_sharding) if seeds else ((), self.batch_sharding)
        return {k: jax.ShapeDtypeStruct(lead + v.shape, v.dtype, sharding=sharding)
                for k, v in self.program.abstract_batch(global_batch_size).items()}

    def compile(self, global_batch_size: int | None = None, log_memory: bool = True,
                include_eval: bool = True, eval_batch_size: int | None = None, seeds: int = 0) -> Compiled:
        """AOT-compiles the train and eval steps for this mesh and batch sizes (once per run).

        With include_eval=False the eval step is None (saves a compile where no evaluation runs); the eval
        step's batch size is `eval_batch_size`, by default the training one.

        With `seeds` = K > 0 both steps are vmapped over K runs: the train step takes the state of
        `stack_states`, K batches stacked ([K, batch, ...]) and K keys ([K, 2]), and returns metrics of shape
        [K]; the eval step takes the K parameter sets and one batch for all and returns outputs of shape [K, ...].
        Each run computes what its own unstacked step would (up to the rounding of batched matmuls).
        """
        batch_size = global_batch_size or self.config.train.batch_size
        eval_batch_size = eval_batch_size or batch_size
        sharding_lib.check_batch_size(batch_size, self.mesh)
        rng = jax.ShapeDtypeStruct((seeds, 2) if seeds else (2,), jnp.uint32, sharding=self.replicated)
        step_fn = functools.partial(train_step, program=self.program, tx=self.tx, schedule=self.schedule,
                                    skip_nonfinite=skips_nonfinite_updates(self.config))
        eval_fn = functools.partial(eval_step, program=self.program)
        state_shardings, batch_sharding = self.state_shardings, self.batch_sharding
        if seeds:
            step_fn, eval_fn = jax.vmap(step_fn), jax.vmap(eval_fn, in_axes=(0, None, None))
            state_shardings, batch_sharding = self.stacked_state_shardings, self.stacked_batch_sharding
        started = time.time()
        logging.info("compiling the %s for batch %d%s (a large model's first compile takes minutes) ...",
                     "train and eval steps" if include_eval else "train step", batch_size,
                     f", vmapped over {seeds} seeds" if seeds else "")
        with sharding_lib.use_mesh(self.mesh):
            batch = self.abstract_batch(batch_size, seeds)
            train = jax.jit(step_fn, in_shardings=(state_shardings, batch_sharding, self.replicated),
                            out_shardings=(state_shardings, self.replicated), donate_argnums=(0,))
            compiled_train = train.lower(self.abstract_state(seeds), batch, rng).compile()
            compiled_eval = None
            if include_eval:
                sharding_lib.check_batch_size(eval_batch_size, self.mesh, field="train.eval_batch_size")
                evaluate = jax.jit(eval_fn, in_shardings=(state_shardings.params, self.batch_sharding,
                                                          self.replicated), out_shardings=self.replicated)
                eval_rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=self.replicated)
                compiled_eval = evaluate.lower(self.abstract_state(seeds).params, self.abstract_batch(eval_batch_size),
                                               eval_rng).compile()
        logging.info("compiled in %.1f s", time.time() - started)
        if log_memory:
            log_memory_analysis(compiled_train, "train step")
        return Compiled(compiled_train, compiled_eval)


def skips_nonfinite_updates(config: ml_collections.ConfigDict) -> bool:
    """config.train.max_skipped_updates > 0: non-finite updates are skipped (default 0: the run stops)."""
    return int(config.train.get("max_skipped_updates", 0) or 0) > 0


def memory_summary(compiled) -> dict[str, float] | None:
    """Per-device bytes XLA plans for a compiled step (None where the backend does not report them)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # some backends raise instead of returning None
        return None
    if stats is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
              "generated_code_size_in_bytes", "alias_size_in_bytes")
    return {f: float(getattr(stats, f, 0) or 0) for f in fields}


def log_memory_analysis(compiled, name: str) -> dict[str, float] | None:
    summary = memory_summary(compiled)
    if summary is None:
        logging.info("%s: the backend gives no memory analysis", name)
        return None
    total = (summary["argument_size_in_bytes"] + summary["output_size_in_bytes"] + summary["temp_size_in_bytes"]
             - summary["alias_size_in_bytes"])
    logging.info("%s compiled: per device %.1f MiB arguments, %.1f MiB outputs (%.1f MiB aliased/donated), "
                 "%.1f MiB temporaries; about %.1f MiB in all", name, summary["argument_size_in_bytes"] / 2**20,
                 summary["output_size_in_bytes"] / 2**20, summary["alias_size_in_bytes"] / 2**20,
                 summary["temp_size_in_bytes"] / 2**20, total / 2**20)
    return summary


def check_params_match(params: dict, expected: dict) -> None:
    """Raises ValueError naming missing, extra or mis-shaped parameters (e.g. a discriminator-only import)."""
    flat = {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    want = {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    missing = sorted(set(want) - set(flat))
    if missing:
        gen = [m for m in missing if m.startswith(("generator", "generator_predictions"))]
        hint = (" The checkpoint has no generator (e.g. a discriminator-only HF import): pre-training needs "
                "both networks; import the generator too (convert from_hf with the generator folder)."
                if gen and len(gen) == len(missing) else
                " Check that config.model matches the checkpoint's model sizes.")
        raise ValueError(f"checkpoint.init parameters lack {len(missing)} entries the model needs, e.g. "
                         f"{missing[:4]}.{hint}")
    extra = sorted(set(flat) - set(want))
    if extra:
        raise ValueError(f"checkpoint.init parameters hold {len(extra)} entries this model does not have, e.g. "
                         f"{extra[:4]}; check config.model (sizes, untied_generator_embeddings, objective.kind)")
    for name, value in flat.items():
        if tuple(np.shape(value)) != tuple(want[name].shape):
            raise ValueError(f"checkpoint.init parameter {name} has shape {tuple(np.shape(value))} but the model "
                             f"expects {tuple(want[name].shape)}; check config.model against the checkpoint")
