"""predict.fill_mask / detect on a tiny model whose output layers are set by hand, so the answers are known.

With the generator head's LayerNorm scale and bias at zero, its hidden state is zero and every logit equals
the output bias: the probabilities are a softmax of numbers we chose. With the discriminator's final kernel
at zero, every token's probability is sigmoid(its bias).
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from electra_jax import config as config_lib
from electra_jax import modeling, predict
from electra_jax.data import tokenizer

REPO = Path(__file__).resolve().parents[1]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "on", "mat", ".", "ate",
         "a", "##s", "hat"]
ID = {token: i for i, token in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return path


@pytest.fixture(scope="module")
def tok(vocab_path):
    return tokenizer(str(vocab_path))


@pytest.fixture(scope="module")
def config(vocab_path):
    return config_lib.load("configs/pretrain.py:tiny", {"model.vocab_size": len(VOCAB), "data.vocab": str(vocab_path),
                                                        "model.num_layers": 1})


@pytest.fixture(scope="module")
def init_params(config) -> dict:
    # Initialized once per module (the eager init is the slowest part of these tests on a busy CPU).
    return jax.tree_util.tree_map(np.asarray, jax.jit(functools.partial(modeling.init_params, config))(
        jax.random.key(0)))


def _hand_set(init_params: dict, gen_bias: dict[int, float], disc_bias: float) -> dict:
    params = jax.tree_util.tree_map(np.array, init_params)  # a copy
    head = params["generator_predictions"]
    head["LayerNorm"]["scale"][:] = 0.0
    head["LayerNorm"]["bias"][:] = 0.0
    head["output_bias"][:] = 0.0
    for token_id, value in gen_bias.items():
        head["output_bias"][token_id] = value
    # A padded row of the table must never be offered, however large its bias.
    head["output_bias"][len(VOCAB) + 3] = 100.0
    final = params["discriminator_predictions"]["dense_prediction"]
    final["kernel"][:] = 0.0
    final["bias"][:] = disc_bias
    return params


def test_encode_maps_literal_mask_to_the_mask_id(tok):
    ids, positions = predict.encode(tok, "the [MASK] sat on the mat.")
    assert ids == [ID[t] for t in ("[CLS]", "the", "[MASK]", "sat", "on", "the", "mat", ".", "[SEP]")]
    assert positions == [2]
    ids, positions = predict.encode(tok, "[MASK][MASK] sat")
    assert ids == [ID["[CLS]"], ID["[MASK]"], ID["[MASK]"], ID["sat"], ID["[SEP]"]] and positions == [1, 2]
    # Without the split, the tokenizer would have produced "[", "mask", "]" (all unknown here).
    assert tok.encode("[MASK]") != [ID["[MASK]"]]


def test_fill_mask_follows_the_hand_set_bias(config, tok, init_params):
    params = _hand_set(init_params, {ID["cat"]: 3.0, ID["dog"]: 2.0, ID["hat"]: 1.0}, disc_bias=0.0)
    results = predict.fill_mask(params, config, tok, "the [MASK] sat on the [MASK].", top_k=3)
    # softmax over the 16 real tokens of logits {cat: 3, dog: 2, hat: 1, the other 13: 0}.
    total = math.exp(3) + math.exp(2) + math.exp(1) + (len(VOCAB) - 3)
    expected = [("cat", math.exp(3) / total), ("dog", math.exp(2) / total), ("hat", math.exp(1) / total)]
    assert len(results) == 2
    for candidates in results:
        assert [t for t, _ in candidates] == [t for t, _ in expected]
        np.testing.assert_allclose([p for _, p in candidates], [p for _, p in expected], rtol=1e-5)


def test_detect_follows_the_hand_set_bias(config, tok, init_params):
    text = "the cat ate the hats."
    for bias in (1.5, -1.0):
        params = _hand_set(init_params, {}, disc_bias=bias)
        results = predict.detect(params, config, tok, text)
        assert [t for t, _ in results] == ["the", "cat", "ate", "the", "hat", "##s", "."]
        np.testing.assert_allclose([p for _, p in results], [1 / (1 + math.exp(-bias))] * 7, rtol=1e-5)
    assert predict.format_detect([("the", 0.2), ("dog", 0.9)]).splitlines() == [
        "token  p(replaced)",
        "the    0.200",
        "dog    0.900  <- replaced?",
        "tokens judged replaced (p > 0.50) are bracketed: the [dog]"]


def test_errors_a_user_can_act_on(config, tok, vocab_path, tmp_path, init_params):
    params = _hand_set(init_params, {}, 0.0)
    with pytest.raises(ValueError, match=r"no \[MASK\]"):
        predict.fill_mask(params, config, tok, "no mask here", 3)
    other = tmp_path / "other_vocab.txt"
    other.write_text("\n".join(VOCAB + ["extra"]) + "\n")
    with pytest.raises(ValueError, match="vocab_size = 16"):
        predict.detect(params, config, tokenizer(str(other)), "the cat")
    disc_only = {k: v for k, v in params.items() if k != "generator_predictions"}
    with pytest.raises(ValueError, match="no generator"):
        predict.fill_mask(disc_only, config, tok, "the [MASK]", 3)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "electra_jax.predict", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_on_a_params_only_checkpoint(config, tok, tmp_path, init_params):
    from electra_jax import checkpoints

    params = _hand_set(init_params, {ID["dog"]: 5.0}, disc_bias=2.0)
    checkpoints.save_params(str(tmp_path / "export"), params, config)
    result = _run_cli("fill_mask", f"--checkpoint={tmp_path / 'export'}", "--text=the [MASK] sat.", "--top_k=2")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[1]
    assert first.startswith("[MASK] 1: dog ")
    result = _run_cli("detect", f"--checkpoint={tmp_path / 'export'}", "--text=the cat sat")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("[the] [cat] [sat]")


@pytest.mark.slow
def test_cli_on_an_hf_export(config, tmp_path, vocab_path, init_params):
    pytest.importorskip("safetensors")
    pytest.importorskip("transformers")
    from electra_jax import convert

    params = _hand_set(init_params, {ID["mat"]: 6.0}, disc_bias=-3.0)
    convert.save_hf(params, config, str(tmp_path / "hf"), vocab_path=str(vocab_path))
    for checkpoint in (tmp_path / "hf", tmp_path / "hf" / "discriminator"):
        result = _run_cli("fill_mask", f"--checkpoint={checkpoint}", "--text=on the [MASK]", "--top_k=1")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[1].startswith("[MASK] 1: mat ")
    result = _run_cli("detect", f"--checkpoint={tmp_path / 'hf'}", "--text=the cat")
    assert result.returncode == 0, result.stderr
    assert "replaced?" not in result.stdout and result.stdout.splitlines()[-1].endswith(": the cat")
    bad = _run_cli("detect", f"--checkpoint={tmp_path / 'nothing'}", "--text=x")
    assert bad.returncode != 0


# ---------------------------------------------------------------------------------------------------------
# score: Electric's energies


@pytest.fixture(scope="module")
def electric(vocab_path):
    config = config_lib.load("configs/pretrain.py:tiny", {"model.vocab_size": len(VOCAB), "data.vocab": str(vocab_path),
                                                          "model.num_layers": 1, "objective.kind": "electric"})
    params = jax.device_get(jax.jit(functools.partial(modeling.init_params, config))(jax.random.key(1)))
    return config, params


def test_score_is_the_sum_of_the_hand_set_energies(tok, electric):
    config, params = electric
    params = jax.tree_util.tree_map(np.array, params)
    final = params["discriminator_predictions"]["dense_prediction"]
    final["kernel"][:] = 0.0
    final["bias"][:] = 0.75  # every token's raw logit, i.e. its energy
    result = predict.score(params, config, tok, "the cat sat.")
    assert [t for t, _ in result.tokens] == ["the", "cat", "sat", "."]
    np.testing.assert_allclose([e for _, e in result.tokens], [0.75] * 4, rtol=1e-6)
    assert result.energy == pytest.approx(3.0, rel=1e-6)
    assert predict.format_score(result).splitlines()[:3] == [
        "energy 3.0000 (sum over 4 tokens; lower = more plausible)", "token  energy", "the    0.7500"]


def test_score_equals_the_exported_discriminator_in_hf_pytorch(tok, electric):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from electra_jax import convert

    config, params = electric
    disc, _, (disc_config, _) = convert.to_hf_state_dicts(params, config)
    hf = transformers.ElectraForPreTraining(transformers.ElectraConfig(**disc_config, attn_implementation="eager"))
    hf.load_state_dict({k: torch.tensor(v) for k, v in disc.items()}, strict=False)
    texts = ["the cat sat on the mat.", "a dog ate the hats.", "the the mat"]
    for text in texts:
        ids, _ = predict.encode(tok, text)
        with torch.no_grad():
            theirs = hf.eval()(input_ids=torch.tensor([ids])).logits[0, 1:-1].numpy()
        result = predict.score(params, config, tok, text)
        np.testing.assert_allclose([e for _, e in result.tokens], theirs, atol=1e-5)
        assert result.energy == pytest.approx(float(theirs.astype(np.float64).sum()), abs=1e-4)
    # Re-ranking scores all texts in one padded batch: the same energies, lowest first.
    ranked = predict.rerank(params, config, tok, texts)
    singles = {text: predict.score(params, config, tok, text).energy for text in texts}
    assert [e for _, e in ranked] == sorted(e for _, e in ranked)
    for text, energy in ranked:
        assert energy == pytest.approx(singles[text], abs=1e-4)


def test_score_cli_prints_the_energy_and_notes_a_non_electric_checkpoint(config, tmp_path, electric, init_params):
    from electra_jax import checkpoints

    electric_config, electric_params = electric
    checkpoints.save_params(str(tmp_path / "electric"), electric_params, electric_config)
    result = _run_cli("score", f"--checkpoint={tmp_path / 'electric'}", "--text=the cat sat")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("energy ") and "sum over 3 tokens" in result.stdout
    assert "note:" not in result.stderr
    checkpoints.save_params(str(tmp_path / "electra"), init_params, config)
    result = _run_cli("score", f"--checkpoint={tmp_path / 'electra'}", "--text=the cat sat")
    assert result.returncode == 0, result.stderr
    assert "objective.kind='electric'" in result.stderr


def test_detect_on_electric_is_its_nce_posterior(tok, electric):
    config, params = electric
    text = "the cat sat on the mat."
    ids, _ = predict.encode(tok, text)
    raw = np.asarray(modeling.discriminator_logits(params, config, [ids]), np.float64)[0]
    cloze = np.asarray(modeling.generator_logits(params, config, [ids]), np.float64)[0]
    log_q = cloze[np.arange(len(ids)), ids] - np.log(np.exp(cloze).sum(-1))  # numpy log-softmax at each x_t
    expected = 1 / (1 + np.exp(-(raw + log_q + np.log(0.15 / 0.85))))
    np.testing.assert_allclose([p for _, p in predict.detect(params, config, tok, text)], expected[1:-1], rtol=1e-4)
