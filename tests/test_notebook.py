"""The Colab notebook runs headless on CPU with the tiny config (a few steps, a small fine-tuning set)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_notebook_executes_headless(tmp_path, shared_dir):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("tensorflow", reason="the notebook builds TFRecords, as on Colab")
    notebook = nbformat.read(REPO / "launch" / "colab" / "electra_jax.ipynb", as_version=4)
    env = {"NOTEBOOK_STEPS": "20", "NOTEBOOK_FINETUNE_EXAMPLES": "64", "NOTEBOOK_WORKDIR": str(tmp_path / "nb"),
           "GLUE_DIR": str(shared_dir / "data" / "glue"), "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(REPO)}})
        client.execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "accuracy" in outputs  # the fine-tuning result was printed
    assert (tmp_path / "nb" / "hf" / "discriminator" / "config.json").exists()
    assert (tmp_path / "nb" / "pretrain" / "metrics.jsonl").exists()
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the curves were not displayed"
