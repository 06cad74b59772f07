"""`python -m electra_jax.convert {to_hf|from_hf|from_tf|check} --flags` (see electra_jax.convert.cli).

to_hf writes OUT/discriminator/ and OUT/generator/; a masked-LM baseline (objective.kind=mlm) only generator/,
Electric (objective.kind=electric) only discriminator/ (its two-tower generator has no HF class). --helpfull lists
the flags; docs/CONVERT.md has the details.
"""

from electra_jax import cli
from electra_jax.convert.cli import define_flags, main

if __name__ == "__main__":
    define_flags()
    cli.run(main)
