"""ldeq's benchmarks: scripts that measure (not tests). Run them from the repository root as modules,
`python -m benchmarks.run_all ...`; `python benchmarks/run_all.py ...` runs the same (see `_launch.py`).

Drivers: `run_all` (every section below, side by side) and `gpu_check` (the GPU path in one command). Their sections
are listed once, in `registry`; each section is one module: `bench_*` for run_all's, `gpu_*` for gpu_check's parts.
`common` holds what they share; `bench_context` / `gpu_context` the plan and context of each driver. Scripts of their
own: `bench_solvers` (also run_all's solvers section), `train_speed` (also its train section), `track_speed`,
`video_methods`, `rwr_diagnostics`. The table of scripts is in benchmarks/README.md.
"""
