"""``export --dynamic``: dimensions beyond the batch, so a fully-convolutional net (a detector's
backbone) is exported once for any image size, by both exporters."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtcompress.cli.main import main
from trtcompress.errors import ConfigError
from trtcompress.torch_export import ExportConfig

pytestmark = pytest.mark.torch

FCN = '''
import torch

class FCN(torch.nn.Module):
    """Strided conv, conv, upsampling back to the input size: output size follows the input's."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        y = self.head(torch.relu(self.down(x)))
        return torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

def make():
    return FCN()
'''


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_fully_convolutional_net_at_two_image_sizes(tmp_path, capsys, exporter):
    import torch

    src = tmp_path / "fcn.py"
    src.write_text(FCN)
    out = tmp_path / f"fcn_{exporter}.onnx"
    code = main(["export", f"{src}:make", "-o", str(out), "--input", "x:1x3x32x48", "--dynamic", "x:0,2=height,3=width", "--exporter", exporter, "--json"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    result = json.loads(printed.out)
    assert result["exporter"] == exporter
    # the check against torch ran at the traced size and at twice the height and width
    assert result["check"]["random_resized"]["shapes"] == {"x": [1, 3, 64, 96]}
    assert result["check"]["random_resized"]["max_abs"] < 1e-4
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    ns: dict = {}
    exec(compile(FCN, str(src), "exec"), ns)
    net = ns["make"]().eval()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 40, 56), (1, 3, 96, 64)]:  # sizes never traced, one of them portrait
        x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
        (y,) = sess.run(None, {"x": x})
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        assert y.shape == (shape[0], 4, shape[2], shape[3])
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_dynamic_specs():
    cfg = ExportConfig(inputs=("x:1x3x32x32", "m:1x32x32"), dynamic=("x:2=h,3=w", "m:1=h,2=w"))
    assert cfg.dynamic_axes() == {"x": {0: "batch", 2: "h", 3: "w"}, "m": {0: "batch", 1: "h", 2: "w"}}
    assert ExportConfig(inputs=("x:1x3x8x8",), dynamic=("x:2,3",), dynamic_batch=False).dynamic_axes() == {"x": {2: "x_dim2", 3: "x_dim3"}}
    for bad, match in [("y:0", "not an input"), ("x:4", "axes 0..3"), ("x", "NAME:AXES"), ("x:2=1h", "dimension name")]:
        with pytest.raises(ConfigError, match=match):
            ExportConfig(inputs=("x:1x3x8x8",), dynamic=(bad,))
