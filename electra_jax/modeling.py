"""The ELECTRA networks in flax.linen: shared embeddings, post-LN encoders, generator and discriminator heads.

Numerics follow the original google-research/electra `model/modeling.py` (ELECTRA_REFERENCE.md section 1):
exact-erf GELU, LayerNorm epsilon 1e-12, post-LayerNorm layers, a -10000 additive key mask, no pooler,
truncated-normal(0.02) initializers with Glorot-uniform for the embedding projection and the
discriminator's final 1-unit layer.

Parameter tree of `ElectraPretrainer` (every weight carries logical axis names for sharding):

    embeddings/{word_embeddings [Vp, E], position_embeddings [P, E], token_type_embeddings [T, E],
                LayerNorm/{scale, bias}}                       shared by both networks (embedding_sharing
                                                               "tied"); the discriminator's alone ("untied");
                                                               the generator's, E_generator ("gdes")
    discriminator/{embeddings_project (if E != H), layer_0 ... layer_{L-1}}   (or `layers`, stacked, with
    generator/{embeddings_project (if E != Hg), layer_0 ...}                   scan_layers=True)
    generator_embeddings/...                                   only with embedding_sharing "untied"
    discriminator_embeddings/{word_embeddings_delta, position_embeddings_delta, token_type_embeddings_delta,
                              LayerNorm}                       only with "gdes" (DisentangledEmbeddings)
    discriminator_predictions/{dense, dense_prediction}
    generator_predictions/{dense, LayerNorm, output_bias [Vp]}

Electric (objective.kind="electric", `two_tower_generator`) replaces `generator` by the two towers of the
original's TwoTowerClozeTransformer, `generator_ltr` and `generator_rtl` (each like `generator`, with causal
attention; with "untied" each has its own `generator_ltr_embeddings` / `generator_rtl_embeddings`, the head
reading the left-to-right one's table, as the original), and `generator_predictions` is the original's
`cloze_predictions` head, whose dense layer reads both towers' outputs concatenated [2 Hg].

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
HEADLESS = "an ElectraModel or fine-tuned import: it fine-tunes, but cannot score tokens or export to HF"

truncated_normal = jax.nn.initializers.truncated_normal  # σ of the untruncated normal, cut at ±2σ
glorot_uniform = jax.nn.initializers.xavier_uniform()
zeros = jax.nn.initializers.zeros


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
    untied_generator_embeddings: bool = False  # derived: embedding_sharing == "untied"
    embedding_sharing: str = "tied"
    dtype: str = "float32"
    attention: str = "xla"
    scan_layers: bool = False
    remat: str = "none"
    mlm_only: bool = False  # plain masked-LM baseline: the generator head on the discriminator encoder
    two_tower_generator: bool = False  # Electric's cloze generator (objective.kind == "electric")

    @classmethod
    def from_config(cls, config: Any, mlm_only: bool | None = None) -> ModelConfig:
        """Accepts a full config (with `.model`) or its model section; validates and derives first."""
        if isinstance(config, ModelConfig):
            return config
        kind = config.objective.kind if "objective" in config else "electra"
        if mlm_only is None:
            mlm_only = kind == "mlm"
        model = config.model if "model" in config else config
        model = finalize_model(ml_collections.ConfigDict(model.to_dict()))
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in model.to_dict().items() if k in names}
        return cls(**values, mlm_only=bool(mlm_only), two_tower_generator=kind == "electric")

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
        scale_init=nn.with_logical_partitioning(jax.nn.initializers.ones, (axis_name,)),
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

    def tables(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(word, position, token type) tables: what GDES shares with the discriminator."""
        return self.word_embeddings, self.position_embeddings, self.token_type_embeddings

    def __call__(self, input_ids, segment_ids, deterministic: bool):
        x = embedding_sum(self.tables(), input_ids, segment_ids)
        return self.dropout(self.LayerNorm(x), deterministic=deterministic)

    def attend(self, hidden):
        """Logits against the word table: the generator's tied output layer (padding masked out)."""
        table = self.word_embeddings.astype(self.cfg.compute_dtype)
        logits = jnp.einsum("...e,ve->...v", hidden, table, preferred_element_type=jnp.float32)
        if self.cfg.padded_vocab_size > self.cfg.vocab_size:
            valid = jnp.arange(self.cfg.padded_vocab_size) < self.cfg.vocab_size
            logits = jnp.where(valid, logits, PAD_LOGIT)
        return logits


def embedding_sum(tables, input_ids, segment_ids):
    """word[ids] + token_type[segments] + position[:S], before the LayerNorm (embedding_lookup + postprocessor)."""
    word, position, token_type = tables
    x = jnp.take(word, input_ids, axis=0)
    x = x + jnp.take(token_type, segment_ids, axis=0)
    return x + position[None, : input_ids.shape[-1]]


class DisentangledEmbeddings(nn.Module):
    """The discriminator's embedding block under GDES (DeBERTa-v3, He et al. 2021; embedding_sharing="gdes").

    Its tables are stop_gradient(E_generator) + E_delta, with every E_delta zero-initialised, so the
    discriminator starts from the generator's tables, its loss trains only the deltas, and the generator's
    MLM loss alone trains E_generator. This follows microsoft/DeBERTa `apps/tasks/rtd_task.py` (RTDModel with
    embedding_sharing='gdes': `g.weight.detach() + d._weight`, `_weight = zeros_like`).

    What GDES covers, decided from that code: every embedding *table* the two networks share. DeBERTa-v3
    shares the word and the absolute position tables this way (it has no token-type table); ours also has a
    token-type table, read the same way as the position table, so it gets a delta too. The embedding
    LayerNorm is not a table: in DeBERTa each network owns its embedding LayerNorm (even plain sharing there
    shares tables only), so here the discriminator has its own, trained by its loss alone, initialised to
    1 / 0 like the generator's. Export and fine-tuning merge E_generator + E_delta into an ordinary ELECTRA
    table (`discriminator_params`).
    """

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        width = cfg.embedding_size
        self.word_embeddings_delta = self.param(
            "word_embeddings_delta", nn.with_logical_partitioning(zeros, ("vocab", "embed_table")),
            (cfg.padded_vocab_size, width), jnp.float32)
        self.position_embeddings_delta = self.param(
            "position_embeddings_delta", nn.with_logical_partitioning(zeros, (None, "embed_table")),
            (cfg.max_position_embeddings, width), jnp.float32)
        self.token_type_embeddings_delta = self.param(
            "token_type_embeddings_delta", nn.with_logical_partitioning(zeros, (None, "embed_table")),
            (cfg.type_vocab_size, width), jnp.float32)
        self.LayerNorm = _layer_norm(cfg, "embed_table", "LayerNorm")
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def deltas(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        return self.word_embeddings_delta, self.position_embeddings_delta, self.token_type_embeddings_delta

    def __call__(self, generator_tables, input_ids, segment_ids, deterministic: bool):
        tables = [jax.lax.stop_gradient(shared) + delta for shared, delta in zip(generator_tables, self.deltas())]
        x = embedding_sum(tables, input_ids, segment_ids)
        return self.dropout(self.LayerNorm(x), deterministic=deterministic)


def causal_attention_mask(input_mask, direction: str):
    """[B, S] key mask -> [B, S_from, S_to]: the original BertModel's `ltr` (position i attends to j <= i) or
    `rtl` (j >= i) mask, `matrix_band_part` of ones times the padding mask; the diagonal is included."""
    seq_len = input_mask.shape[-1]
    ones_ = jnp.ones((seq_len, seq_len), jnp.int32)
    band = jnp.tril(ones_) if direction == "ltr" else jnp.triu(ones_)
    return input_mask.astype(jnp.int32)[:, None, :] * band[None]


def shift_towers(ltr_hidden, rtl_hidden):
    """The original's `concat([roll(ltr, -1), roll(rtl, 1)], -1)`: position t reads the left-to-right output
    at t - 1 and the right-to-left output at t + 1, so neither has seen x_t (both wrap around the ends)."""
    return jnp.concatenate([jnp.roll(ltr_hidden, 1, axis=1), jnp.roll(rtl_hidden, -1, axis=1)], axis=-1)


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
        if not self.deterministic and cfg.attention_dropout > 0 and cfg.attention in attention_lib.WITH_DROPOUT:
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
    causal: str | None = None  # "ltr" / "rtl": the towers of Electric's generator

    @nn.compact
    def __call__(self, embedded, input_mask, deterministic: bool):
        cfg = self.cfg
        x = embedded
        if self.causal is not None:
            input_mask = causal_attention_mask(input_mask, self.causal)
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
    """Generator and discriminator around one embedding block (shared, untied, or GDES-shared).

    Methods (use with `model.apply({"params": params}, ..., method=...)`):
      generator_logits_at(ids, segment_ids, input_mask, positions, deterministic) -> [B, N, Vp] float32
      generator_logits_all(ids, segment_ids, input_mask, deterministic) -> [B, S, Vp] float32
      discriminator_logits(ids, segment_ids, input_mask, deterministic) -> [B, S] float32
      discriminator_hidden(ids, segment_ids, input_mask, deterministic) -> [B, S, H]
    With `mlm_only`, there is no generator encoder and no discriminator head: the generator head reads
    the discriminator encoder (the original's "tie all weights" masked-LM path). With `two_tower_generator`
    (Electric) the generator logits are the cloze logits q(x_t | x without x_t): the towers never see
    position t, so they are meant to read the unmasked ids.
    """

    cfg: ModelConfig  # or a config or its `model` section (CONTRACT.md: ElectraPretrainer(config.model))

    def __post_init__(self):
        object.__setattr__(self, "cfg", ModelConfig.from_config(self.cfg))  # a ModelConfig passes unchanged
        super().__post_init__()

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg, cfg.embedding_size)
        if cfg.embedding_sharing == "gdes":
            self.discriminator_embeddings = DisentangledEmbeddings(cfg)
        self.discriminator = Encoder(cfg, cfg.hidden_size, cfg.num_layers, cfg.num_heads,
                                     cfg.intermediate_size, cfg.embedding_size)
        if cfg.mlm_only:
            self.generator_predictions = GeneratorHead(cfg, cfg.embedding_size)
            return
        self.discriminator_predictions = DiscriminatorHead(cfg)
        untied = cfg.embedding_sharing == "untied"
        gen_width = cfg.generator_hidden_size if untied else cfg.embedding_size
        sizes = (cfg.generator_hidden_size, cfg.generator_num_layers, cfg.generator_num_heads,
                 cfg.generator_intermediate_size, gen_width)
        if cfg.two_tower_generator:
            self.generator_ltr = Encoder(cfg, *sizes, causal="ltr")
            self.generator_rtl = Encoder(cfg, *sizes, causal="rtl")
            if untied:
                self.generator_ltr_embeddings = Embeddings(cfg, gen_width)
                self.generator_rtl_embeddings = Embeddings(cfg, gen_width)
        else:
            self.generator = Encoder(cfg, *sizes)
            if untied:
                self.generator_embeddings = Embeddings(cfg, gen_width)
        self.generator_predictions = GeneratorHead(cfg, gen_width)

    def _generator_table(self):
        """The embedding block the generator reads (and its output layer is tied to)."""
        if self.cfg.mlm_only or self.cfg.embedding_sharing != "untied":
            return self.embeddings
        # The original's cloze head reads the left-to-right tower's table.
        return self.generator_ltr_embeddings if self.cfg.two_tower_generator else self.generator_embeddings

    def generator_hidden(self, input_ids, segment_ids, input_mask, deterministic: bool = True):
        if self.cfg.mlm_only:
            return self.discriminator_hidden(input_ids, segment_ids, input_mask, deterministic)
        if self.cfg.two_tower_generator:
            untied = self.cfg.embedding_sharing == "untied"
            towers = ((self.generator_ltr, self.generator_ltr_embeddings if untied else self.embeddings),
                      (self.generator_rtl, self.generator_rtl_embeddings if untied else self.embeddings))
            ltr, rtl = (tower(embed(input_ids, segment_ids, deterministic), input_mask, deterministic)
                        for tower, embed in towers)
            return shift_towers(ltr, rtl)
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
        if self.cfg.embedding_sharing == "gdes":
            embedded = self.discriminator_embeddings(self.embeddings.tables(), input_ids, segment_ids,
                                                     deterministic)
        else:
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
    return nn.get_partition_spec(jax.eval_shape(functools.partial(init_boxed_params, config), jax.random.key(0)))


def count_params(params, config: Any = None, exclude_vocab_padding: bool = True) -> int:
    """Total parameter count; by default without the rows the vocabulary padding adds."""
    total = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    if config is not None and exclude_vocab_padding:
        cfg = ModelConfig.from_config(config)
        pad = cfg.padded_vocab_size - cfg.vocab_size
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            if path_name(path).endswith("word_embeddings"):
                total -= pad * leaf.shape[1]
            elif path_name(path).endswith("output_bias"):
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
    if model.cfg.mlm_only or "discriminator_predictions" not in params:
        raise ValueError(f"no replaced-token head: {'a masked-LM baseline' if model.cfg.mlm_only else HEADLESS}")
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


# Parameter subtrees of the generator in each layout (everything `discriminator_params` drops).
_GENERATOR_KEYS = ("generator", "generator_embeddings", "generator_ltr", "generator_rtl",
                   "generator_ltr_embeddings", "generator_rtl_embeddings", "generator_predictions")
TWO_TOWER_EXPORT_NOTE = ("Electric's two-tower cloze generator (objective.kind='electric') has no HF transformers "
                         "class, so only the discriminator (an ordinary ElectraForPreTraining) is exported")


def discriminator_params(params: dict) -> dict:
    """The discriminator alone in the plain ELECTRA layout (`embeddings`, `discriminator`, its head): what
    fine-tuning and export start from. Under GDES (a `discriminator_embeddings` subtree) its `embeddings` are the
    merged tables E_generator + E_delta with its own LayerNorm, which is what it computes with, so its logits do
    not change."""
    disc = {k: v for k, v in params.items() if k not in _GENERATOR_KEYS + ("discriminator_embeddings",)}
    if "discriminator_embeddings" in params:
        shared, own = params["embeddings"], params["discriminator_embeddings"]
        disc["embeddings"] = {name: np.asarray(shared[name]) + np.asarray(own[f"{name}_delta"])
                              for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
        disc["embeddings"]["LayerNorm"] = dict(own["LayerNorm"])
    return disc


def hf_export_layouts(params: dict, config: Any) -> tuple[tuple[dict, ModelConfig],
                                                           tuple[dict, ModelConfig] | None]:
    """((discriminator params, config), (generator params, config) or None) in the plain ELECTRA layouts that
    HF's ElectraForPreTraining and ElectraForMaskedLM hold, for the layouts they cannot hold as they are.

    * GDES: the discriminator as `discriminator_params` gives it, in the tied layout; the generator keeps
      E_generator and the block's LayerNorm, also in the tied layout.
    * Electric: the two-tower cloze generator has no HF class; the generator is None and a warning says so.
    Other layouts come back unchanged (the discriminator view holds the generator too: one tree for both).
    """
    from absl import logging

    cfg = ModelConfig.from_config(config)
    if cfg.embedding_sharing != "gdes" and not cfg.two_tower_generator:
        return (params, cfg), (params, cfg)
    plain = dataclasses.replace(cfg, two_tower_generator=False, embedding_sharing="tied",
                                untied_generator_embeddings=False)
    disc = discriminator_params(params)
    if cfg.two_tower_generator:
        logging.warning(TWO_TOWER_EXPORT_NOTE)
        return (disc, plain), None
    gen = {k: v for k, v in params.items() if k != "discriminator_embeddings"}
    return (disc, plain), (gen, plain)
