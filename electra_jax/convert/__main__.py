"""`python -m electra_jax.convert {to_hf|from_hf|from_tf|check} --flags` (see electra_jax.convert.cli)."""

from electra_jax import cli
from electra_jax.convert.cli import define_flags, main

if __name__ == "__main__":
    define_flags()
    cli.run(main)
