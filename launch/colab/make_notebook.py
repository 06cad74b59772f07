"""Regenerates launch/colab/electra_jax.ipynb from the cells below: python launch/colab/make_notebook.py"""
import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell
cells = [
md("""# electra_jax in a notebook

ELECTRA (Clark et al., ICLR 2020) pre-trains a small **generator** (a masked language model) together with a
**discriminator** that learns to spot which tokens the generator replaced. This notebook runs the whole loop
with [electra_jax](../../README.md): install, pre-train the `tiny` model on a small corpus, plot the curves,
ask the discriminator which tokens look replaced, fine-tune on SST-2, and export to HF transformers.

It runs on a Colab **TPU** runtime (Runtime → Change runtime type → TPU), a GPU runtime, or a plain CPU.
Set `SIZE = "small"` and more steps on an accelerator."""),
code("""import os
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:  # fetch and install electra_jax (on a TPU runtime JAX's TPU wheels come with [tpu])
    if not os.path.exists("electra_jax"):
        repo = os.environ.get("ELECTRA_JAX_REPO", "https://github.com/OWNER/electra_jax")  # your fork or mirror
        subprocess.run(["git", "clone", "-q", repo], check=True)
    os.chdir("electra_jax")
    extra = "[tpu,plot]" if "COLAB_TPU_ADDR" in os.environ or os.path.exists("/dev/accel0") else "[plot]"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "." + extra, "safetensors"], check=True)
elif os.path.basename(os.getcwd()) == "colab":  # run from launch/colab: work from the repo root
    os.chdir("../..")
print("working in", os.getcwd())"""),
code("""import jax
print("JAX", jax.__version__, "on", jax.devices())
SIZE = os.environ.get("NOTEBOOK_SIZE", "tiny")          # tiny | small | base ...
STEPS = int(os.environ.get("NOTEBOOK_STEPS", "600"))   # pre-training steps
FINETUNE_EXAMPLES = int(os.environ.get("NOTEBOOK_FINETUNE_EXAMPLES", "4000"))
WORK = os.path.abspath(os.environ.get("NOTEBOOK_WORKDIR", "runs/notebook"))
os.makedirs(WORK, exist_ok=True)

def run(*args):
    \"\"\"Runs an electra_jax command line tool and shows its last lines.\"\"\"
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    print("\\n".join((out.stdout + out.stderr).strip().splitlines()[-4:]))
    out.check_returncode()"""),
md("""## 1. A corpus, a vocabulary and pre-training records
With no text of your own, `demo_corpus` writes the docstrings of this Python's standard library (one sentence
per line, a blank line between documents — ELECTRA's input format). Replace `TEXT` with your own files."""),
code("""from electra_jax import demo_corpus
files = demo_corpus.write_corpus(f"{WORK}/corpus", num_files=4)
TEXT, HELDOUT = f"{WORK}/corpus/train_*.txt", f"{WORK}/corpus/eval.txt"
run("electra_jax.build_vocab", f"--input={TEXT}", "--vocab_size=8000", "--kind=wordpiece", f"--output={WORK}/vocab.txt")
run("electra_jax.build_data", f"--input={TEXT}", f"--vocab={WORK}/vocab.txt", f"--output_dir={WORK}/records/train",
    "--max_seq_length=128", "--num_shards=4")
run("electra_jax.build_data", f"--input={HELDOUT}", f"--vocab={WORK}/vocab.txt", f"--output_dir={WORK}/records/eval",
    "--max_seq_length=128", "--num_shards=1")"""),
md("""## 2. Pre-train
`train_and_evaluate` is what `python -m electra_jax.pretrain` calls. Re-running this cell resumes from the last
checkpoint in the workdir."""),
code("""from electra_jax import config as config_lib, pretrain
config = config_lib.load(f"configs/pretrain.py:{SIZE}", {
    "data.train_files": f"{WORK}/records/train/*.tfrecord*",
    "data.eval_files": f"{WORK}/records/eval/*.tfrecord*",
    "data.max_seq_length": 128,
    "train.steps": STEPS, "train.log_every": max(1, STEPS // 20), "train.eval_every": max(1, STEPS // 2),
    "train.batch_size": 32, "train.progress": "log",
    "optim.warmup_steps": max(1, STEPS // 10), "checkpoint.every_steps": STEPS,
})
pretrain.train_and_evaluate(config, f"{WORK}/pretrain")"""),
md("## 3. The curves (from `metrics.jsonl`)"),
code("""from electra_jax import plot
from IPython.display import Image, display
figures = plot.plot_workdir(f"{WORK}/pretrain", output_dir=f"{WORK}/plots")
for name in figures:
    display(Image(filename=f"{WORK}/plots/{name}.png"))"""),
md("""## 4. What does the discriminator think?
`detect` prints the probability that each token was replaced; `fill_mask` asks the generator."""),
code("""from electra_jax import predict
params, model_config = predict.load(f"{WORK}/pretrain")
tok = predict.load_tokenizer(model_config)
for text in ["the function returns a new list of strings .", "the function returns a green list of strings ."]:
    print(text)
    print("  ", [(token, round(p, 2)) for token, p in predict.detect(params, model_config, tok, text)])
print(predict.fill_mask(params, model_config, tok, "return the [MASK] of the list .", 5))"""),
md("""## 5. Fine-tune on SST-2
Uses the GLUE TSVs in `GLUE_DIR` when present; in Colab it prepares the TFDS `glue/sst2` dataset instead."""),
code("""from electra_jax import finetune
ft = config_lib.load(f"configs/finetune.py:sst2,{SIZE}", {
    "train.max_train_examples": FINETUNE_EXAMPLES, "train.epochs": 1, "train.progress": "log",
    "data.max_seq_length": 64})
glue = os.environ.get("GLUE_DIR", os.path.abspath("../shared/data/glue"))
if os.path.exists(f"{glue}/SST-2"):
    ft.data.dir = f"{glue}/SST-2"
else:  # Colab: prepare glue/sst2 once (this downloads; electra_jax itself never does)
    import tensorflow_datasets as tfds
    tfds.builder("glue/sst2", data_dir=f"{WORK}/tfds").download_and_prepare()
    ft.data.tfds, ft.data.tfds_data_dir = True, f"{WORK}/tfds"
results = finetune.train_and_evaluate(ft, f"{WORK}/sst2", init=f"{WORK}/pretrain")
print(results["best"])"""),
md("## 6. Export to HF transformers (PyTorch)"),
code("""run("electra_jax.convert", "to_hf", f"--checkpoint={WORK}/pretrain", f"--output_dir={WORK}/hf")
print(sorted(os.listdir(f"{WORK}/hf/discriminator")))
# In PyTorch: ElectraForPreTraining.from_pretrained(f"{WORK}/hf/discriminator")"""),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "accelerator": "TPU", "colab": {"provenance": []}})
nbf.write(nb, "launch/colab/electra_jax.ipynb")
