# GeoPlant for QGIS. `make demo` and `make test` set everything up on Debian 12.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
PLUGIN := geoplant_qgis
SYSTEM_PACKAGES := qgis python3-qgis qgis-providers pyqt5-dev-tools xvfb \
                   python3-numpy python3-gdal python3-rasterio python3-pandas python3-venv python3-pip
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
BUILD_DIR := build/plugin/$(PLUGIN)
# QGIS's own variable: a profile root holding profiles/<name>/
QGIS_PROFILE_ROOT ?= $(if $(QGIS_CUSTOM_CONFIG_PATH),$(QGIS_CUSTOM_CONFIG_PATH),$(HOME)/.local/share/QGIS/QGIS3)
QGIS_PROFILE ?= default
export QT_QPA_PLATFORM ?= offscreen

.PHONY: help setup system-packages venv resources build install uninstall package test \
        lint demo bench bench-mme train clean test-core

help:
	@echo "make setup     system packages (apt) + .venv with pinned requirements"
	@echo "make test      the whole test suite, headless"
	@echo "make demo      the demo: synthetic GeoPlant world -> model -> maps -> score"
	@echo "make install   install + enable the plugin in a QGIS profile ($(QGIS_PROFILE_ROOT))"
	@echo "make package   dist/$(PLUGIN)-$(VERSION).zip for 'Install from ZIP'"
	@echo "make test-core the core tests where qgis and PyQt5 cannot be imported (.venv-core)"
	@echo "make lint      ruff + mypy on geoplant_qgis/core"
	@echo "make bench     speed and memory benchmarks"
	@echo "make bench-mme the GeoPlant MME at full size on this CPU (bench/bench_mme.py)"
	@echo "make train     regenerate the demo world and retrain the bundled model (PyTorch)"

setup: system-packages venv resources

# Only calls apt when a package is missing, so a second run is instant.
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@[ -x $(PY) ] || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -c constraints.txt -r requirements-dev.txt
	$(PY) -c "import numpy, rasterio, onnxruntime, onnx; from osgeo import gdal_array; assert numpy.__version__ < '2', numpy.__version__"
	@touch $@

resources: $(PLUGIN)/resources_rc.py

$(PLUGIN)/resources_rc.py: resources.qrc $(wildcard $(PLUGIN)/icons/*)
	pyrcc5 -o $@ resources.qrc

# The plugin folder as QGIS sees it: the package + metadata.txt + compiled resources.
build: resources
	rm -rf $(BUILD_DIR)
	mkdir -p $(BUILD_DIR)
	tar -C $(PLUGIN) --exclude=__pycache__ --exclude='*.pyc' --exclude=_deps --exclude=./convert -cf - . | tar -C $(BUILD_DIR) -xf -
	cp metadata.txt LICENSE README.md $(BUILD_DIR)/

install: build venv
	$(PY) tools/install_plugin.py --build $(BUILD_DIR) --profile-root "$(QGIS_PROFILE_ROOT)" \
	  --profile $(QGIS_PROFILE) --requirements requirements.txt --constraints constraints.txt

uninstall:
	$(PY) tools/install_plugin.py --uninstall --profile-root "$(QGIS_PROFILE_ROOT)" --profile $(QGIS_PROFILE)

package: build
	mkdir -p dist
	rm -f dist/$(PLUGIN)-$(VERSION).zip
	cd build/plugin && $(SYSTEM_PYTHON) -m zipfile -c ../../dist/$(PLUGIN)-$(VERSION).zip $(PLUGIN)
	@echo "dist/$(PLUGIN)-$(VERSION).zip"

# The converter's tests (tests/test_convert.py) need PyTorch 2.13.0 CPU: ~45 s and ~0.9 GB once.
convert-deps: $(VENV)/.convert-installed
$(VENV)/.convert-installed: tools/requirements-convert.txt constraints.txt $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -r tools/requirements-convert.txt
	@touch $@

test: setup convert-deps
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy geoplant_qgis/core

# The core tests as on a machine without QGIS: .venv-core sees Debian's numpy, rasterio, pandas
# and GDAL (--system-site-packages) and pip's onnxruntime, onnx, pytest..., but not pytest-qgis,
# and .ci/block_qgis.py (loaded by a .pth) makes importing qgis, PyQt5 or sip fail.
CORE_VENV := .venv-core
test-core: system-packages $(CORE_VENV)/.installed
	@! $(CORE_VENV)/bin/python -c "import qgis" 2>/dev/null || { echo "qgis is importable in $(CORE_VENV)"; exit 1; }
	@! $(CORE_VENV)/bin/python -c "import PyQt5" 2>/dev/null || { echo "PyQt5 is importable in $(CORE_VENV)"; exit 1; }
	$(CORE_VENV)/bin/python -m pytest -m core

$(CORE_VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt .ci/block_qgis.py
	@[ -x $(CORE_VENV)/bin/python ] || $(SYSTEM_PYTHON) -m venv --system-site-packages $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt -r requirements.txt \
	  $$(grep -vE '^(-r|#|pytest-qgis|ruff|mypy)' requirements-dev.txt)
	site=$$($(CORE_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  cp .ci/block_qgis.py "$$site/block_qgis.py" && echo "import block_qgis" > "$$site/block_qgis.pth"
	@touch $@

demo: setup
	$(PY) tools/demo.py --output demo_output

bench: setup
	$(PY) bench/run.py

# GeoPlant's multimodal ensemble at full size (11,255 species; needs PyTorch for the one-time
# export): bench/bench_mme.py, numbers in bench/README.md
bench-mme: setup
	$(PY) bench/bench_mme.py

# Retrains geoplant_qgis/models/geoplant_demo.onnx (seeded, reproducible). PyTorch is a tool
# dependency only: the plugin never imports it.
TRAIN_WORLD := build/demo_world
train: setup
	$(PY) -m pip install -q -c constraints.txt -r tools/requirements-train.txt
	$(PY) tools/make_world.py $(TRAIN_WORLD)
	$(PY) tools/train_model.py $(TRAIN_WORLD)

clean:
	rm -rf build dist demo_output .pytest_cache .mypy_cache $(PLUGIN)/resources_rc.py
