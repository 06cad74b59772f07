"""Fine-tuning on the training system: a new task kind in one module, exact resume after SIGTERM, 8 devices = 1.

The 8-device run happens in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8, so the rest of
the suite keeps one CPU device.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from electra_jax import checkpoints
from electra_jax import config as config_lib
from electra_jax import finetune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rte_overrides(shared_dir, vocab, **extra):
    values = {"data.vocab": str(vocab), "data.dir": str(shared_dir / "data" / "glue" / "RTE"),
              "data.max_seq_length": 32, "train.batch_size": 8, "train.eval_batch_size": 8, "train.epochs": 2,
              "train.max_train_examples": 48, "train.max_eval_examples": 16, "train.progress": "log",
              "train.log_every": 1, "model.num_layers": 1}
    values.update(extra)
    return values


def _final_params(workdir):
    params, _ = checkpoints.restore_params(os.path.join(workdir, "final"))
    return {"/".join(path): leaf for path, leaf in _flatten(params)}


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), np.asarray(value)


def _preempt_after(calls_before_signal):
    """A Trainer.compile whose train step sends this process a real SIGTERM during its n-th call."""
    from electra_jax import train_state

    compile_steps = train_state.Trainer.compile

    def compile_with_a_signal(self, *args, **kwargs):
        compiled = compile_steps(self, *args, **kwargs)
        calls = []

        def train_step(state, batch, rng):
            calls.append(1)
            if len(calls) == calls_before_signal:
                os.kill(os.getpid(), signal.SIGTERM)
            return compiled.train_step(state, batch, rng)

        return compiled._replace(train_step=train_step)

    return compile_with_a_signal


def test_a_new_task_kind_is_one_module_and_its_registration(tmp_path, uncased_vocab):
    import toy_task  # registers "toy_first_word" on import

    # configs/finetune.py accepts any registered name.
    config = config_lib.load("configs/finetune.py:toy_first_word,tiny", {
        "data.vocab": str(uncased_vocab), "train.batch_size": 16, "train.eval_batch_size": 16, "train.progress": "log",
        "model.num_layers": 1})
    assert config.train.epochs == toy_task.TASK.epochs and config.data.max_seq_length == 16
    results = finetune.train_and_evaluate(config, str(tmp_path))
    assert results["task"] == "toy_first_word" and results["metrics"] == ["accuracy"]
    assert [e["epoch"] for e in results["epochs"]] == [1, 2, 3, 4]
    # The first word decides the label: the tiny model learns it (64 dev sentences, chance is ~0.5).
    assert results["best"]["accuracy"] >= 0.9
    params = _final_params(str(tmp_path))
    assert {"task_specific/logit/kernel", "task_specific/logit/bias"} <= set(params)


def test_empty_dev_set_fails_before_training(tmp_path, shared_dir, uncased_vocab):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text((shared_dir / "data" / "glue" / "RTE" / "train.tsv").read_text())
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    config = config_lib.load("configs/finetune.py:rte,tiny",
                             _rte_overrides(shared_dir, uncased_vocab, **{"data.dir": str(tmp_path / "RTE")}))
    with pytest.raises(finetune.DataFormatError, match=r"the rte dev set in .*RTE has no examples"):
        finetune.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_a_missing_vocabulary_is_named_as_the_flag_given(tmp_path, shared_dir, uncased_vocab):
    missing = tmp_path / "novocab.txt"
    config = config_lib.load("configs/finetune.py:rte,tiny",
                             _rte_overrides(shared_dir, uncased_vocab, **{"data.vocab": str(missing)}))
    with pytest.raises(FileNotFoundError, match=rf"^--config\.data\.vocab={missing} does not exist$"):
        finetune.train_and_evaluate(config, str(tmp_path / "run"))


def test_sigterm_mid_epoch_resumes_exactly(tmp_path, shared_dir, uncased_vocab, monkeypatch):
    """A real SIGTERM after step 4 of 12 (mid epoch 1): the rerun ends with the uninterrupted run's parameters."""
    overrides = _rte_overrides(shared_dir, uncased_vocab)
    uninterrupted = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides),
                                                str(tmp_path / "straight"))

    from electra_jax import train_state

    monkeypatch.setattr(train_state.Trainer, "compile", _preempt_after(4))  # the handler only sets a flag
    workdir = str(tmp_path / "resumed")
    stopped = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), workdir)
    assert stopped["preempted"] and not os.path.exists(os.path.join(workdir, "results.json"))
    assert checkpoints.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps() == [4]
    monkeypatch.undo()
    resumed = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), workdir)
    for a, b in zip(resumed["epochs"], uninterrupted["epochs"]):  # train_seconds differ, nothing else
        assert (a["epoch"], a["dev"]) == (b["epoch"], b["dev"])
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    want, got = _final_params(str(tmp_path / "straight")), _final_params(workdir)
    assert set(want) == set(got)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_a_workdir_of_another_run_is_refused_not_resumed(tmp_path, shared_dir, uncased_vocab):
    """A finished RTE run's workdir, rerun with another task, training cap or --init, stops with the field named
    before anything is read (it used to resume the RTE state and report its scores as MRPC's); a pre-training
    workdir given as --workdir is named as such; a changed epoch count resumes. The hand-written expectations are
    the fields the reruns change."""
    overrides = _rte_overrides(shared_dir, uncased_vocab, **{"train.epochs": 1})
    workdir = str(tmp_path / "rte")
    first = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), workdir)
    assert first["task"] == "rte"
    mrpc = dict(overrides, **{"data.dir": str(shared_dir / "data" / "glue" / "MRPC")})
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"task 'rte' -> 'mrpc'.*new --workdir"):
        finetune.train_and_evaluate(config_lib.load("configs/finetune.py:mrpc,tiny", mrpc), workdir)
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"train\.max_train_examples 48 -> 40"):
        finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny",
                                                    dict(overrides, **{"train.max_train_examples": 40})), workdir)
    init = os.path.join(workdir, "final")  # weights of this very model, so only the --init differs
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"fine-tuned from no --init \(from scratch\), not"):
        finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), workdir,
                                    init=str(init))
    again = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny",
                                                        dict(overrides, **{"train.epochs": 2})), workdir)
    assert [e["epoch"] for e in again["epochs"]] == [1, 2]  # resumed after epoch 1, one more epoch
    assert again["epochs"][0]["dev"] == first["epochs"][0]["dev"]

    pretrain_dir = tmp_path / "pretrain"  # a pre-training workdir: its checkpoints/ has no fine-tuning task
    saver = checkpoints.Checkpointer(str(pretrain_dir / "checkpoints"), async_save=False)
    saver.save(3, {"w": np.zeros(2, np.float32)}, data_states={}, config=config_lib.load("configs/pretrain.py:tiny"))
    saver.close()
    with pytest.raises(checkpoints.ResumeMismatchError, match=r"holds a pre-training checkpoint.*new --workdir"):
        finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), str(pretrain_dir))


def test_epoch_end_checkpoints_can_be_switched_off_and_sigterm_still_saves(tmp_path, shared_dir, uncased_vocab,
                                                                          monkeypatch):
    """Hand count, 2 epochs of 6 steps: by default a save at steps 6 and 12; with checkpoint.every_epoch off none,
    and a SIGTERM after step 4 still saves step 4, from which the rerun finishes without saving again."""
    from electra_jax import train_state

    saves, compile_steps = [], train_state.Trainer.compile
    save_checkpoint = checkpoints.Checkpointer.save

    def recording_save(self, step, *args, **kwargs):
        saves.append(step)
        return save_checkpoint(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoints.Checkpointer, "save", recording_save)
    overrides = _rte_overrides(shared_dir, uncased_vocab, **{"checkpoint.save_final": False})
    finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), str(tmp_path / "default"))
    assert saves == [6, 12]

    saves.clear()
    off = config_lib.load("configs/finetune.py:rte,tiny", {**overrides, "checkpoint.every_epoch": False})
    monkeypatch.setattr(train_state.Trainer, "compile", _preempt_after(4))
    workdir = str(tmp_path / "off_preempted")
    stopped = finetune.train_and_evaluate(off, workdir)
    assert stopped["preempted"] and saves == [4]
    monkeypatch.setattr(train_state.Trainer, "compile", compile_steps)
    resumed = finetune.train_and_evaluate(off, workdir)
    assert saves == [4] and [e["epoch"] for e in resumed["epochs"]] == [1, 2]  # no save at the epoch ends 6, 12


def test_a_diverging_seed_stops_before_its_epoch_is_saved_or_scored(tmp_path, shared_dir, uncased_vocab, monkeypatch):
    """A real divergence (learning rate 1e30): the error names the first step whose loss, or whose updated parameters,
    are not finite (as the steps themselves returned them), nothing of that epoch is checkpointed or scored, and the
    advice names the fix."""
    from electra_jax import train_state

    compile_steps, returned = train_state.Trainer.compile, []

    def compile_and_record(self, *args, **kwargs):
        compiled = compile_steps(self, *args, **kwargs)

        def train_step(state, batch, rng):
            state, metrics = compiled.train_step(state, batch, rng)
            returned.append((float(metrics["loss"]), float(metrics["params_finite"])))
            return state, metrics

        return compiled._replace(train_step=train_step)

    monkeypatch.setattr(train_state.Trainer, "compile", compile_and_record)
    # log_every beyond the run: the epoch's end finds it, so the step is read back from the epoch's losses.
    overrides = _rte_overrides(shared_dir, uncased_vocab, **{"optim.learning_rate": 1e30, "train.log_every": 1000})
    workdir = tmp_path / "run"
    with pytest.raises(finetune.NonFiniteLossError) as error:
        finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), str(workdir))
    first_bad = next(i for i, (loss, finite) in enumerate(returned) if not np.isfinite(loss) or not finite)
    assert len(returned) == 6  # the whole first epoch (48 examples / 8), then the check
    message = str(error.value)
    loss, _ = returned[first_bad]
    if np.isfinite(loss):  # the update overflowed before any loss did
        assert f"the update of step {first_bad + 1} made the parameters non-finite (loss {loss})" in message
    else:
        assert f"the training loss is {loss} at step {first_bad + 1} (epoch 1 of 2)" in message
    assert "seed 0" in message
    assert "no checkpoint of this seed was saved" in message and "--config.optim.learning_rate=1e+29" in message
    assert checkpoints.Checkpointer(str(workdir / "checkpoints")).all_steps() == []
    assert not (workdir / "results.json").exists()
    dev_lines = [line for path in workdir.rglob("metrics.jsonl") for line in path.read_text().splitlines()
                 if '"dev"' in line]
    assert dev_lines == []  # the diverged epoch was not scored


def _seed_params(workdir, seed):
    params, _ = checkpoints.restore_params(os.path.join(workdir, f"final_seed_{seed}"))
    return {"/".join(path): leaf for path, leaf in _flatten(params)}


def test_vmapped_seeds_equal_seeds_one_at_a_time_and_resume_exactly(tmp_path, shared_dir, uncased_vocab, monkeypatch):
    """train.vmap_seeds: two seeds in one stacked state and one vmapped step end where the two seeds trained one
    after another end (parameters to 1e-5, every epoch's dev metrics and train loss); each seed keeps its own run
    folder and metrics; a SIGTERM after step 3 of 8 saves the stacked state once, and the rerun ends bit for bit
    where the uninterrupted vmapped run did."""
    from electra_jax import train_state

    overrides = _rte_overrides(shared_dir, uncased_vocab, **{"train.seeds": "0,1", "train.max_train_examples": 32})
    apart = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides),
                                        str(tmp_path / "apart"))
    vmapped = {**overrides, "train.vmap_seeds": True}
    together = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", vmapped),
                                           str(tmp_path / "together"))
    assert [s["seed"] for s in together["seeds"]] == [0, 1] and together["best"] == apart["best"]
    for a, b in zip(apart["seeds"], together["seeds"], strict=True):
        assert [e["dev"] for e in a["epochs"]] == [e["dev"] for e in b["epochs"]]
        assert [e["train_loss"] for e in b["epochs"]] == pytest.approx([e["train_loss"] for e in a["epochs"]],
                                                                       rel=1e-5)
    for seed in (0, 1):
        want, got = _seed_params(str(tmp_path / "apart"), seed), _seed_params(str(tmp_path / "together"), seed)
        assert set(want) == set(got)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=f"seed {seed}: {name}")
        dev_lines = [json.loads(line) for line in (tmp_path / "together" / f"seed_{seed}" / "metrics.jsonl").open()
                     if '"dev"' in line]
        assert len(dev_lines) == 2  # one per epoch, in the seed's own folder
    # The seeds differ (their own initialization, data order and dropout): not one run copied twice.
    assert together["seeds"][0]["epochs"][0]["train_loss"] != together["seeds"][1]["epochs"][0]["train_loss"]
    group = tmp_path / "together" / "seeds_0_1" / "checkpoints"
    assert checkpoints.Checkpointer(str(group)).all_steps() == [8]  # epoch ends 4 and 8, keep 1
    assert not (tmp_path / "together" / "seed_0" / "checkpoints").exists()

    monkeypatch.setattr(train_state.Trainer, "compile", _preempt_after(3))
    workdir = tmp_path / "resumed"
    stopped = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", vmapped), str(workdir))
    assert stopped["preempted"] and stopped["seeds"] == [0, 1] and not (workdir / "results.json").exists()
    assert checkpoints.Checkpointer(str(workdir / "seeds_0_1" / "checkpoints")).all_steps() == [3]
    monkeypatch.undo()
    resumed = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", vmapped), str(workdir))
    for a, b in zip(resumed["seeds"], together["seeds"], strict=True):  # train_seconds differ, nothing else
        assert [(e["epoch"], e["dev"]) for e in a["epochs"]] == [(e["epoch"], e["dev"]) for e in b["epochs"]]
        assert [e["train_loss"] for e in a["epochs"]] == pytest.approx([e["train_loss"] for e in b["epochs"]],
                                                                       rel=1e-6)
    for seed in (0, 1):
        want, got = _seed_params(str(tmp_path / "together"), seed), _seed_params(str(workdir), seed)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"seed {seed}: {name}")


def test_a_diverging_seed_among_vmapped_ones_is_named(tmp_path, shared_dir, uncased_vocab, monkeypatch):
    """Vmapped seeds 0 and 1 where only seed 1's loss breaks at step 3: the error names seed 1 and step 3, and
    nothing of the epoch is saved or scored."""
    import jax.numpy as jnp

    from electra_jax import train_state

    compile_steps = train_state.Trainer.compile

    def compile_and_poison(self, *args, **kwargs):
        compiled = compile_steps(self, *args, **kwargs)
        calls = []

        def train_step(state, batch, rng):
            state, metrics = compiled.train_step(state, batch, rng)
            calls.append(1)
            if len(calls) == 3:
                metrics = {**metrics, "loss": metrics["loss"].at[1].set(jnp.nan)}
            return state, metrics

        return compiled._replace(train_step=train_step)

    monkeypatch.setattr(train_state.Trainer, "compile", compile_and_poison)
    overrides = _rte_overrides(shared_dir, uncased_vocab, **{"train.seeds": "0,1", "train.vmap_seeds": True,
                                                             "train.log_every": 1000})
    workdir = tmp_path / "run"
    with pytest.raises(finetune.NonFiniteLossError) as error:
        finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), str(workdir))
    message = str(error.value)
    assert message.startswith("seed 1: the training loss is nan at step 3 (epoch 1 of 2)"), message
    assert "no checkpoint of these seeds was saved" in message
    assert checkpoints.Checkpointer(str(workdir / "seeds_0_1" / "checkpoints")).all_steps() == []
    assert not [line for path in workdir.rglob("metrics.jsonl") for line in path.read_text().splitlines()
                if '"dev"' in line]


WORKER = textwrap.dedent(r"""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    from electra_jax import config as config_lib, finetune
    assert jax.device_count() == 8, jax.devices()
    overrides, workdir = json.loads(sys.argv[1]), sys.argv[2]
    results = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides), workdir)
    print("RESULT " + json.dumps(results))
""")


@pytest.mark.slow
def test_eight_devices_equal_one_and_resume_after_sigterm(tmp_path, shared_dir, uncased_vocab):
    """Data-parallel over 8 CPU devices (with a SIGTERM mid-run and a rerun) equals one device to 1e-5."""
    overrides = _rte_overrides(shared_dir, uncased_vocab)
    one = finetune.train_and_evaluate(config_lib.load("configs/finetune.py:rte,tiny", overrides),
                                      str(tmp_path / "one"))
    assert jax.device_count() == 1
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    workdir = str(tmp_path / "eight")
    args = [sys.executable, "-c", WORKER, json.dumps(overrides), workdir]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    while proc.poll() is None:  # stop it once step 5 is logged
        if os.path.exists(metrics) and any(json.loads(line).get("step", 0) >= 5 for line in open(metrics)):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)  # poll, do not spin a core the worker needs
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    assert '"preempted": true' in output, output[-3000:]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    eight = json.loads(done.stdout.split("RESULT ", 1)[1])
    want, got = _final_params(str(tmp_path / "one")), _final_params(workdir)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    for a, b in zip(one["epochs"], eight["epochs"]):
        assert a["dev"] == pytest.approx(b["dev"], abs=1e-6)
