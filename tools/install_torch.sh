#!/bin/sh
# Install torch into the Python given as $1, the right build for this machine, before the other requirements
# (a plain `pip install torch` pulls the multi-GB CUDA build on Linux, even on a machine without a GPU):
#   - torch already importable (Colab, a GPU box, a venv made with --system-site-packages): kept as it is;
#   - an NVIDIA GPU (nvidia-smi answers): the default build from PyPI (CUDA);
#   - otherwise: the CPU build from PyTorch's CPU wheel index (or a local wheel of it: pip's find-links).
set -eu
PY="${1:-python}"
if "$PY" -c "import torch" 2>/dev/null; then
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed: kept"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    exec "$PY" -m pip install -q torch
fi
exec "$PY" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" \
    --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" --timeout 20 --retries 1
