"""Training: learning on class-distinct data, reproducibility, augmentation, CLI, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neonsign import artifacts  # noqa: E402
from neonsign._trainer import _shard, augment_batch, resolve_precision  # noqa: E402
from neonsign.errors import ModelError, NeonsignValueError  # noqa: E402
from neonsign.train import TrainConfig, fit  # noqa: E402

QUICK = dict(epochs=3, batch_size=32, lr=3e-3, threads=1)


def _templates(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of one random 32x32 template per class: learnable, far from trivial."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(43, 8, 8, 3)).repeat(4, axis=1).repeat(4, axis=2)
    labels = np.repeat(np.arange(43), n_per_class)
    noise = rng.normal(0, 40, size=(labels.size, 32, 32, 3))
    images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(labels.size)
    return idx[idx % 4 != 0], idx[idx % 4 == 0]


def test_fit_learns_far_above_chance():
    images, labels = _templates(12)
    tr, va = _split(labels)
    res = fit(images, labels, tr, va, TrainConfig(**QUICK), progress=False)
    assert res.val_accuracy > 0.5  # chance is 1/43
    assert len(res.history) == 3 and 1 <= res.best_epoch <= 3
    assert res.val_accuracy == max(h["val_accuracy"] for h in res.history)
    assert len(res.per_class_accuracy) == 43


def test_same_seed_same_threads_gives_identical_weights():
    images, labels = _templates(4)
    tr, va = _split(labels)
    cfg = TrainConfig(**{**QUICK, "epochs": 2})
    a = fit(images, labels, tr, va, cfg, progress=False).state_dict
    b = fit(images, labels, tr, va, cfg, progress=False).state_dict
    c = fit(
        images, labels, tr, va, TrainConfig(**{**QUICK, "epochs": 2, "seed": 1}), progress=False
    ).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("bf16", [False, True])
def test_both_precisions_learn_and_are_reproducible(bf16):
    # bf16 autocast runs on any CPU (emulated without native support); it must still learn and
    # give bit-identical weights for the same seed and thread count
    images, labels = _templates(12)
    tr, va = _split(labels)
    cfg = TrainConfig(**{**QUICK, "bf16": bf16})
    a = fit(images, labels, tr, va, cfg, progress=False)
    b = fit(images, labels, tr, va, cfg, progress=False)
    assert a.precision == ("bfloat16" if bf16 else "float32")
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert all(v.dtype == torch.float32 for v in a.state_dict.values())
    assert a.val_accuracy > 0.5  # chance is 1/43


def test_precision_auto_is_measured_and_cached(tmp_path, monkeypatch):
    """Auto precision (issue 18): float32 without native bf16; with it, a side-by-side timing
    of real training steps decides, is cached per CPU/threads/batch, and the next run reads
    the cache instead of measuring; forcing still wins."""
    from neonsign import _precision

    monkeypatch.setenv("NEONSIGN_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_precision(True) == "bfloat16" and resolve_precision(False) == "float32"
    monkeypatch.setattr(_precision, "bf16_supported", lambda: False)
    assert _precision.choose_precision(None, 64, 1).precision == "float32"
    assert not (tmp_path / "cache").exists()  # nothing to measure without native bf16

    monkeypatch.setattr(_precision, "bf16_supported", lambda: True)
    cases = [(10.0, 5.0, "bfloat16"), (10.0, 9.5, "float32"), (5.0, 10.0, "float32")]
    for batch, (f32, b16, expected) in zip((31, 32, 33), cases, strict=True):  # a key each
        monkeypatch.setattr(
            _precision, "_time_steps", lambda b, t=(f32, b16): {"float32": t[0], "bfloat16": t[1]}
        )
        choice = _precision.choose_precision(None, batch, 1)
        assert choice.precision == expected and choice.step_ms == {"float32": f32, "bfloat16": b16}
        assert "measured" in choice.reason
    cached = json.loads(_precision.cache_path().read_text())
    assert len(cached) == 3 and {c["precision"] for c in cached.values()} == {"bfloat16", "float32"}

    def no_measuring(batch_size):
        raise AssertionError("measured again although cached")

    monkeypatch.setattr(_precision, "_time_steps", no_measuring)
    assert _precision.choose_precision(None, 31, 1).precision == "bfloat16"  # from cache
    assert _precision.choose_precision(None, 32, 1).precision == "float32"
    assert _precision.choose_precision(False, 31, 1).precision == "float32"  # forced wins
    with pytest.raises(NeonsignValueError, match="bf16"):
        TrainConfig(bf16="yes").validate()  # type: ignore[arg-type]


def test_precision_measurement_times_real_steps(tmp_path, monkeypatch):
    """The real measurement runs both precisions' training steps and gives positive times."""
    from neonsign import _precision

    step_ms = _precision._time_steps(8)
    assert set(step_ms) == {"float32", "bfloat16"} and min(step_ms.values()) > 0


def test_exactly_one_warmup_step_trains():
    # 5 steps at warmup_fraction 0.2 made OneCycleLR divide by zero before the nudge
    images, labels = _templates(4)
    res = fit(
        images,
        labels,
        np.arange(160),
        np.empty(0, np.int64),
        TrainConfig(epochs=1, batch_size=32, threads=1, warmup_fraction=0.2),
        progress=False,
    )
    assert res.best_epoch == 1 and np.isfinite(res.history[0]["train_loss"])


def test_no_validation_keeps_last_epoch():
    images, labels = _templates(2)
    res = fit(
        images,
        labels,
        np.arange(labels.size),
        np.empty(0, np.int64),
        TrainConfig(**{**QUICK, "epochs": 2}),
        progress=False,
    )
    assert res.best_epoch == 2 and res.val_accuracy is None


def test_augment_identity_and_determinism():
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    none = TrainConfig(rotation=0.0, scale=(1.0, 1.0), translate=0.0, brightness=0.0, contrast=0.0)
    torch.testing.assert_close(
        augment_batch(x.clone(), torch.Generator().manual_seed(1), none), x, atol=1e-5, rtol=0
    )
    cfg = TrainConfig()
    a = augment_batch(x.clone(), torch.Generator().manual_seed(2), cfg)
    b = augment_batch(x.clone(), torch.Generator().manual_seed(2), cfg)
    assert torch.equal(a, b) and not torch.allclose(a, x)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("n, world", [(10, 1), (10, 2), (11, 2), (7, 3)])
def test_shards_cover_every_index_equally(n, world):
    perm = torch.randperm(n)
    shards = [_shard(perm, r, world) for r in range(world)]
    assert len({s.numel() for s in shards}) == 1
    assert set(torch.cat(shards).tolist()) == set(range(n))


def test_bad_inputs_are_rejected():
    images, labels = _templates(1)
    tr, va = _split(labels)
    with pytest.raises(NeonsignValueError, match="images"):
        fit(images.astype(np.float32), labels, tr, va, progress=False)
    with pytest.raises(NeonsignValueError, match="labels"):
        fit(images, labels + 1, tr, va, progress=False)
    with pytest.raises(NeonsignValueError, match="train_idx"):
        fit(images, labels, np.array([0, 10_000]), va, progress=False)
    with pytest.raises(NeonsignValueError, match="epochs"):
        fit(images, labels, tr, va, TrainConfig(epochs=0), progress=False)
    with pytest.raises(NeonsignValueError, match="lr"):
        TrainConfig(lr=-1).validate()


def test_import_train_and_cli_do_not_import_torch():
    code = (
        "import sys, neonsign.cli, neonsign.train, neonsign.artifacts, neonsign.evaluate; "
        "neonsign.cli.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------
# End to end on files: needs the C loader and the synthetic data generator (synth_root fixture).


def _cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neonsign.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def test_train_cli_writes_model_and_refuses_existing_dir(synth, tmp_path):
    out = tmp_path / "model"
    r = _cli(
        "train",
        "--data",
        str(synth),
        "--out",
        str(out),
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--seed",
        "0",
        "--threads",
        "1",
        "--quiet",
        "--no-mlflow",
    )
    assert r.returncode == 0, r.stderr
    tensors, card = artifacts.load_model(out)
    assert card["epochs"] == 8 and card["seed"] == 0
    m = card["metrics"]
    assert m["validation"] == "by track" and m["n_train"] + m["n_val"] == 430
    # the session fixture is tiny (2 tracks per class, one of them held out): it learns its
    # training tracks and stays clearly above chance (1/43) on the unseen ones. The training
    # accuracy is measured in training mode (augmentation and the default dropout 0.3), so it
    # understates what the network learnt; the loss must still fall well below chance's ln(43).
    assert m["history"][-1]["train_accuracy"] > 0.25
    assert m["history"][-1]["train_loss"] < 0.75 * m["history"][0]["train_loss"]
    assert m["val_accuracy"] > 2.5 / 43
    assert card["preprocessing"]["roi"] == TrainConfig().roi
    assert card["training"]["precision"] == resolve_precision(None, 16, 1)
    assert card["training"]["bf16_option"] == "auto"
    choice = card["training"]["precision_choice"]
    assert choice["precision"] == card["training"]["precision"] and choice["reason"]
    assert len(card["data_checksum"]) == 64
    r = _cli("train", "--data", str(synth), "--out", str(out), "--epochs", "1", "--quiet")
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr


def test_train_api_is_reproducible(synth, tmp_path):
    from neonsign.train import train

    a = train(synth, tmp_path / "a", epochs=1, seed=3, threads=1, quiet=True)
    b = train(synth, tmp_path / "b", epochs=1, seed=3, threads=1, quiet=True)
    ta, _ = artifacts.load_model(a.model_dir)
    tb, _ = artifacts.load_model(b.model_dir)
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)
    with pytest.raises(ModelError):
        train(synth, a.model_dir, epochs=1, quiet=True)


@pytest.mark.slow
def test_torchrun_ddp_two_processes(synth, tmp_path):
    # torchrun as a module of this interpreter (a torchrun script on PATH may be another Python)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "neonsign.train",
        "--data",
        str(synth),
        "--out",
        str(tmp_path / "ddp"),
        "--epochs",
        "2",
        "--threads",
        "1",
        "--quiet",
        "--no-mlflow",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    _, card = artifacts.load_model(tmp_path / "ddp")
    assert card["training"]["world_size"] == 2
    assert len(card["metrics"]["history"]) == 2
    assert not (tmp_path / "ddp.tmp").exists()


# ---------------------------------------------------------------------------------------------
# The output directory is checked before any work; the error boundary


def _assert_boundary(info, neonsign_class, builtin_class, path):
    from neonsign.errors import NeonsignError

    assert isinstance(info.value, NeonsignError) and isinstance(info.value, neonsign_class)
    assert isinstance(info.value, builtin_class)
    assert str(path) in str(info.value)


def test_check_out_refuses_bad_destinations(tmp_path, monkeypatch):
    from neonsign.errors import NeonsignNotADirectoryError, NeonsignPermissionError
    from neonsign.train import ModelDirectoryExistsError, check_out

    assert check_out(tmp_path / "new" / "model") == tmp_path / "new" / "model"
    full = tmp_path / "full"
    (full / "x").mkdir(parents=True)
    with pytest.raises(ModelDirectoryExistsError) as info:
        check_out(full)
    _assert_boundary(info, ModelDirectoryExistsError, FileExistsError, full)
    assert isinstance(info.value, ModelError) and "refusing to overwrite" in str(info.value)
    assert check_out(full, overwrite=True) == full
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(NeonsignNotADirectoryError) as info:
        check_out(a_file / "model")
    _assert_boundary(info, NeonsignNotADirectoryError, NotADirectoryError, a_file)
    with pytest.raises(NeonsignNotADirectoryError) as info:
        check_out(a_file, overwrite=True)
    _assert_boundary(info, NeonsignNotADirectoryError, NotADirectoryError, a_file)
    # a read-only parent (chmod does not stop root, so the refusal is injected)
    monkeypatch.setattr("neonsign.train.os.access", lambda path, mode: False)
    with pytest.raises(NeonsignPermissionError) as info:
        check_out(tmp_path / "ro" / "model")
    _assert_boundary(info, NeonsignPermissionError, PermissionError, tmp_path / "ro" / "model")


def test_train_checks_out_before_loading_or_training(synth, tmp_path, monkeypatch):
    from neonsign import data
    from neonsign.train import ModelDirectoryExistsError, train

    def no_loading(*args, **kwargs):
        raise AssertionError("the split was loaded before --out was checked")

    monkeypatch.setattr(data, "load_split", no_loading)
    out = tmp_path / "model"
    (out / "old").mkdir(parents=True)
    with pytest.raises(ModelDirectoryExistsError) as info:
        train(synth, out, epochs=1, quiet=True)
    _assert_boundary(info, ModelDirectoryExistsError, FileExistsError, out)


def test_train_without_torch_is_a_missing_dependency(synth, tmp_path, monkeypatch):
    from neonsign.errors import MissingDependencyError
    from neonsign.train import train

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as info:
        train(synth, tmp_path / "model", epochs=1, quiet=True)
    assert isinstance(info.value, ImportError) and "neonsign[torch]" in str(info.value)
    assert not (tmp_path / "model").exists()


def test_train_on_a_data_set_with_one_image_missing(synth_root, tmp_path):
    import shutil

    from neonsign.errors import NeonsignFileNotFoundError
    from neonsign.train import train

    root = tmp_path / "gtsrb"
    shutil.copytree(synth_root, root)
    missing = sorted((root / "Final_Training" / "Images" / "00007").glob("*.ppm"))[1]
    missing.unlink()
    with pytest.raises(NeonsignFileNotFoundError) as info:
        train(root, tmp_path / "model", epochs=1, quiet=True)
    _assert_boundary(info, NeonsignFileNotFoundError, FileNotFoundError, missing)


def test_config_defaults_are_the_shared_preprocessing():
    cfg = TrainConfig()
    assert list(cfg.mean) == artifacts.DEFAULT_PREPROCESSING["mean"]
    assert list(cfg.std) == artifacts.DEFAULT_PREPROCESSING["std"]
    assert isinstance(cfg.mean, tuple)


def test_dropout_regularises_training_only():
    """``dropout`` masks the inputs of fc1 and fc2 in training mode only: the state_dict keys
    and shapes stay TrafficSignNet's, eval-mode outputs equal a plain TrafficSignNet's with the
    same weights, and a run with dropout still learns and is reproducible."""
    from neonsign._trainops import FusedTrafficSignNet
    from neonsign.model import TrafficSignNet

    torch.manual_seed(0)
    plain, dropped = TrafficSignNet(), FusedTrafficSignNet(dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    assert {k: v.shape for k, v in dropped.state_dict().items()} == artifacts.STATE_DICT_SHAPES
    for x in (
        torch.randn(8, 3, 32, 32),  # PyTorch's ops
        torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last),  # the C kernels
    ):
        with torch.no_grad():
            assert torch.equal(dropped.eval()(x), plain.eval()(x))
            dropped.train()
            plain.train()
            assert not torch.equal(dropped(x), plain(x))  # masks differ from the identity
    images, labels = _templates(12)
    tr, va = _split(labels)
    cfg = TrainConfig(**{**QUICK, "dropout": 0.3})
    a = fit(images, labels, tr, va, cfg, progress=False)
    b = fit(images, labels, tr, va, cfg, progress=False)
    assert a.val_accuracy > 0.5
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    with pytest.raises(NeonsignValueError, match="dropout"):
        TrainConfig(dropout=1.0).validate()


def test_measuring_precision_leaves_the_global_rng_alone():
    """A run that measures precision must initialise like a run that reads the cache."""
    from neonsign import _precision

    torch.manual_seed(5)
    _precision._time_steps(4)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))
