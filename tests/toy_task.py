"""A toy fine-tuning task kind, written the way a user adds one: one module with a Task and its registration.

"first word": does the sentence start with "yes" or "no"? Its examples are generated (no files), its head
mean-pools the encoder output (unlike every built-in head), its loss is a sigmoid cross-entropy and its score is
the accuracy of thresholded probabilities.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from electra_jax.finetune import tasks
from electra_jax.finetune.task import Task, TaskData

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "house", "red", "blue"]


class MeanPoolHead(nn.Module):
    @nn.compact
    def __call__(self, hidden, batch, deterministic: bool, training: bool = False):
        mask = batch["input_mask"][..., None].astype(jnp.float32)
        pooled = jnp.sum(hidden.astype(jnp.float32) * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
        return nn.Dense(1, name="logit")(pooled)[..., 0]


@dataclasses.dataclass(frozen=True)
class FirstWordTask(Task):
    name: str = "toy_first_word"
    metrics: tuple = ("accuracy",)
    epochs: int = 4
    max_seq_length: int = 16

    def read(self, split, data_config):
        rng = np.random.RandomState(0 if split == "train" else 1)
        examples = []
        for _ in range(256 if split == "train" else 64):
            label = int(rng.randint(2))
            words = ["yes" if label else "no"] + list(rng.choice(WORDS, rng.randint(3, 10)))
            examples.append((" ".join(words), label))
        return examples

    def featurize(self, train_examples, dev_examples, tokenizer, config):
        def arrays(examples):
            seq = config.data.max_seq_length
            ids = np.full((len(examples), seq), tokenizer.pad_id, np.int32)
            for i, (text, _) in enumerate(examples):
                pieces = [tokenizer.cls_id] + tokenizer.encode(text)[: seq - 2] + [tokenizer.sep_id]
                ids[i, : len(pieces)] = pieces
            mask = (ids != tokenizer.pad_id).astype(np.int32)
            return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids),
                    "labels": np.asarray([label for _, label in examples], np.float32)}

        return TaskData(arrays(train_examples), arrays(dev_examples), num_outputs=1,
                        num_train_examples=len(train_examples), dev_examples=dev_examples)

    def head(self, num_outputs, config):
        return MeanPoolHead()

    def loss(self, outputs, batch, config) -> jax.Array:
        return optax.sigmoid_binary_cross_entropy(outputs, batch["labels"]).mean()

    def eval_outputs(self, outputs):
        return {"probability": jax.nn.sigmoid(outputs)}

    def score(self, data, outputs, config, output_dir=None):
        predicted = outputs["probability"] > 0.5
        return {"accuracy": float(np.mean(predicted == (data.dev["labels"] > 0.5)))}


TASK = tasks.register(FirstWordTask(), replace=True)
