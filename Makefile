# podtune: `make demo` runs the embedded default end to end on this machine's CPU; `make test` runs the tests.
# torch is installed first, pinned to the CPU wheel this kind of machine keeps on disk; the [train] extra never
# pins torch (on a pod the image's CUDA build must stay). constraints.txt holds the versions CI is known good with.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.podtune-installed

.PHONY: install sshd demo test bench bench-gpu bench-gpu-compare clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

# The tests start their own sshd on loopback ports with their own keys; they only need the binary.
sshd:
	@test -x /usr/sbin/sshd || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null)

demo: install
	$(BIN)/podtune run recipes/tiny-cpu.yaml --yes

# mypy first (seconds): a type error fails CI before the suite spends minutes.
test: install sshd
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install sshd
	@command -v rsync >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null)
	$(BIN)/python bench/run_all.py

# On a machine with a CUDA GPU: seed A and C shapes through podtune's trainer (no downloads; see the script).
bench-gpu: install
	$(BIN)/python bench/bench_gpu.py --out bench/results/gpu

# On a machine with a CUDA GPU: seed A's shape, podtune's trainer vs plain trl, Liger, eager attention and packing
# that is not padding-free, same seed and data (the variants and the verdict: see the script).
bench-gpu-compare: install
	$(BIN)/python bench/bench_gpu_compare.py --out bench/results/gpu-compare

clean:
	rm -rf $(VENV) *.egg-info
