"""Trainer tests (ldeq.training.train): exact resumption, crash-safe checkpoints, killed runs, DDP equivalence.

The runs use an in-memory toy source (random crops, seeded jitter augmentation) passed to `train(cfg, sources,
augment_fn)`, so they test the trainer alone, independently of the data module.
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _keep_threads():
    "Runs may set torch's thread count (TrainConfig.threads): restore it after each test."
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)

from ldeq.models.checkpoint import load_checkpoint
from ldeq.training.train import TrainConfig, train, main, parse_args


class ToySource:
    "n random uint8 crops (s, s, 3) with random landmarks (98, 2) in [0.1, 0.9], outer eye corners apart."
    def __init__(self, n: int, s: int, seed: int = 0):
        g = np.random.default_rng(seed)
        self.im = g.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
        self.lm = 0.1 + 0.8 * g.random((n, 98, 2))
        self.lm[:, 60], self.lm[:, 72] = [0.3, 0.4], [0.7, 0.4]

    def __len__(self): return len(self.im)
    def __getitem__(self, i): return self.im[i], self.lm[i]


def jitter(image, lm, rng):
    "A seeded toy augmentation: pixel noise and a small landmark shift (both from `rng`)."
    noisy = np.clip(image.astype(np.int16) + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    return noisy, lm + rng.normal(0, 0.01, lm.shape)


def sources(s: int, n_train: int = 8, n_val: int = 2):
    return ToySource(n_train, s, 0), ToySource(n_val, s, 1)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    worst = max((va.double() - sb[k].double()).abs().max().item() for k, va in sa.items())
    assert worst <= atol, f'max weight difference {worst:.3g} > {atol}'
    return worst


def logged(history):
    "The deterministic log columns (NaN as None)."
    f = lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else v
    return [tuple(f(r[k]) for k in ('epoch', 'global_step', 'train_loss', 'val_nme', 'train_solver_steps')) for r in history]


LDEQ_RUN = dict(model='ldeq', preset='tiny', solver_iters=3, epochs=2, batch_size=2, lr=3e-3, warmup_epochs=0.5,
                progress=False)


def test_ldeq_resume_equals_uninterrupted(tmp_path):
    "LDEQ (implicit backward): stopped after 3 of 8 steps (mid-epoch) and resumed == uninterrupted, to 1e-6."
    ra = train(TrainConfig(**LDEQ_RUN, out_dir=str(tmp_path / 'a')), sources(64), jitter)
    rb = train(TrainConfig(**LDEQ_RUN, out_dir=str(tmp_path / 'b'), max_steps=3), sources(64), jitter)
    assert not rb.finished and rb.global_step == 3 and rb.history == []
    ts = load_checkpoint(tmp_path / 'b' / 'last.pt').train_state
    assert (ts['epoch'], ts['step_in_epoch'], ts['global_step']) == (0, 3, 3)
    rb = train(TrainConfig(**LDEQ_RUN, out_dir=str(tmp_path / 'b'), resume=True), sources(64), jitter)
    assert ra.finished and rb.finished and ra.global_step == rb.global_step == 8
    assert_same_weights(ra.model, rb.model, 1e-6)
    assert logged(ra.history) == logged(rb.history)
    assert all(r['train_solver_steps'] > 0 for r in ra.history)


def jitter_global(image, lm, rng):
    "A toy augmentation that also draws from torch's *global* RNG (as dropout or torch-based augmentation would)."
    noisy, lm = jitter(image, lm, rng)
    return noisy, lm + 0.01 * torch.rand(lm.shape, dtype=torch.float64).numpy()


UNET_RUN = dict(model='unet', preset='tiny', epochs=2, batch_size=2, lr=3e-3, warmup_epochs=0.5, progress=False)


def test_resume_restores_the_global_torch_rng(tmp_path):
    "Steps that draw from torch's global RNG: stopped after 3 of 8 steps and resumed in a scrambled RNG == uninterrupted."
    ra = train(TrainConfig(**UNET_RUN, out_dir=str(tmp_path / 'a')), sources(32), jitter_global)
    train(TrainConfig(**UNET_RUN, out_dir=str(tmp_path / 'b'), max_steps=3), sources(32), jitter_global)
    torch.manual_seed(12345)                                  # a fresh process would not continue the old RNG stream
    rb = train(TrainConfig(**UNET_RUN, out_dir=str(tmp_path / 'b'), resume=True), sources(32), jitter_global)
    assert rb.finished and rb.global_step == ra.global_step == 8
    assert_same_weights(ra.model, rb.model, 1e-6)
    assert logged(ra.history) == logged(rb.history)
    # control: the global draws matter, so a resume that did not restore the RNG would be caught
    rc = train(TrainConfig(**UNET_RUN, out_dir=str(tmp_path / 'c'), seed=1), sources(32), jitter_global)
    with pytest.raises(AssertionError): assert_same_weights(ra.model, rc.model, 1e-6)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    "A save that dies half-way (half the bytes written, then an exception) leaves the previous last.pt intact."
    run = dict(model='unet', preset='tiny', epochs=2, batch_size=2, lr=3e-3, progress=False, ckpt_every_steps=1)
    out = tmp_path / 'run'
    train(TrainConfig(**run, out_dir=str(out), max_steps=2), sources(32), jitter)
    good = (out / 'last.pt').read_bytes()
    real_save = torch.save

    def half_save(obj, f, *a, **kw):
        import io
        buf = io.BytesIO(); real_save(obj, buf, *a, **kw)
        data = buf.getvalue()
        f.write(data[:len(data) // 2]); f.flush()
        raise RuntimeError('simulated crash while writing the checkpoint')

    monkeypatch.setattr(torch, 'save', half_save)
    with pytest.raises(RuntimeError, match='simulated crash'):
        train(TrainConfig(**run, out_dir=str(out), resume=True), sources(32), jitter)
    monkeypatch.setattr(torch, 'save', real_save)
    assert (out / 'last.pt').read_bytes() == good
    assert load_checkpoint(out / 'last.pt').train_state['global_step'] == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith('.')]          # no temporary file left behind
    # ... and the run still resumes from it and ends where an uninterrupted run ends
    rr = train(TrainConfig(**run, out_dir=str(out), resume=True), sources(32), jitter)
    ra = train(TrainConfig(**run, out_dir=str(tmp_path / 'ref')), sources(32), jitter)
    assert_same_weights(ra.model, rr.model, 1e-6)


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e: main(['--help'])
    assert e.value.code == 0 and '--solver-iters' in capsys.readouterr().out
    with pytest.raises(ValueError, match='needs a CUDA device'):
        train(TrainConfig(model='unet', preset='tiny', precision='fp16', progress=False), sources(32))
    assert parse_args(['--recipe', 'demo_ldeq', '--epochs', '1']).epochs == 1


# ---------------------------------------------------------------- a real kill (SIGKILL) of a training process

CHILD = textwrap.dedent('''
    import sys, json, torch
    sys.path.insert(0, {tests!r})
    from test_train import sources, jitter
    from ldeq.training.train import TrainConfig, train
    cfg = TrainConfig(**json.loads(sys.argv[1]))
    train(cfg, sources(64), jitter)
''')


@pytest.mark.parametrize('epochs,kill_at', [(2, 3), pytest.param(3, 5, marks=pytest.mark.slow)])
def test_sigkill_and_resume_equals_uninterrupted(tmp_path, epochs, kill_at):
    "A training process killed with SIGKILL mid-run (possibly mid-save), resumed, ends with the uninterrupted weights."
    import json
    # the same thread count in both processes: reductions in another order would differ in the last bits, and the
    # solver's discrete choices (best iterate, stopping) can amplify that
    run = dict(LDEQ_RUN, epochs=epochs, ckpt_every_steps=1, threads=1)
    total = 4 * epochs
    script = tmp_path / 'child.py'
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    out = tmp_path / 'killed'
    p = subprocess.Popen([sys.executable, str(script), json.dumps(dict(run, out_dir=str(out)))])
    t0 = time.time()
    try:
        while time.time() - t0 < 300:
            if (out / 'last.pt').exists():
                try: step = load_checkpoint(out / 'last.pt').train_state['global_step']
                except Exception: step = 0
                if step >= kill_at: break
            if p.poll() is not None: pytest.fail(f'child ended early with {p.returncode}')
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert p.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(out / 'last.pt').train_state['global_step']
    assert kill_at <= killed_at < total
    rr = train(TrainConfig(**run, out_dir=str(out), resume=True), sources(64), jitter)
    ra = train(TrainConfig(**run, out_dir=str(tmp_path / 'ref')), sources(64), jitter)
    assert rr.global_step == ra.global_step == total
    assert_same_weights(ra.model, rr.model, 1e-6)
    assert logged(ra.history) == logged(rr.history)


# ---------------------------------------------------------------- DDP: 2 gloo processes == 1 process, same global batch

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out: str, size: int):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    res = train(TrainConfig(**cfg_dict), sources(size, n_train=16), jitter)
    torch.save({k: v.detach().cpu() for k, v in res.model.state_dict().items()}, f'{out}/rank{rank}.pt')


@pytest.mark.parametrize('model,max_steps', [('unet', 1)] + [pytest.param(m, s, marks=pytest.mark.slow)
                                             for m, s in (('stacked_hourglass', None), ('unet', None), ('ldeq', 1))])
def test_ddp_two_gloo_processes_equal_one(tmp_path, model, max_steps):
    """Two gloo processes (per-process batch 2) give the weights of one process with the global batch 4, to 1e-5.

    GroupNorm everywhere (`norm='gn'`): BatchNorm statistics would be per process on CPU. The baselines run 2 epochs
    (8 steps). LDEQ is compared after one step: its gradients agree to float32 rounding, but its head bias (and the
    last hourglass GroupNorm bias) have a mathematically zero gradient (σ_T removes any per-channel constant), so
    AdamW turns their rounding noise into ±lr steps, and LDEQ's later steps amplify such last-bit differences (a
    property of LDEQ + Adam, seen the same way between batch 4 and batch 2 + 2 in one process, not of DDP).
    """
    import torch.multiprocessing as mp
    run = dict(model=model, preset='tiny', norm='gn', epochs=2, batch_size=4, lr=1e-3, warmup_epochs=0.5, progress=False,
               threads=1, max_steps=max_steps)
    if model == 'ldeq': run['solver_iters'] = 3
    size = 64 if model == 'ldeq' else 32
    mp.spawn(_ddp_worker, args=(2, _free_port(), dict(run, out_dir=str(tmp_path / 'ddp')), str(tmp_path), size), nprocs=2, join=True)
    one = train(TrainConfig(**run, out_dir=str(tmp_path / 'one')), sources(size, n_train=16), jitter)
    w0, w1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    for k in w0: assert torch.equal(w0[k], w1[k]), k             # the ranks agree exactly
    worst = max((w0[k] - v).abs().max().item() for k, v in one.model.state_dict().items())
    print(f'{model}: {one.global_step} steps, max |DDP - single| = {worst:.3g}')
    assert worst <= 1e-5, worst
    ck = load_checkpoint(tmp_path / 'ddp' / 'last.pt')           # rank 0 wrote the checkpoints
    assert ck.train_state['world_size'] == 2 and ck.train_state['global_step'] == (max_steps or 8)


# ---------------------------------------------------------------- the real data path: synthetic / wflw / wflw_cropped

@pytest.fixture(scope='module')
def tiny_synthetic(tmp_path_factory):
    "A tiny synthetic stills set (8 train, 4 test, 96² images) in the synthetic-benchmark layout."
    from ldeq.faces.synth import ensure_synthetic, SyntheticConfig, StillsConfig
    root = tmp_path_factory.mktemp('synth')
    ensure_synthetic(root, SyntheticConfig(stills=StillsConfig(n_train=8, n_test=4, image_size=96)), parts=('stills',),
                     workers=1, progress=False)
    return root


def test_train_on_each_dataset_kind(tmp_path, tiny_synthetic):
    "The synthetic set (with augmentation), the same images as official WFLW, and a pre-cropped copy, via the CLI."
    import cv2
    from ldeq.data.formats import CroppedRecord, write_precropped_list, open_stills
    common = ['--model', 'unet', '--preset', 'tiny', '--epochs', '1', '--batch-size', '4', '--no-progress']
    assert main(common + ['--dataset', 'synthetic', '--data-root', str(tiny_synthetic), '--out-dir', str(tmp_path / 's')]) == 0
    ts = load_checkpoint(tmp_path / 's' / 'last.pt').train_state
    assert ts['global_step'] == 2 and ts['history'][0]['val_nme'] > 0
    assert main(common + ['--dataset', 'wflw', '--data-root', str(tiny_synthetic / 'wflw'), '--out-dir', str(tmp_path / 'w')]) == 0
    # a pre-cropped copy: 64x64 crops written as files, landmarks in [0, 1]
    pre = tmp_path / 'pre'
    for split in ('train', 'test'):
        src, recs = open_stills(tiny_synthetic / 'wflw', split, size=64), []
        (pre / split).mkdir(parents=True)
        for i in range(len(src)):
            img, lm = src[i]
            cv2.imwrite(str(pre / split / f'{i}.png'), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            recs.append(CroppedRecord(f'{i}.png', lm.astype(float)))
        write_precropped_list(pre / f'{split}.txt', recs)
    assert main(common + ['--dataset', 'wflw_cropped', '--data-root', str(pre), '--no-augment', '--out-dir', str(tmp_path / 'p')]) == 0
    with pytest.raises(ValueError, match="needs 'precropped'"):
        main(common + ['--dataset', 'wflw_cropped', '--data-root', str(tiny_synthetic / 'wflw'), '--out-dir', str(tmp_path / 'x')])
    with pytest.raises(ValueError, match='needs --data-root'):
        main(common + ['--dataset', 'wflw', '--out-dir', str(tmp_path / 'y')])
