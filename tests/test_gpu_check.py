"""benchmarks/gpu_check.py (issue 17) without a GPU: the CPU dry run (`--device cpu --quick`) of its parts, so that the
one prepared GPU command does not rot between the rare GPU loans; and its one-line message where CUDA is missing.

The fast tests run every part but `tables` in one run and `tables` alone in another (the tables notebook through
papermill, quick: about a minute); the `slow` variant (make slow) runs all of them in one run.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'benchmarks' / 'gpu_check.py'
FAST_PARTS = ('env', 'data', 'inference', 'train_step', 'train_run', 'video', 'interop')
ALL_PARTS = ('env', 'data', 'inference', 'train_step', 'train_run', 'video', 'tables', 'interop')


def run_check(out: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    "benchmarks/gpu_check.py, started as a file (it runs as `python -m benchmarks.gpu_check`), with `--out out` and `args`."
    return subprocess.run([sys.executable, str(SCRIPT), '--out', str(out), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def positive(x) -> bool:
    "A finite number > 0."
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def check_numbers(name: str, r: dict) -> None:
    "The key numbers of part `name`'s result are there and sensible."
    if name == 'env':
        assert r['torch'] == torch.__version__ and isinstance(r['cuda_available'], bool) and r['ldeq']
    elif name == 'data':
        assert Path(r['stills']['path']).is_dir() and Path(r['videos']['path']).is_dir()
    elif name == 'inference':
        assert r['f_evals'] == r['iters'] and len(r['rows']) == 4
        assert all(positive(x['images_per_s']) and positive(x['ms_per_image']) for x in r['rows'])
    elif name == 'train_step':
        assert {(x['backward'], x['precision']) for x in r['steps']} == {(b, p) for b in ('implicit', 'jfb') for p in ('fp32', 'bf16')}
        assert all(positive(x['images_per_s']) and math.isfinite(x['loss']) for x in r['steps'])
        assert r['memory'] and all(positive(x['saved_mib']) for x in r['memory'])
        assert r['checks']['implicit_saved_memory_flat'] is True
    elif name == 'train_run':
        assert r['saved_step'] == 3 and r['resumed']['global_step'] == r['total_steps'] == 4
        assert positive(r['first']['images_per_s']) and positive(r['last_pt_mib'])
        assert all(math.isfinite(h['train_loss']) for h in r['resumed']['history'])
        assert r['checks']['resumed_from_saved_step'] is True and r['checks']['stopped_at_max_steps'] is True
    elif name == 'video':
        assert len(r['rows']) == 4 and all(positive(x['fps']) and x['frames'] > 0 for x in r['rows'])
    elif name == 'tables':
        assert set(r['tables']) == {'table1', 'table2', 'table3'}
    elif name == 'interop':
        assert r['same_weights'] and r['diffs']['tf32_off']['landmarks'] <= 1e-4


def check_dry_run(out: Path, p: subprocess.CompletedProcess, parts: tuple[str, ...]) -> None:
    "Exit 0, both report files, every part ok with its checks met and its key numbers."
    assert (out / 'report.md').is_file() and (out / 'gpu_check.json').is_file(), p.stderr[-3000:]
    state = json.loads((out / 'gpu_check.json').read_text())
    assert tuple(state['parts']) == parts and state['finished'] and state['quick']
    for name, e in state['parts'].items():
        assert e['status'] == 'ok', f"{name}: {e.get('error')}\n{e.get('traceback') or e.get('log_tail')}"
        assert False not in e['result'].get('checks', {}).values(), (name, e['result']['checks'])
        check_numbers(name, e['result'])
    report = (out / 'report.md').read_text()
    assert all(f'## {name}:' in report for name in parts)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


def test_cpu_dry_run(tmp_path):
    "`--device cpu --quick` over every part but tables: the report is written and every part is ok."
    out = tmp_path / 'gpu_check'
    p = run_check(out, '--device', 'cpu', '--quick', '--parts', ','.join(FAST_PARTS), timeout=300)
    check_dry_run(out, p, FAST_PARTS)


def test_cpu_dry_run_tables_part(tmp_path):
    "The part the fast test above leaves out: the tables notebook through papermill in quick mode (the fast version of the next)."
    out = tmp_path / 'gpu_check'
    p = run_check(out, '--device', 'cpu', '--quick', '--parts', 'tables', timeout=600)
    check_dry_run(out, p, ('tables',))


@pytest.mark.slow
def test_cpu_dry_run_all_parts(tmp_path):
    "Every part, the tables notebook (papermill, quick) included."
    out = tmp_path / 'gpu_check'
    p = run_check(out, '--device', 'cpu', '--quick', timeout=1500)
    check_dry_run(out, p, ALL_PARTS)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available here')
def test_no_cuda_is_one_clear_line(tmp_path):
    "The default device (cuda) without CUDA: one line naming the problem and the dry run, exit 2, a report saying so."
    out = tmp_path / 'gpu_check'
    p = run_check(out, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in p.stderr, p.stderr
    assert lines[0].startswith('gpu_check: CUDA is not available (torch ') and '--device cpu --quick' in lines[0]
    state = json.loads((out / 'gpu_check.json').read_text())
    assert state['error'] == lines[0] and all(e['status'] == 'skipped' for e in state['parts'].values())
    assert lines[0] in (out / 'report.md').read_text()


def test_bad_arguments_name_the_option(capsys):
    "A wrong part, limit or device is an argparse error naming the option (in this process: no subprocess needed)."
    from benchmarks import gpu_check                        # the repository root is on the path (conftest.py, python -m pytest)
    for args, option in ((['--parts', 'env,gpu'], '--parts'), (['--limits', 'tables=soon'], '--limits'),
                         (['--limits', 'video=0'], '--limits'), (['--device', 'tpu'], '--device')):
        with pytest.raises(SystemExit) as e: gpu_check.parse_args(args)
        assert e.value.code == 2 and option in capsys.readouterr().err.strip().splitlines()[-1]
    a = gpu_check.parse_args(['--parts', 'interop,env', '--limits', 'env=7'])
    assert a.names == ('env', 'interop') and a.limit_s['env'] == 7 and sum(gpu_check.FULL.limits[i][1] for i in range(8)) <= 480


def test_data_summary_reads_both_video_configs():
    "The data part's line names the clips of the recorded default selection (pool, hard, easy) and of a plain config."
    from benchmarks.gpu_data import clips
    assert clips(dict(pool=dict(n_pool=200, n_frames=100), hard=[1, 2], easy=[3])) == '2 + 1 clips of a 200-clip pool × 100 frames'
    assert clips(dict(n_hard=1, n_easy=1, n_frames=8)) == '1 + 1 clips × 8 frames'
