"""Run a benchmark script started as a file as the module it is.

`python benchmarks/run_all.py ARGS` becomes `python -m benchmarks.run_all ARGS` (the same process, through exec),
with the checkout first on PYTHONPATH: that is where `benchmarks` is, and where `ldeq` is imported from on a
machine where it is not installed (a bare GPU image). A script started as a file imports this module as `_launch`
(Python searches the script's own folder first); everything else imports it as `benchmarks._launch`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout_env(**extra: str) -> dict[str, str]:
    "This process's environment with the checkout first on PYTHONPATH (and `extra` set): for `python -m benchmarks.X`."
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def as_module(file: str) -> None:
    "Replace this process by `python -m benchmarks.<the file's stem>` with the same interpreter options and arguments."
    path = Path(file).resolve()
    flags = subprocess._args_from_interpreter_flags()           # -u, -X ..., -W ... of this interpreter
    os.execve(sys.executable, [sys.executable, *flags, '-m', f'{path.parent.name}.{path.stem}', *sys.argv[1:]],
              checkout_env())
