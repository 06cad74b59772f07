r"""Conversion between electra_jax checkpoints, HF transformers ELECTRA folders and original TF checkpoints.

  python -m electra_jax.convert to_hf --checkpoint=WORKDIR --output_dir=OUT [--dtype=bfloat16] [--vocab=PATH]
  python -m electra_jax.convert from_hf --input=HF_DISC_DIR [--generator=HF_GEN_DIR] --output_dir=OUT
  python -m electra_jax.convert from_tf --input=TF_CKPT --output_dir=OUT
  python -m electra_jax.convert check --checkpoint=ELECTRA_JAX_CKPT --hf_dir=OUT

Modules, one concern each:
  mapping          the one table (`Rule`, `hf_rules`, `tf_rules`) and the tensor transforms of every direction
  hf               HF config.json translation and state dicts (`to_hf_state_dicts`, `from_hf_state_dicts`)
  tokenizer_files  the tokenizer files of an HF export
  hf_folders       HF folders on disk (`save_hf`, `load_hf`; safetensors / pytorch_model.bin)
  tf               the original TF checkpoint import (`from_tf_checkpoint`)
  parity           the logit check against HF PyTorch (`check_parity`)
  cli              the command line (`python -m electra_jax.convert`)
torch, transformers, tensorflow, safetensors and tokenizers are imported only inside the functions that need
them, so this package imports without them. Reading any checkpoint format goes through
`electra_jax.checkpoint_formats.open_checkpoint`.
"""

from electra_jax.convert.hf import (
    from_hf_state_dicts,
    full_config,
    has_generator,
    hf_config_dict,
    infer_hf_config,
    model_config_from_hf,
    to_hf_state_dicts,
)
from electra_jax.convert.hf_folders import HF_DTYPES, load_hf, save_hf
from electra_jax.convert.mapping import Rule, hf_rules, tf_rules
from electra_jax.convert.parity import check_parity
from electra_jax.convert.tf import TFImportReport, from_tf_checkpoint, model_config_from_tf, set_casing
from electra_jax.convert.tokenizer_files import HF_TOKENIZER_CLASSES, write_tokenizer_files

__all__ = ["HF_DTYPES", "HF_TOKENIZER_CLASSES", "Rule", "TFImportReport", "check_parity", "from_hf_state_dicts",
           "from_tf_checkpoint", "full_config", "has_generator", "hf_config_dict", "hf_rules", "infer_hf_config",
           "load_hf", "model_config_from_hf", "model_config_from_tf", "save_hf", "set_casing", "tf_rules",
           "to_hf_state_dicts", "write_tokenizer_files"]
