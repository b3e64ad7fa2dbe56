# One entry point for set-up and tests. `make test` works on a fresh machine from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch==2.13.0 is the CPU build on local disk; it stays in every pip call so nothing pulls CUDA wheels.
PIP_INSTALL := $(BIN)/pip install -q -c constraints.txt torch==2.13.0

.PHONY: video-power docs-seed1 deq-options track-levers int8-accuracy env test export-check nbtest papermill-quick pytest slow bench train-speed track-speed gpu-check demo-models tables figures docs rwr-diagnostics clean

env: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP_INSTALL) -e ".[dev]"
	touch $@

export-check: env
	$(BIN)/python tools/check_export.py

nbtest: env
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

pytest: env
	$(BIN)/python -m pytest -q tests

# The papermill notebooks (tables, figures, train) are skipped by nbdev_test (front matter skip_exec) and run here
# in quick mode; the first run generates the synthetic test set into the cache (~/.cache/ldeq or $$LDEQ_CACHE).
PM := $(BIN)/papermill --no-progress-bar --log-level WARNING
# Quick mode evaluates 64 stills and 2 clips, too few to be the claims' data (Table 1's attribute subsets hold 12-21 images there), so
# its claims are reported, not checked; tests/test_claims.py checks the RwR claims on these clips and tests/test_demo_models.py
# Table 1 on the whole test set. The main job (`make tables`) checks them all.
papermill-quick: env
	mkdir -p out/ci
	OMP_NUM_THREADS=2 $(PM) nbs/tables.ipynb out/ci/tables.ipynb -p quick True -p claims report -p out_dir out/ci/tables -p progress False
	OMP_NUM_THREADS=2 $(PM) nbs/figures.ipynb out/ci/figures.ipynb -p quick True -p out_dir out/ci/figures -p progress False
	OMP_NUM_THREADS=2 $(PM) nbs/train.ipynb out/ci/train.ipynb -p recipe demo_ldeq -p max_steps 2 -p val_subset 8 -p batch_size 4 \
		-p out_dir out/ci/train -p progress False -p n_show 2

test: export-check nbtest papermill-quick pytest

# The paper's tables and figures on the embedded default (the README's main job).
tables: env
	$(BIN)/papermill nbs/tables.ipynb out/tables.ipynb -p subset hard -p out_dir out/tables
figures: env
	$(BIN)/papermill nbs/figures.ipynb out/figures.ipynb -p out_dir out/figures

# docs/results (tables as markdown) and docs/img/synthetic_*.png (figures) from the two notebooks on the embedded
# default, all of it: Table 3 on the 100 hard and 100 easy clips (subset full, clips 0), the figures reusing its runs
# (runs.npz: nothing tracked twice). About 35 minutes on a quiet 2-core machine. Claims are reported in summary.md (✓ / ✗),
# not enforced here, so that every table and figure is written either way; the main job (`make tables`) enforces them.
docs: env
	mkdir -p out/docs
	$(PM) nbs/tables.ipynb out/docs/tables.ipynb -p subset full -p clips 0 -p claims report -p out_dir out/docs/tables
	$(PM) nbs/figures.ipynb out/docs/figures.ipynb -p clips 0 -p out_dir out/docs/figures -p video_table out/docs/tables/table3_all_methods.csv
	cp out/docs/tables/*.md out/docs/figures/*.md docs/results/
	for f in out/docs/figures/*.png; do cp $$f docs/img/synthetic_$$(basename $$f); done

# The same on a fresh seed with the settings frozen on seed 0 (generator, 400-clip pool, ensemble, quarter cut, models):
# seed 1's pool scored and cut (~12 minutes), its 200 clips rendered (~10), then both notebooks (~35). docs/results/seed1/.
SEED1 := out/docs/seed1
docs-seed1: env
	$(BIN)/python data_scripts/make_synthetic.py --seed 1 --parts videos --out $(SEED1)/data
	$(PM) nbs/tables.ipynb $(SEED1)/tables.ipynb -p subset full -p video_root $(SEED1)/data/wflw_v -p claims report -p out_dir $(SEED1)/tables
	$(PM) nbs/figures.ipynb $(SEED1)/figures.ipynb -p video_root $(SEED1)/data/wflw_v -p out_dir $(SEED1)/figures \
		-p video_table $(SEED1)/tables/table3_all_methods.csv
	mkdir -p docs/results/seed1
	cp $(SEED1)/tables/*.md $(SEED1)/figures/*.md $(SEED1)/data/wflw_v_selection.json docs/results/seed1/
	for f in fig2_trajectory fig5_nme_vs_nmf nmf_split switches; do cp $(SEED1)/figures/$$f.png docs/img/seed1_$$f.png; done

# The power of the video benchmark (issue 28): RwR's hard-clip NMF change and its bootstrap interval as the hard set grows
# by blocks, each the paper's quarter cut of a further 400-clip pool of the seed (benchmarks/video_power.py), until the
# interval is within ±3 points (at most 12 blocks, 1,200 hard clips a seed). It resumes where it stopped (a block done is
# kept under $(POWER)/clips). ~18 min a block on a quiet 2-core AVX-512 machine: seed 0 took 7 blocks (700 hard clips), seed 1 6 (600), about 3 h 20 min in all.
POWER := benchmarks/results/video_power
video-power: env
	$(BIN)/python -m benchmarks.video_power --seed 0 --blocks 12 --stop-at-target --out $(POWER)
	$(BIN)/python -m benchmarks.video_power --seed 1 --blocks 12 --stop-at-target --out $(POWER) --reuse docs/results/seed1/wflw_v_selection.json
	cp $(POWER)/power.md docs/results/video_power.md; cp $(POWER)/power.png docs/img/video_power.png

# RwR diagnostics (issue 14) on the default hard clips: LDEQs trained 186 steps (data_scripts/diagnostics/), 6 epochs (the
# first demo, in the selection ensemble) and 30 epochs (the shipped demo),
# T changed at test time, fixed-point iteration as the converged solver; figures to docs/img/rwr_*.png (~10 min on 2 cores).
DIAG_OUT := out/docs/rwr_diagnostics
rwr-diagnostics: env
	$(BIN)/python -m benchmarks.rwr_diagnostics --models 186steps=data_scripts/diagnostics/ldeq_186steps.pt 6ep=ldeq/assets/ensemble/v1_ldeq.pt \
		30ep=ldeq/assets/demo_ldeq.pt --clips 8 --start 44 --frames 16 --power-iters 10 --fpi --out $(DIAG_OUT)
	cp $(DIAG_OUT)/diagnostics.png docs/img/rwr_diagnostics.png; cp $(DIAG_OUT)/clips.png docs/img/rwr_diagnostics_clips.png
	cp $(DIAG_OUT)/summary.md docs/results/rwr_diagnostics.md

slow: env
	$(BIN)/nbdev_test --n_workers 1 --flags slow
	$(BIN)/python -m pytest -q tests --runslow

bench: env
	$(BIN)/python -m benchmarks.run_all --out out/bench

# Training images/s per speed lever and the input pipeline (also a section of `make bench`); `--parts steps,data,sbs`
# adds the side-by-side accuracy runs (about 15 minutes on 2 cores).
# The training-side DEQ options side by side on the demo protocol (issue 29; ~30 min on 2 cores).
deq-options: env
	$(BIN)/python -m benchmarks.deq_options --out benchmarks/results

train-speed: env
	$(BIN)/python -m benchmarks.train_speed --out out/bench/train_speed

# Real-time tracking (issue 16): ~5 minutes on a quiet 2-core machine; results in out/bench/track_speed.
track-speed: env
	$(BIN)/python -m benchmarks.track_speed --out out/bench/track_speed

# Issue 27: the speed levers side by side, and their accuracy (~5 and ~10 minutes on a quiet 2-core machine)
track-levers: env
	$(BIN)/python -m benchmarks.track_speed --levers --out out/bench/track_speed

int8-accuracy: env
	$(BIN)/python -m benchmarks.int8_accuracy --out out/bench/int8_accuracy

# The GPU path in one command (<= 8 minutes on one GPU; README "On a GPU"): report.md and gpu_check.json in out/gpu_check.
gpu-check: env
	$(BIN)/python -m benchmarks.gpu_check --out out/gpu_check

# The three demo models under one protocol (DEMO_PROTOCOL in nbs/05_training/01_train), one after the other, each resumed from its
# runs/<recipe>/last.pt when there is one; then shipped into ldeq/assets (the final epoch, not the best validation one).
# Hours on 2 cores: run it in the background, `nohup make demo-models > runs/demo_models.log 2>&1 &`.
DEMO_RECIPES ?= demo_ldeq demo_shg demo_unet
demo-models: env
	for r in $(DEMO_RECIPES); do \
	  $(BIN)/ldeq-train --recipe $$r $$(test -f runs/$$r/last.pt && echo --resume) || exit 1; done
	$(BIN)/python tools/ship_demo_models.py --which last

clean:
	rm -rf $(VENV) _proc _docs
