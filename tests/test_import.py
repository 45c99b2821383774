"""``import trtcompress`` must stay light: no torch, tensorrt, CUDA libraries or Ray."""
import subprocess
import sys


def test_import_pulls_in_no_heavy_dependency():
    code = (
        "import sys, trtcompress\n"
        "import trtcompress.cli.main, trtcompress.comparison, trtcompress.benchmark, trtcompress.job, trtcompress.torch_export\n"
        "import trtcompress.distributed.ray_calibrate\n"
        "trtcompress.cli.main.build_parser()\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorrt', 'pycuda', 'cuda', 'onnx_ir', 'sympy', 'ray')]\n"
        "print(','.join(sorted(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import trtcompress imported: {out}"


def test_public_api_resolves():
    import trtcompress

    for name in trtcompress.__all__:
        assert getattr(trtcompress, name) is not None


def test_missing_extra_names_the_install_command():
    from trtcompress._optional import require
    from trtcompress.errors import MissingDependencyError
    import pytest

    with pytest.raises(MissingDependencyError, match="pip install"):
        require("tensorrt_that_does_not_exist")
