"""Only the compiled calibration kernel; everything else is in pyproject.toml.

``optional``: without a C compiler the install still succeeds and calibration counts histograms
with numpy instead (same results, about 3x slower counting)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("trtcompress.quant._count", ["trtcompress/quant/_count.c"], optional=True, extra_compile_args=["-O3"])])
