# The README's two commands, each setting itself up on a fresh machine:
#   make reproduce   the offline main job (reproduce --preset cpu on $(DATA)), every stage but the tokens curve
#   make curve       after it: the distillation-tokens curve (reproduce again: finished stages are kept), then the
#                    tables, report and poster with it (the cpu preset's outside_budget: the 120-min budget is the
#                    main job's)
#   make test        the tests (what CI runs, through .ci/run)
# Both create $(VENV) (seeing the system's packages, so an installed torch — Colab, a GPU box — is used as it is),
# install torch the right way for the machine (tools/install_torch.sh), then the requirements and tinydistil.
PYTHON ?= python3
VENV ?= .venv
DATA ?= ../shared/data
PY := $(VENV)/bin/python

.PHONY: setup test reproduce curve
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml tools/install_torch.sh
	$(PYTHON) -m venv --system-site-packages $(VENV)
	sh tools/install_torch.sh $(PY)
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(PY) -m pip install -q -r requirements.txt
	PIP_DISABLE_PIP_VERSION_CHECK=1 $(PY) -m pip install -q -e . --no-deps
	touch $@

test: setup
	$(PY) -m pytest -q tests

reproduce: setup
	TINYDISTIL_DATA_DIR=$(DATA) $(PY) -m tinydistil reproduce --preset cpu --skip curve

curve: setup
	TINYDISTIL_DATA_DIR=$(DATA) $(PY) -m tinydistil reproduce --preset cpu
