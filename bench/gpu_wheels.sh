#!/usr/bin/env bash
# The Python packages the GPU machine's image lacks, as wheels for its Python 3.12 (x86-64), into .whl/
# (git-ignored). That machine reaches no package index: the device tool carries .whl/ there, where
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
# makes them importable beside the image's torch, transformers, peft and accelerate.
# Versions are constraints.txt's, the ones CI tests with; liger-kernel is only for bench_gpu_compare.py.
set -euo pipefail
cd "$(dirname "$0")/.."
pin() { grep -i "^$1==" constraints.txt || { echo "$1 is not in constraints.txt" >&2; exit 1; }; }
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  "$(pin trl)" "$(pin bitsandbytes)" "$(pin datasets)" "$(pin pydantic)" "$(pin pydantic_core)" \
  "$(pin dill)" "$(pin multiprocess)" "$(pin annotated-types)" "$(pin typing-inspection)" \
  "liger-kernel==0.8.5"
du -sh .whl
