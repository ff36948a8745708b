PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: model-v2 evaluate-model-v2 refiner corrector corrector-update completer setup setup-ui setup-docs docs docs-build dist wheel-check words-check demo test test-slow test-numerics test-oldest fuzz lint bench bench-quick model decoder decoder-v2 evaluate-model clean gpu-check device-site device-train device-model-install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

## setup: virtual environment with the CPU build of torch, the package and its dev tools
setup: $(PY)
	$(PY) -m pip install "torch==2.13.*"
	$(PY) -m pip install -e ".[dev]"

## setup-ui: the `ui` extra (Gradio and its box editor) for `layoutedit serve` and its tests,
## installed the way the README says, with torch held at the CPU build `setup` installed.
## Gradio caps pillow<13, so this environment has Pillow 12 (the core asks only pillow>=10;
## `test-oldest` keeps testing the core on the newest Pillow); `pip check` proves the
## extra and the core agree. The browser tests also need Debian's chromium and
## chromium-driver (apt-get; .ci/run installs them).
setup-ui: $(PY)
	$(PY) -m pip install -e ".[ui]" "torch==2.13.*"
	$(PY) -m pip check
	$(PY) -c "import gradio, gradio_image_annotation, PIL; print('gradio', gradio.__version__, 'on Pillow', PIL.__version__)"

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

## demo: learn a generated world-v2 scene (an overlap, cast shadows, uneven light, a textured
## background) on the embedded v2 model and edit it to three layouts (an uncover, a relight, a
## move); the sheet shows cut-and-paste and the exact truth beside each edit.
## `layoutedit demo --out DIR` is the world-v1 demo (a move, a swap, a scale).
demo:
	$(BIN)/layoutedit demo --world v2 --out layoutedit-demo

## test: the test suite (CPU only) but the `slow` end-to-end tests, in TEST_WORKERS processes
## (pytest-xdist; each test runs torch on one thread, so 2 processes keep 2 cores busy:
## TEST_WORKERS=auto on a bigger box). test-slow: the slow ones (CI's second step).
TEST_WORKERS ?= 2
test:
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not slow"

test-slow:
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m slow

## test-numerics: the tests that compare floats from two code paths (batched and one by one,
## two loads, two backends, a checkpoint and a straight run), on PyTorch's plain C++ CPU
## kernels instead of the vectorised ones this CPU would pick: an assumption that holds only
## for one kernel (bit-equal results) fails here, not on someone else's machine.
NUMERICS_TESTS ?= tests/test_seed_batch.py tests/test_sdxl.py tests/test_decoder_finetune.py \
	tests/test_cpu_fast_backend.py tests/test_editing.py tests/test_inversion.py \
	tests/test_trained_rows.py tests/test_editor.py tests/test_learn.py
test-numerics:
	ATEN_CPU_CAPABILITY=default $(BIN)/pytest -q -n $(TEST_WORKERS) -m "not slow" $(NUMERICS_TESTS)

## test-oldest: the suite on the oldest diffusers, transformers and accelerate that
## pyproject.toml allows (torch stays at the pinned CPU build), in a second environment.
## Keep OLDEST_PINS equal to those lower bounds (tests/test_hardening_cli.py checks it).
OLDEST_VENV ?= .venv-oldest
OLDEST_PINS ?= "diffusers==0.35.2" "transformers==5.6.0" "accelerate==0.30.0"
test-oldest:
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install -q "torch==2.13.*"
	$(OLDEST_VENV)/bin/pip install -q -e ".[dev]" $(OLDEST_PINS)
	$(OLDEST_VENV)/bin/pytest -q -n $(TEST_WORKERS) -m "not slow"

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

## decoder-v2: the same for the v2 model on world v2 scenes, one thread (a bench can run beside it)
decoder-v2:
	$(PY) -m layoutedit.shapes.decoder_finetune --model layoutedit/models/shapes-tiny-v2 --world v2 --run-dir runs/decoder-v2 --threads 1 --workers 1 --steps 1200 --batch 32 --export layoutedit/models/shapes-tiny-v2 $(DECODER_ARGS)

## gpu-check: on a CUDA machine, in one report (5 minutes at most): SD 1.5- and SDXL-sized
## random models loaded as edit loads them (load peak, finite latents and images, xformers vs
## SDPA, fp16 guidance gradients vs fp32), the learn --low-memory -> edit -> learn round trip,
## a forced out-of-memory (one line, exit 2), the planner against measured peaks, the GPU
## tests and backend timings. `--device cpu --tiny` is its CPU self-test (tests/test_gpu_check.py).
gpu-check:
	$(PY) -m layoutedit.planning.gpu_check --out gpu-check-report.json

## model-v2: continue the embedded model on world v2 (resumable from runs/shapes-tiny-v2; the
## shipped builtin:shapes-tiny-v2 was made so to step 8000, then resumed to 14000 with
## --unet-steps 14000 --lr 4e-4 --unet-batch 32: TRAINING.json lists each leg)
model-v2:
	$(PY) -m layoutedit.shapes.train --run-dir runs/shapes-tiny-v2 --init-from layoutedit/models/shapes-tiny --world v2 --scenes 12000 --vae-continue-steps 600 --unet-steps 9400 --unet-batch 32 --lr 8e-4 --threads 1 --export layoutedit/models/shapes-tiny-v2 $(MODEL_ARGS)

## refiner: the v2 model's refiner (layoutedit/models/shapes-tiny-v2/refiner): training pairs
## made by the edit pipeline on world v2 scenes of the training range (about 2 min a shard of
## 800), then the widened UNet trained on them, one thread each; both resume from runs/.
refiner:
	$(PY) -m layoutedit.shapes.refiner_pairs --out runs/refiner-pairs --shards 10
	$(PY) -m layoutedit.shapes.refiner_train --pairs runs/refiner-pairs --run-dir runs/refiner --steps 4000 --batch 32 --lr 2e-4 --export layoutedit/models/shapes-tiny-v2 $(REFINER_ARGS)

## corrector: the v2 model's corrector (layoutedit/models/shapes-tiny-v2/corrector): pairs of
## the no-model row's finished images and the truths (made first when missing, about 25 min
## with two processes), then the net: 1250 steps on the log squared error, then 2500 with the
## texture loss, one thread, about an hour in all; every stage resumes from runs/.
corrector:
	$(PY) -m layoutedit.shapes.refiner_pairs --out runs/final-pairs --stage final --shards 10
	$(PY) -m layoutedit.shapes.corrector_train --pairs runs/final-pairs --run-dir runs/corrector --steps 5000 --stop-after 1250 --batch 32 --lr 1e-3
	$(PY) -m layoutedit.shapes.corrector_train --pairs runs/final-pairs --run-dir runs/corrector-texture --steps 2500 --batch 32 --lr 5e-4 --texture-weight 6 --init-from runs/corrector/corrector_ema.safetensors --export layoutedit/models/shapes-tiny-v2 $(CORRECTOR_ARGS)

## completer: the v2 model's completer (layoutedit/models/shapes-tiny-v2/completer): whole-shape
## samples of 32,000 world v2 scenes (16 shards of 2,000; about 1,760 samples a shard; two
## processes of one thread, `--shards 8` and `--shards 16 --first-shard 8`, take 9 minutes),
## then 4000 steps (batch 32, one thread: about 30 minutes); a rerun resumes.
completer:
	$(PY) -m layoutedit.shapes.completer_data --out runs/completer-data --shards 16
	$(PY) -m layoutedit.shapes.completer_train --samples runs/completer-data --run-dir runs/completer --steps 4000 --batch 32 --lr 2e-3 --export layoutedit/models/shapes-tiny-v2

## corrector-update: how the shipped corrector was last made: 8,000 pairs of the current start
## (the completer's whole shapes, `make completer` first) on new scenes (about 30 min with
## two processes: `--shards 25 --first-shard 20` and `--shards 30 --first-shard 25`), then
## 3000 steps from the shipped corrector (about 16 min of two threads); both resume from runs/.
corrector-update:
	$(PY) -m layoutedit.shapes.refiner_pairs --out runs/final-pairs-r13 --stage final --shards 30 --first-shard 20
	$(PY) -m layoutedit.shapes.corrector_train --pairs runs/final-pairs-r13 --run-dir runs/corrector-r13 --steps 3000 --batch 32 --lr 3e-4 --texture-weight 6 --hidden-weight 1 --threads 2 --init-from layoutedit/models/shapes-tiny-v2/corrector/corrector.safetensors --export layoutedit/models/shapes-tiny-v2 $(CORRECTOR_ARGS)

## evaluate-model-v2: the v2 model's gate on world v2 scenes (shadow side, background texture)
evaluate-model-v2:
	$(PY) -m layoutedit.shapes.evaluate --model layoutedit/models/shapes-tiny-v2 --world v2

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
