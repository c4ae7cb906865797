"""``neonsign predict`` and ``.pth`` everywhere a model is taken (issue 13, parts 4 and 5).

predict's rows must equal Engine.classify on the same images and the server's /predict answer
for the same upload; a learning-path ``.pth`` must give the same results through ``test`` (native
and torch), ``serve``, ``predict``, ``gate``, ``registry register`` and ``convert`` as the model
directory converted from it.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from neonsign import images
from neonsign.artifacts import DEFAULT_PREPROCESSING, load_any, load_model
from neonsign.cli import main
from neonsign.engine import Engine
from neonsign.predict import find_images, predict_files
from serve_helpers import encode, make_model_dir, random_state_dict, sign_like_images


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("predict_model") / "m", seed=8)


@pytest.fixture(scope="module")
def pics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of PNG, JPEG and PPM pictures, one in a sub-folder, and a non-image file."""
    root = tmp_path_factory.mktemp("pics")
    (root / "sub").mkdir()
    imgs = sign_like_images(7, seed=21)
    for i, (img, fmt) in enumerate(zip(imgs, ["PNG", "JPEG", "PPM"] * 2, strict=False)):
        suffix = {"PNG": "png", "JPEG": "jpg", "PPM": "ppm"}[fmt]
        (root / f"{i}.{suffix}").write_bytes(encode(img, fmt))
    (root / "sub" / "deep.png").write_bytes(encode(imgs[6], "PNG"))
    (root / "notes.txt").write_text("not an image\n")
    return root


def test_find_images_files_folders_globs(pics: Path) -> None:
    flat = find_images([pics])
    assert [p.name for p in flat] == ["0.png", "1.jpg", "2.ppm", "3.png", "4.jpg", "5.ppm"]
    assert pics / "sub" / "deep.png" in find_images([pics], recursive=True)
    assert [p.name for p in find_images([f"{pics}/*.png"])] == ["0.png", "3.png"]
    assert [p.name for p in find_images([f"{pics}/**/*.png"], recursive=True)] == [
        "0.png",
        "3.png",
        "deep.png",
    ]
    assert find_images([pics / "0.png", pics / "0.png"]) == [pics / "0.png"]
    with pytest.raises(FileNotFoundError, match="nope"):
        find_images([pics / "nope"])
    with pytest.raises(FileNotFoundError, match="pattern"):
        find_images([f"{pics}/*.gif"])


def test_predict_files_equals_engine_classify(model_dir: Path, pics: Path) -> None:
    paths = find_images([pics], recursive=True)
    engine = Engine.from_file(model_dir)
    _, card = load_model(model_dir)
    rows = predict_files(engine, paths, card["preprocessing"], top_k=3)  # one batch
    x = np.stack([images.prepare(p.read_bytes(), card["preprocessing"]) for p in paths])
    classes, probs = engine.classify(x)
    assert [r.path for r in rows] == [str(p) for p in paths]
    assert [r.class_id for r in rows] == classes.tolist()
    assert np.array_equal(np.array([r.probability for r in rows], np.float32), probs)
    assert all(len(r.top) == 3 and r.top[0].class_id == r.class_id for r in rows)
    # batches of 3: the engine's blocking differs with the batch size (last bits only)
    small = predict_files(engine, paths, card["preprocessing"], batch=3, top_k=3)
    assert [r.class_id for r in small] == classes.tolist()
    np.testing.assert_allclose([r.probability for r in small], probs, rtol=1e-5)


def test_predict_row_equals_the_servers_answer(model_dir: Path, pics: Path) -> None:
    from neonsign.app.serving import Inference, LoadedModel

    png = pics / "0.png"
    inference = Inference(max_pixels=10**6, max_batch=4, threads=1)
    try:
        served = inference.run_batch([png.read_bytes()], LoadedModel.load(str(model_dir)))[0]
    finally:
        inference.close()
    (row,) = predict_files(Engine.from_file(model_dir), [png], DEFAULT_PREPROCESSING, top_k=5)
    assert row.class_id == served["predicted_class"] and row.label == served["label"]
    assert row.probability == served["probability"]
    assert [t.__dict__ for t in row.top] == served["top5"]


def test_predict_roi_equals_a_cropped_image(model_dir: Path, tmp_path: Path) -> None:
    img = sign_like_images(1, seed=30)[0]
    (tmp_path / "a.png").write_bytes(encode(img, "PNG"))
    (tmp_path / "crop.png").write_bytes(encode(np.ascontiguousarray(img[2:15, 3:18]), "PNG"))
    engine = Engine.from_file(model_dir)
    (roi,) = predict_files(engine, [tmp_path / "a.png"], DEFAULT_PREPROCESSING, (3, 2, 17, 14))
    (crop,) = predict_files(engine, [tmp_path / "crop.png"], DEFAULT_PREPROCESSING)
    assert roi.top == crop.top


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_formats_and_bad_files(
    model_dir: Path, pics: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(pics, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = _run(capsys, folder, "--model", model_dir, "--format", "json", "-q")
    assert code == 0 and "broken.png" in err
    rows = json.loads(out)
    assert len(rows) == 6 and {"path", "class_id", "label", "probability", "top_k"} <= set(rows[0])
    assert len(rows[0]["top_k"]) == 5

    code, out, _ = _run(
        capsys, folder / "0.png", "--model", model_dir, "--format", "csv", "--top-k", "2"
    )
    (line,) = list(csv.DictReader(io.StringIO(out)))
    assert line["class_id"] == str(rows[0]["class_id"]) and "top2_probability" in line

    code, out, _ = _run(capsys, folder / "0.png", "--model", model_dir)
    assert code == 0 and out.splitlines()[0].split()[:4] == [
        "path",
        "class",
        "label",
        "probability",
    ]

    target = tmp_path / "out.json"
    code, out, _ = _run(
        capsys, folder, "--model", model_dir, "--format", "json", "-o", target, "-q"
    )
    assert code == 0 and out == "" and json.loads(target.read_text()) == rows

    code, _, err = _run(capsys, folder, "--model", model_dir, "--strict", "-q")
    assert code == 2 and err.strip().splitlines()[-1].startswith("neonsign predict: error: ")
    assert "broken.png" in err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# .pth everywhere


@pytest.fixture(scope="module")
def pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learning-path .pth: torch.save of TrafficSignNet().state_dict()."""
    torch = pytest.importorskip("torch")
    from neonsign.model import TrafficSignNet

    net = TrafficSignNet()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in random_state_dict(12).items()})
    path = tmp_path_factory.mktemp("pth") / "traffic_sign_net.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def converted(pth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "model"
    assert main(["convert", str(pth), str(out)]) == 0
    return out


def test_load_any_pth_card(pth: Path) -> None:
    state, card = load_any(pth)
    assert card["source"] == "pth" and card["preprocessing"] == DEFAULT_PREPROCESSING
    assert set(state) == set(load_any(pth)[0])


def test_convert_both_ways(pth: Path, converted: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state, card = load_model(converted)
    assert card["source"] == "pth" and card["preprocessing"]["roi"] is False
    back = tmp_path / "back.pth"
    assert main(["convert", str(converted), str(back)]) == 0
    a, b = torch.load(pth, weights_only=True), torch.load(back, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["convert", str(converted), str(back)]) == 2  # exists: refused without --force
    assert main(["convert", str(converted), str(back), "--force"]) == 0


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_test_command_same_accuracy_for_pth_and_directory(
    pth: Path, converted: Path, synth_root: Path, backend: str, tmp_path: Path
) -> None:
    results = []
    for model in (pth, converted):
        out = tmp_path / f"{model.name}.json"
        args = ["test", "--model", str(model), "--data", str(synth_root), "--backend", backend]
        assert (
            main(
                [
                    *args,
                    "--no-profile",
                    "--quiet",
                    "--json",
                    str(out),
                    "--plot",
                    str(tmp_path / "c.png"),
                ]
            )
            == 0
        )
        results.append(json.loads(out.read_text()))
    assert results[0]["n_correct"] == results[1]["n_correct"]
    assert results[0]["confusion_matrix"] == results[1]["confusion_matrix"]


def test_serve_and_predict_take_a_pth(pth: Path, converted: Path, pics: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from neonsign.app.serving import create_app

    png = (pics / "0.png").read_bytes()
    answers = []
    for model in (pth, converted):
        with TestClient(create_app(str(model), threads=1)) as client:
            r = client.post("/predict", files={"file": ("a.png", png)})
            assert r.status_code == 200
            answers.append(r.json())
    assert answers[0]["top5"] == answers[1]["top5"]
    rows = [
        predict_files(
            Engine.from_state_dict(load_any(m)[0]),
            [pics / "0.png"],
            load_any(m)[1]["preprocessing"],
        )
        for m in (pth, converted)
    ]
    assert rows[0][0].top == rows[1][0].top
    assert [t.__dict__ for t in rows[0][0].top] == answers[0]["top5"]


def test_gate_takes_a_pth(pth: Path, converted: Path, synth_root: Path) -> None:
    from neonsign.app.gate import gate

    verdicts = [gate(m, synth_root, repeats=1, threads=1) for m in (pth, converted)]
    assert verdicts[0]["candidate"]["accuracy"] == verdicts[1]["candidate"]["accuracy"]
    parity = [c for c in verdicts[0]["checks"] if c["name"] == "probe_parity"][0]
    assert parity["passed"], parity


def test_registry_registers_a_pth(pth: Path, converted: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from neonsign.app.registry import Registry

    reg = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", name="pth-test")
    v = reg.register(pth)
    assert v.tags["source_dir"] == str(pth.resolve())
    assert v.tags["weights_sha256"] == load_model(converted)[1]["weights_sha256"]
    state, _ = load_model(reg.download(v.version, tmp_path / "dl"))
    assert all(np.array_equal(state[k], load_any(pth)[0][k]) for k in state)


def test_pth_without_torch_names_the_extra(pth: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from neonsign.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"neonsign\[torch\]"):
        load_any(pth)
