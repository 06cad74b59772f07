"""The ELECTRA networks in flax.linen: shared embeddings, post-LN encoders, generator and discriminator heads.

Numerics follow the original google-research/electra `model/modeling.py` (ELECTRA_REFERENCE.md section 1):
exact-erf GELU, LayerNorm epsilon 1e-12, post-LayerNorm layers, a -10000 additive key mask, no pooler,
truncated-normal(0.02) initializers with Glorot-uniform for the embedding projection and the
discriminator's final 1-unit layer.

Parameter tree of `ElectraPretrainer` (every weight carries logical axis names for sharding):

    embeddings/{word_embeddings [Vp, E], position_embeddings [P, E], token_type_embeddings [T, E],
                LayerNorm/{scale, bias}}                       shared by both networks
    discriminator/{embeddings_project (if E != H), layer_0 ... layer_{L-1}}   (or `layers`, stacked, with
    generator/{embeddings_project (if E != Hg), layer_0 ...}                   scan_layers=True)
    generator_embeddings/...                                   only with untied_generator_embeddings
    discriminator_predictions/{dense, dense_prediction}
    generator_predictions/{dense, LayerNorm, output_bias [Vp]}

Each layer holds query/key/value (kernels [H, heads, head_dim]), attention_output (kernel
[heads, head_dim, H]), attention_LayerNorm, intermediate, output and output_LayerNorm. The word table
is padded to `padded_vocab_size`; padded rows never receive probability mass (their logits are
-1e9) and are cut from every logit this module's public functions return.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from electra_jax import attention as attention_lib
from electra_jax.config import finalize_model
from electra_jax.tree_paths import path_name

PAD_LOGIT = -1e9

truncated_normal = jax.nn.initializers.truncated_normal  # σ of the untruncated normal, cut at ±2σ
glorot_uniform = jax.nn.initializers.xavier_uniform()
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The hashable, fully derived model settings the modules read (built from `config.model`)."""

    vocab_size: int
    padded_vocab_size: int
    embedding_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    generator_hidden_size: int
    generator_num_layers: int
    generator_num_heads: int
    generator_intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    untied_generator_embeddings: bool = False
    dtype: str = "float32"
    attention: str = "xla"
    scan_layers: bool = False
    remat: str = "none"
    mlm_only: bool = False  # plain masked-LM baseline: the generator head on the discriminator encoder

    @classmethod
    def from_config(cls, config: Any, mlm_only: bool | None = None) -> ModelConfig:
        """Accepts a full config (with `.model`) or its model section; validates and derives first."""
        if isinstance(config, ModelConfig):
            return config
        if mlm_only is None:
            mlm_only = "objective" in config and config.objective.kind == "mlm"
        model = config.model if "model" in config else config
        model = finalize_model(ml_collections.ConfigDict(model.to_dict()))
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in model.to_dict().items() if k in names}
        return cls(**values, mlm_only=bool(mlm_only))

    @property
    def compute_dtype(self):
        return jnp.bfloat16 if self.dtype == "bfloat16" else jnp.float32


def _kernel(cfg: ModelConfig, axes: tuple, glorot: bool = False):
    init = glorot_uniform if glorot else truncated_normal(cfg.initializer_range)
    return nn.with_logical_partitioning(init, axes)


def _dense(cfg: ModelConfig, features, axes: tuple, name: str, glorot: bool = False, axis=-1):
    return nn.DenseGeneral(
        features, axis=axis, dtype=cfg.compute_dtype, param_dtype=jnp.float32, name=name,
        kernel_init=_kernel(cfg, axes, glorot),
        bias_init=nn.with_logical_partitioning(zeros, axes[-1:] if isinstance(features, int) else axes[1:]))


def _layer_norm(cfg: ModelConfig, axis_name: str, name: str):
    # Statistics in float32 with the two-pass variance, epsilon 1e-12 as tf.contrib.layers.layer_norm.
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps, dtype=cfg.compute_dtype, param_dtype=jnp.float32, use_fast_variance=False,
        scale_init=nn.with_logical_partitioning(ones, (axis_name,)),
        bias_init=nn.with_logical_partitioning(zeros, (axis_name,)), name=name)


def gelu(x):
    """The exact erf GELU of the original (jax.nn.gelu defaults to the tanh approximation)."""
    return jax.nn.gelu(x, approximate=False)


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout. One owner of the word table."""

    cfg: ModelConfig
    width: int

    def setup(self):
        cfg = self.cfg
        init = truncated_normal(cfg.initializer_range)
        self.word_embeddings = self.param(
            "word_embeddings", nn.with_logical_partitioning(init, ("vocab", "embed_table")),
            (cfg.padded_vocab_size, self.width), jnp.float32)
        self.position_embeddings = self.param(
            "position_embeddings", nn.with_logical_partitioning(init, (None, "embed_table")),
            (cfg.max_position_embeddings, self.width), jnp.float32)
        self.token_type_embeddings = self.param(
            "token_type_embeddings", nn.with_logical_partitioning(init, (None, "embed_table")),
            (cfg.type_vocab_size, self.width), jnp.float32)
        self.LayerNorm = _layer_norm(cfg, "embed_table", "LayerNorm")
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def __call__(self, input_ids, segment_ids, deterministic: bool):
        seq_len = input_ids.shape[-1]
        x = jnp.take(self.word_embeddings, input_ids, axis=0)
        x = x + jnp.take(self.token_type_embeddings, segment_ids, axis=0)
        x = x + self.position_embeddings[None, :seq_len]
        x = self.LayerNorm(x)
        return self.dropout(x, deterministic=deterministic)

    def attend(self, hidden):
        """Logits against the word table: the generator's tied output layer (padding masked out)."""
        table = self.word_embeddings.astype(self.cfg.compute_dtype)
        logits = jnp.einsum("...e,ve->...v", hidden, table, preferred_element_type=jnp.float32)
        if self.cfg.padded_vocab_size > self.cfg.vocab_size:
            valid = jnp.arange(self.cfg.padded_vocab_size) < self.cfg.vocab_size
            logits = jnp.where(valid, logits, PAD_LOGIT)
        return logits


class TransformerLayer(nn.Module):
    """One post-LayerNorm BERT layer."""

    cfg: ModelConfig
    hidden_size: int
    num_heads: int
    intermediate_size: int
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, input_mask):
        cfg = self.cfg
        head_dim = self.hidden_size // self.num_heads
        qkv_axes = ("embed", "heads", "kv")
        q = _dense(cfg, (self.num_heads, head_dim), qkv_axes, "query")(x)
        k = _dense(cfg, (self.num_heads, head_dim), qkv_axes, "key")(x)
        v = _dense(cfg, (self.num_heads, head_dim), qkv_axes, "value")(x)
        dropout_rng = None
        if not self.deterministic and cfg.attention_dropout > 0 and cfg.attention == "xla":
            dropout_rng = self.make_rng("dropout")
        context = attention_lib.get(cfg.attention)(
            q, k, v, input_mask, dropout_rate=cfg.attention_dropout, dropout_rng=dropout_rng,
            deterministic=self.deterministic)
        attn = _dense(cfg, self.hidden_size, ("heads", "kv", "embed"), "attention_output", axis=(-2, -1))(context)
        attn = nn.Dropout(cfg.hidden_dropout)(attn, deterministic=self.deterministic)
        x = _layer_norm(cfg, "embed", "attention_LayerNorm")(attn + x)
        h = _dense(cfg, self.intermediate_size, ("embed", "mlp"), "intermediate")(x)
        h = gelu(h)
        h = _dense(cfg, self.hidden_size, ("mlp", "embed"), "output")(h)
        h = nn.Dropout(cfg.hidden_dropout)(h, deterministic=self.deterministic)
        x = _layer_norm(cfg, "embed", "output_LayerNorm")(h + x)
        return x


class _ScanBody(TransformerLayer):
    """TransformerLayer with the (carry, broadcast) -> (carry, out) signature nn.scan wants."""

    @nn.compact
    def __call__(self, x, input_mask):
        return super().__call__(x, input_mask), None


_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class Encoder(nn.Module):
    """Embedding projection (when widths differ) and the stack of layers of one network."""

    cfg: ModelConfig
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    embedding_size: int

    @nn.compact
    def __call__(self, embedded, input_mask, deterministic: bool):
        cfg = self.cfg
        x = embedded
        if self.embedding_size != self.hidden_size:
            # The original's tf.layers.dense default: Glorot-uniform kernel, no activation.
            x = _dense(cfg, self.hidden_size, ("embed_table", "embed"), "embeddings_project", glorot=True)(x)
        layer_kwargs = dict(cfg=cfg, hidden_size=self.hidden_size, num_heads=self.num_heads,
                            intermediate_size=self.intermediate_size, deterministic=deterministic)
        if cfg.scan_layers:
            body = _ScanBody
            if cfg.remat != "none":
                body = nn.remat(body, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=False)
            stack = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                            in_axes=(nn.broadcast,), length=self.num_layers,
                            metadata_params={nn.PARTITION_NAME: "layers"})
            x, _ = stack(**layer_kwargs, name="layers")(x, input_mask)
            return x
        layer_cls = TransformerLayer
        if cfg.remat != "none":
            layer_cls = nn.remat(TransformerLayer, policy=_REMAT_POLICIES[cfg.remat])
        for i in range(self.num_layers):
            x = layer_cls(**layer_kwargs, name=f"layer_{i}")(x, input_mask)
        return x


class DiscriminatorHead(nn.Module):
    """dense(H) + GELU, then one Glorot-initialized logit per token."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, hidden):
        cfg = self.cfg
        h = gelu(_dense(cfg, cfg.hidden_size, ("embed", "embed_out"), "dense")(hidden))
        logits = _dense(cfg, 1, ("embed", None), "dense_prediction", glorot=True)(h)
        return logits[..., 0].astype(jnp.float32)


class GeneratorHead(nn.Module):
    """dense(to the table width) + GELU + LayerNorm; the output layer is the caller's tied table."""

    cfg: ModelConfig
    table_width: int

    @nn.compact
    def __call__(self, hidden, attend):
        cfg = self.cfg
        h = gelu(_dense(cfg, self.table_width, ("embed", "embed_table"), "dense")(hidden))
        h = _layer_norm(cfg, "embed_table", "LayerNorm")(h)
        output_bias = self.param("output_bias", nn.with_logical_partitioning(zeros, ("vocab",)),
                                 (cfg.padded_vocab_size,), jnp.float32)
        return attend(h) + output_bias


def _gather_positions(hidden, positions):
    """hidden [B, S, D], positions [B, N] -> [B, N, D] (the original gather_positions)."""
    return jnp.take_along_axis(hidden, positions[..., None].astype(jnp.int32), axis=1)


class ElectraPretrainer(nn.Module):
    """Generator and discriminator around one shared embedding block.

    Methods (use with `model.apply({"params": params}, ..., method=...)`):
      generator_logits_at(ids, segment_ids, input_mask, positions, deterministic) -> [B, N, Vp] float32
      generator_logits_all(ids, segment_ids, input_mask, deterministic) -> [B, S, Vp] float32
      discriminator_logits(ids, segment_ids, input_mask, deterministic) -> [B, S] float32
      discriminator_hidden(ids, segment_ids, input_mask, deterministic) -> [B, S, H]
    With `mlm_only`, there is no generator encoder and no discriminator head: the generator head reads
    the discriminator encoder (the original's "tie all weights" masked-LM path).
    """

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg, cfg.embedding_size)
        self.discriminator = Encoder(cfg, cfg.hidden_size, cfg.num_layers, cfg.num_heads,
                                     cfg.intermediate_size, cfg.embedding_size)
        if cfg.mlm_only:
            self.generator_predictions = GeneratorHead(cfg, cfg.embedding_size)
            return
        self.discriminator_predictions = DiscriminatorHead(cfg)
        if cfg.untied_generator_embeddings:
            self.generator_embeddings = Embeddings(cfg, cfg.generator_hidden_size)
            gen_embedding_size = cfg.generator_hidden_size
        else:
            gen_embedding_size = cfg.embedding_size
        self.generator = Encoder(cfg, cfg.generator_hidden_size, cfg.generator_num_layers,
                                 cfg.generator_num_heads, cfg.generator_intermediate_size, gen_embedding_size)
        self.generator_predictions = GeneratorHead(cfg, gen_embedding_size)

    def _generator_table(self):
        if self.cfg.untied_generator_embeddings and not self.cfg.mlm_only:
            return self.generator_embeddings
        return self.embeddings

    def generator_hidden(self, input_ids, segment_ids, input_mask, deterministic: bool = True):
        if self.cfg.mlm_only:
            return self.discriminator_hidden(input_ids, segment_ids, input_mask, deterministic)
        embedded = self._generator_table()(input_ids, segment_ids, deterministic)
        return self.generator(embedded, input_mask, deterministic)

    def generator_logits_at(self, input_ids, segment_ids, input_mask, positions, deterministic: bool = True):
        hidden = _gather_positions(self.generator_hidden(input_ids, segment_ids, input_mask, deterministic),
                                   positions)
        return self.generator_predictions(hidden, self._generator_table().attend)

    def generator_logits_all(self, input_ids, segment_ids, input_mask, deterministic: bool = True):
        hidden = self.generator_hidden(input_ids, segment_ids, input_mask, deterministic)
        return self.generator_predictions(hidden, self._generator_table().attend)

    def discriminator_hidden(self, input_ids, segment_ids, input_mask, deterministic: bool = True):
        embedded = self.embeddings(input_ids, segment_ids, deterministic)
        return self.discriminator(embedded, input_mask, deterministic)

    def discriminator_logits(self, input_ids, segment_ids, input_mask, deterministic: bool = True):
        return self.discriminator_predictions(
            self.discriminator_hidden(input_ids, segment_ids, input_mask, deterministic))

    def __call__(self, input_ids, segment_ids, input_mask, positions, deterministic: bool = True):
        gen_logits = self.generator_logits_at(input_ids, segment_ids, input_mask, positions, deterministic)
        if self.cfg.mlm_only:
            return gen_logits, None
        return gen_logits, self.discriminator_logits(input_ids, segment_ids, input_mask, deterministic)


# ---------------------------------------------------------------------------------------------------
# Functional helpers for notebooks, scripts and the training system.


def _dummy_inputs(cfg: ModelConfig):
    ids = jnp.zeros((1, 8), jnp.int32)
    return ids, ids, jnp.ones((1, 8), jnp.int32), jnp.zeros((1, 2), jnp.int32)


def build_model(config: Any) -> ElectraPretrainer:
    return ElectraPretrainer(ModelConfig.from_config(config))


def init_boxed_params(config: Any, rng: jax.Array):
    """Parameters still wrapped in their LogicallyPartitioned boxes (for sharding decisions)."""
    model = build_model(config)
    return model.init({"params": rng}, *_dummy_inputs(model.cfg))["params"]


def init_params(config: Any, rng: jax.Array) -> dict:
    """The parameter pytree (plain float32 arrays) of a freshly initialized ElectraPretrainer."""
    return nn.unbox(init_boxed_params(config, rng))


def param_shapes(config: Any) -> dict:
    """`init_params`' result as ShapeDtypeStructs, without allocating anything."""
    return nn.unbox(jax.eval_shape(functools.partial(init_boxed_params, config), jax.random.key(0)))


def logical_axes(config: Any) -> dict:
    """A pytree of PartitionSpecs of logical axis names, matching the parameter pytree."""
    return nn.get_partition_spec(jax.eval_shape(functools.partial(init_boxed_params, config),
                                                jax.random.key(0)))


def count_params(params, config: Any = None, exclude_vocab_padding: bool = True) -> int:
    """Total parameter count; by default without the rows the vocabulary padding adds."""
    total = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    if config is not None and exclude_vocab_padding:
        cfg = ModelConfig.from_config(config)
        pad = cfg.padded_vocab_size - cfg.vocab_size
        flat = {path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
        for name, leaf in flat.items():
            if name.endswith("word_embeddings"):
                total -= pad * leaf.shape[1]
            elif name.endswith("output_bias"):
                total -= pad
    return total


def _default_inputs(input_ids, segment_ids, input_mask):
    input_ids = jnp.asarray(input_ids, jnp.int32)
    segment_ids = jnp.zeros_like(input_ids) if segment_ids is None else jnp.asarray(segment_ids, jnp.int32)
    input_mask = jnp.ones_like(input_ids) if input_mask is None else jnp.asarray(input_mask, jnp.int32)
    return input_ids, segment_ids, input_mask


@functools.partial(jax.jit, static_argnums=(0, 1))
def _jit_apply(model, method_name, params, *args):
    return model.apply({"params": params}, *args, True, method=getattr(ElectraPretrainer, method_name))


def discriminator_logits(params, config, input_ids, segment_ids=None, input_mask=None) -> jax.Array:
    """The discriminator's replaced-token logits [B, S] (eval mode): the plain forward pass."""
    model = build_model(config)
    if model.cfg.mlm_only:
        raise ValueError("this config is a masked-LM baseline (objective.kind='mlm'): it has no discriminator head")
    return _jit_apply(model, "discriminator_logits", params, *_default_inputs(input_ids, segment_ids, input_mask))


def generator_logits(params, config, input_ids, segment_ids=None, input_mask=None) -> jax.Array:
    """The generator's MLM logits at every position [B, S, vocab_size] (eval mode, padding cut off)."""
    model = build_model(config)
    logits = _jit_apply(model, "generator_logits_all", params, *_default_inputs(input_ids, segment_ids, input_mask))
    return logits[..., : model.cfg.vocab_size]


def unstack_layers(params: dict) -> dict:
    """Turns scanned `layers` (leading layer axis) into `layer_0`..`layer_{L-1}` (the canonical layout)."""
    out = {}
    for key, value in params.items():
        if key == "layers" and isinstance(value, dict):
            num = jax.tree_util.tree_leaves(value)[0].shape[0]
            for i in range(num):
                out[f"layer_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], value)
        elif isinstance(value, dict):
            out[key] = unstack_layers(value)
        else:
            out[key] = value
    return out


def stack_layers(params: dict) -> dict:
    """The inverse of `unstack_layers`: `layer_i` subtrees become one `layers` subtree."""
    out = {}
    layer_keys = sorted((k for k in params if k.startswith("layer_") and k[6:].isdigit()), key=lambda k: int(k[6:]))
    for key, value in params.items():
        if key in layer_keys:
            continue
        out[key] = stack_layers(value) if isinstance(value, dict) else value
    if layer_keys:
        out["layers"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[params[k] for k in layer_keys])
    return out
