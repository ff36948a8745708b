PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: setup setup-ui setup-docs docs docs-build dist wheel-check words-check demo test test-oldest fuzz lint bench bench-quick model decoder evaluate-model clean gpu-check device-site device-train device-model-install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

## setup: virtual environment with the CPU build of torch, the package and its dev tools
setup: $(PY)
	$(PY) -m pip install "torch==2.13.*"
	$(PY) -m pip install -e ".[dev]"

## setup-ui: the `ui` extra (Gradio) for `layoutedit serve` and its tests, next to Pillow 13.
## gradio 6.31 caps pillow<13 in its metadata, so `pip install ".[ui]"` would move the whole
## environment back to Pillow 12. It runs on Pillow 13 (it uses only Image.open/new/fromarray/
## alpha_composite/init/registered_extensions, ImageOps.exif_transpose/fit, ImageSequence,
## PngInfo; none is among Pillow 13's removals, and the serve tests pass), so gradio and the
## gradio_client it pins go in without dependencies and the rest of its requirements
## (gradio's own list, Pillow left out) with theirs. Keep the pins and the list together.
UI_NO_DEPS ?= "gradio==6.31.0" "gradio-client==2.7.2"
UI_DEPS ?= "anyio>=3.0,<5.0" "brotli>=1.2.1" "fastapi>=0.115.2,<1.0" "groovy~=0.1" \
	"hf-gradio>=0.4.1,<1.0" "httpx>=0.24.1,<1.0" "huggingface-hub>=1.16.0,<3.0" "jinja2<4.0" \
	"markupsafe>=2.0,<4.0" "numpy>=1.0,<3.0" "orjson~=3.0" packaging "pandas>=1.0,<4.0" \
	"pydantic>=2.0,<=3.0" "pydub<1.0" "python-multipart>=0.0.18,<1.0" "pytz>=2017.2" \
	"pyyaml>=5.0,<7.0" "safehttpx>=0.1.7,<0.2.0" "semantic-version~=2.0" \
	"starlette>=1.0.1,<2.0" "tomlkit>=0.12.0,<0.15.0" "typer>=0.12,<1.0" \
	"typing-extensions~=4.0" "uvicorn>=0.14.0" fsspec
setup-ui: $(PY)
	$(PY) -m pip install $(UI_DEPS)
	$(PY) -m pip install --no-deps $(UI_NO_DEPS)
	$(PY) -c "import gradio, gradio_client, PIL; print('gradio', gradio.__version__, 'on Pillow', PIL.__version__)"

## setup-docs: the `docs` and `release` extras (MkDocs, Material, mkdocstrings; build, twine)
setup-docs: $(PY)
	$(PY) -m pip install -e ".[docs,release]"

## docs: serve the documentation site on http://127.0.0.1:8000, rebuilt on every save
docs:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

## docs-build: build the site into site/; --strict fails on a broken link, anchor or reference
docs-build:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## dist: the wheel (with the embedded model) and the sdist, into dist/
dist:
	rm -rf dist
	$(PY) -m build --outdir dist .

## wheel-check: twine check, then the wheel alone in a new venv runs a fast demo
wheel-check:
	.ci/wheel-check

## words-check: no words about how or by whom the project was built in tracked text files
words-check:
	.ci/words-check

## demo: learn a generated 3-object scene on the embedded model and edit it to three layouts
demo:
	$(BIN)/layoutedit demo --out layoutedit-demo

## test: the whole test suite (CPU only, a few minutes)
test:
	$(BIN)/pytest -q

## test-oldest: the suite on the oldest diffusers, transformers and accelerate that
## pyproject.toml allows (torch stays at the pinned CPU build), in a second environment.
## Keep OLDEST_PINS equal to those lower bounds (tests/test_hardening_cli.py checks it).
OLDEST_VENV ?= .venv-oldest
OLDEST_PINS ?= "diffusers==0.35.2" "transformers==5.6.0" "accelerate==0.30.0"
test-oldest:
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install -q "torch==2.13.*"
	$(OLDEST_VENV)/bin/pip install -q -e ".[dev]" $(OLDEST_PINS)
	$(OLDEST_VENV)/bin/pytest -q

## fuzz: the fuzzing suite with many more examples (`make test` runs it briefly)
fuzz:
	LAYOUTEDIT_FUZZ=long $(BIN)/pytest -q tests/test_fuzz_scenes.py tests/test_fuzz_options.py --hypothesis-show-statistics

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench:
	$(BIN)/layoutedit bench --out bench-out

bench-quick:
	$(BIN)/layoutedit bench --quick --out bench-out

## model: retrain the embedded shapes-tiny model (hours on 2 cores; resumable from runs/).
## Continue the shipped model instead: make model MODEL_ARGS="--init-from layoutedit/models/shapes-tiny --unet-steps 8000"
MODEL_ARGS ?=
model:
	$(PY) -m layoutedit.shapes.train --run-dir runs/shapes-tiny --export layoutedit/models/shapes-tiny $(MODEL_ARGS)

## decoder: fine-tune the embedded model's VAE decoder alone (encoder frozen: the latent space,
## the UNet and every cached concept stay valid); about 25 minutes on 2 cores, resumable.
DECODER_ARGS ?=
decoder:
	$(PY) -m layoutedit.shapes.decoder_finetune --model layoutedit/models/shapes-tiny --run-dir runs/decoder --threads 2 --steps 2400 --batch 32 --export layoutedit/models/shapes-tiny $(DECODER_ARGS)

## gpu-check: on a CUDA machine, the GPU tests, backend timings and an SD 1.5-sized model's real
## memory and seconds per step against the planner, in one report (under 8 minutes)
gpu-check:
	$(PY) -m layoutedit.planning.gpu_check --out gpu-check-report.json

evaluate-model:
	$(PY) -m layoutedit.shapes.evaluate --model layoutedit/models/shapes-tiny

## device-site: zip the installed diffusers into .device-site/ (git-ignored) for a GPU call:
## the device image has PyTorch and transformers but not diffusers.
device-site:
	$(PY) -m layoutedit.shapes.device_train --site .device-site

## device-train: ON A LENT GPU, one call of the device tool (run it with carry [".device-site"]
## and timeout_s 570): continue the embedded model for DEVICE_MINUTES, gate it before and
## after, and pack model.tar.part-*, gate*.json, samples.png and train.log into $$OUT.
## Uses the device image's python3 (no venv there); needs only PyTorch, transformers, numpy.
DEVICE_MINUTES ?= 4.5
DEVICE_ARGS ?=
device-train:
	PYTHONPATH=.:.device-site/diffusers.zip PYTHONUNBUFFERED=1 python3 -m layoutedit.shapes.device_train --out "$$OUT" --minutes $(DEVICE_MINUTES) $(DEVICE_ARGS)

## device-model-install: here, after device-train: FROM= the folder its files came back in;
## replaces layoutedit/models/shapes-tiny (then make evaluate-model, bench and demo decide).
device-model-install:
	test -n "$(FROM)" || (echo "give FROM=<folder with model.tar.part-*>" >&2; exit 2)
	$(PY) -m layoutedit.shapes.device_train --unpack "$(FROM)"

clean:
	rm -rf layoutedit-demo bench-out site .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
