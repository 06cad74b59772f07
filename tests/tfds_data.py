"""A tiny one-feature TFDS dataset prepared on disk, shared by the build_data and evidence-run tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_tiny_tfds(data_dir: Path, docs: list[str], class_name: str) -> str:
    """Prepares a one-feature ("text") TFDS dataset in data_dir from docs; returns its registered name."""
    tfds = pytest.importorskip("tensorflow_datasets")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, doc in enumerate(docs):
            yield i, {"text": doc}

    # A fresh class per call: TFDS registers builders by class name.
    cls = type(class_name, (tfds.core.GeneratorBasedBuilder,), {
        "VERSION": tfds.core.Version("1.0.0"), "_info": _info, "_split_generators": _split_generators,
        "_generate_examples": _generate_examples, "__module__": __name__})
    builder = cls(data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder.name
