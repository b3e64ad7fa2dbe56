"""The training-side DEQ options (issue 29) beyond the notebooks' examples: whole training runs with them on (exact
resumption, the stochastic caps the steps saw and the validation did not, the log columns), the options off leave a
run untouched, the Jacobian estimator and the phantom gradients on a convolutional cell, and old checkpoints load.

Runs use the in-memory toy source of tests/test_train.py.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from ldeq.core.assets import demo_checkpoints
from ldeq.engine.deq import (DEQ, DEQConfig, draw_iter_cap, jacobian_penalty, jvp_operator, spectral_radius,
                             vjp_operator)
from ldeq.engine.solvers import SolverConfig
from ldeq.models.checkpoint import load_checkpoint
from ldeq.models.model import LDEQ
from ldeq.training.train import LOG_COLUMNS, TrainConfig, read_log_csv, train

from test_train import _keep_threads, assert_same_weights, jitter, logged, sources   # _keep_threads: the autouse fixture, shared

f64 = torch.float64


RUN = dict(model='ldeq', preset='tiny', solver_iters=4, epochs=2, batch_size=2, lr=3e-3, warmup_epochs=0.5, progress=False)
ALL_ON = dict(backward='jfb', jfb_steps=2, jfb_tau=0.7, correction_states=2, correction_gamma=0.8, stochastic_iters=True,
              jac_weight=0.5, jac_every=2, jac_vecs=2, rho_every=3, rho_iters=4, rho_samples=1)


def test_all_options_resume_equals_uninterrupted(tmp_path):
    "Every option on: stopped after 3 of 8 steps and resumed == uninterrupted (weights and every logged column)."
    cfg = dict(RUN, **ALL_ON)
    ra = train(TrainConfig(**cfg, out_dir=str(tmp_path / 'a')), sources(64), jitter)
    train(TrainConfig(**cfg, out_dir=str(tmp_path / 'b'), max_steps=3), sources(64), jitter)
    torch.manual_seed(12345)                      # a fresh process: no option may draw from the global RNG
    rb = train(TrainConfig(**cfg, out_dir=str(tmp_path / 'b'), resume=True), sources(64), jitter)
    assert rb.finished and rb.global_step == ra.global_step == 8
    assert_same_weights(ra.model, rb.model, 1e-6)
    assert logged(ra.history) == logged(rb.history)
    for ca, cb in zip(ra.history, rb.history):
        for k in ('train_jac', 'train_rho', 'train_rho_max'): assert ca[k] == pytest.approx(cb[k], rel=1e-5), k
    # steps 0, 2, 4, 6 add the penalty, steps 0, 3, 6 estimate ρ (on 1 sample each): every epoch has both
    h = read_log_csv(tmp_path / 'a' / 'log.csv')
    assert all(r['train_jac'] > 0 and 0 < r['train_rho'] <= r['train_rho_max'] and r['step_seconds'] > 0 for r in h)
    assert ra.model.cfg.deq.correction_states == 2 and ra.model.cfg.deq.jfb_tau == 0.7     # saved with the model


def test_options_off_log_empty_and_rho_logging_changes_nothing(tmp_path):
    "Off: the new columns are empty. ρ logging alone (gradient-free, its own seeds) gives the same weights and losses."
    ra = train(TrainConfig(**RUN, out_dir=str(tmp_path / 'a')), sources(64), jitter)
    rb = train(TrainConfig(**RUN, out_dir=str(tmp_path / 'b'), rho_every=1, rho_iters=3), sources(64), jitter)
    assert_same_weights(ra.model, rb.model, 0.0)
    assert logged(ra.history) == logged(rb.history)
    h = read_log_csv(tmp_path / 'a' / 'log.csv')
    assert list(h[0]) == list(LOG_COLUMNS) and all(r['train_jac'] is None and r['train_rho'] is None for r in h)
    assert all(r['train_rho'] > 0 for r in rb.history) and all(r['train_jac'] is None for r in rb.history)


def test_stochastic_caps_in_training_never_in_validation(tmp_path, monkeypatch):
    "The caps the training steps used are draw_iter_cap's for (seed, step); validation forwards get no cap (the model's)."
    seen = []
    forward = LDEQ.forward
    def spy(self, x, z0=None, max_iters=None, extra_step=None, solver=None):
        seen.append((self.training, max_iters))
        return forward(self, x, z0, max_iters, extra_step, solver)
    monkeypatch.setattr(LDEQ, 'forward', spy)
    cfg = TrainConfig(**dict(RUN, seed=3), stochastic_iters=True, out_dir=str(tmp_path / 'a'))
    r = train(cfg, sources(64), jitter)
    train_caps = [m for t, m in seen if t]
    assert train_caps == [draw_iter_cap(r.model.cfg.deq.fwd, 3, s) for s in range(8)]
    assert len(set(train_caps)) > 1 and all(1 <= c <= 4 for c in train_caps)
    assert [m for t, m in seen if not t] == [None] * 2          # 2 epochs x 1 validation batch, at the model's own cap


class ConvCell(nn.Module):
    "f(z, x) = tanh(conv(z) + conv(x)) on (B, 2, 4, 4), the z-conv scaled to spectral norm `norm`."
    def __init__(self, norm=0.8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        K = torch.randn(2, 2, 3, 3, generator=g, dtype=f64)
        M = torch.func.jacrev(lambda z: nn.functional.conv2d(z, K, padding=1))(torch.zeros(1, 2, 4, 4, dtype=f64)).reshape(32, 32)
        self.K = nn.Parameter(K * norm / torch.linalg.matrix_norm(M, 2))
        self.Kx = nn.Parameter(torch.randn(2, 1, 3, 3, generator=g, dtype=f64))
    def forward(self, z, x): return torch.tanh(nn.functional.conv2d(z, self.K, padding=1) + nn.functional.conv2d(x, self.Kx, padding=1))


def exact_jacobians(cell, z, x):
    "(B, d, d) Jacobians of the cell in z, one sample at a time."
    return torch.stack([torch.func.jacrev(lambda zz: cell(zz[None], x[i:i + 1])[0])(z[i]).reshape(z[i].numel(), -1) for i in range(len(z))])


def test_jacobian_penalty_unbiased_on_a_conv_cell():
    "Images (B, C, H, W): the mean of 1,500 single-vector estimates is within 3 standard errors of ‖J‖²_F / d."
    cell = ConvCell(seed=1)
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(3, 1, 4, 4, generator=g, dtype=f64), torch.randn(3, 2, 4, 4, generator=g, dtype=f64)
    exact = exact_jacobians(cell, z, x).square().sum((1, 2)).detach() / 32
    zr = z.clone().requires_grad_(); fz = cell(zr, x)
    est = torch.stack([jacobian_penalty(fz, zr, seed=s, create_graph=False) for s in range(1500)])
    assert ((est.mean(0) - exact).abs() < 3 * est.std(0) / 1500 ** 0.5).all()


def test_spectral_radius_of_a_conv_cell_against_its_eigenvalues():
    "JVP and VJP power iteration at a point of a conv cell equal max |eig| of the exact Jacobian (real dominant case)."
    cell = ConvCell(norm=0.9, seed=2)
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(4, 1, 4, 4, generator=g, dtype=f64), torch.randn(4, 2, 4, 4, generator=g, dtype=f64)
    ev = torch.linalg.eigvals(exact_jacobians(cell, z, x).detach())
    mods = ev.abs().sort(dim=1, descending=True).values
    zr = z.clone().requires_grad_()
    r_j = spectral_radius(jvp_operator(lambda zz: cell(zz, x), z), z, iters=400)
    r_v = spectral_radius(vjp_operator(cell(zr, x), zr), zr, iters=400)
    real_top = (mods[:, 0] - mods[:, 1] > 1e-3).nonzero().flatten()       # a complex pair on top makes power iteration oscillate
    assert len(real_top) >= 2, mods[:, :2]
    for i in real_top:
        assert abs(r_j[i] - mods[i, 0]) < 1e-6 and abs(r_v[i] - mods[i, 0]) < 1e-6, (r_j, r_v, mods[:, :2])


@pytest.mark.parametrize('tau', [1.0, 0.6])
def test_phantom_gradient_approaches_implicit_on_a_conv_cell(tau):
    "Damped phantom gradients on a contractive conv cell: the error to the implicit gradient falls with k, below 1e-4 at k = 48."
    cell = ConvCell(norm=0.7, seed=3)
    g = torch.Generator().manual_seed(2)
    x, c = torch.randn(2, 1, 4, 4, generator=g, dtype=f64), torch.randn(2, 2, 4, 4, generator=g, dtype=f64)
    z0 = torch.zeros(2, 2, 4, 4, dtype=f64)
    tight = SolverConfig(max_iters=200, tol=1e-13)
    def grads(cfg):
        deq = DEQ(cell, cfg); deq.zero_grad(set_to_none=True)
        y, _ = deq(x, z0); (y * c).sum().backward()
        return torch.cat([p.grad.flatten() for p in cell.parameters()])
    g_ift = grads(DEQConfig(fwd=tight, bwd=tight))
    errs = [float((grads(DEQConfig(fwd=tight, backward='jfb', jfb_steps=k, jfb_tau=tau)) - g_ift).norm() / g_ift.norm())
            for k in (1, 3, 6, 12, 24, 48)]
    assert all(b < a or b < 1e-12 for a, b in zip(errs, errs[1:])) and errs[-1] < 1e-4, errs


def test_checkpoints_without_the_new_fields_load():
    "A shipped checkpoint, written before the options existed, loads with them off (the defaults)."
    lc = load_checkpoint(demo_checkpoints()['ldeq'])
    d = lc.model.cfg.deq
    assert (d.jfb_tau, d.correction_states, d.correction_gamma) == (1.0, 1, 0.8)
    ts = lc.train_state
    if isinstance(ts, dict) and 'train_config' in ts:                     # a training state without the new settings
        TrainConfig.from_dict({k: v for k, v in ts['train_config'].items()})


def test_benchmark_protocol_and_report(tmp_path):
    "benchmarks/deq_options.py without training: the side-by-side protocol of train_speed, the quick overrides, CSV and report."
    from benchmarks import deq_options as bo
    from benchmarks.train_speed import SBS_ARGS
    assert bo.protocol_args(3, False) == SBS_ARGS and bo.protocol_args(5, False)[SBS_ARGS.index('--epochs') + 1] == '5'
    jac = next(v for v in bo.VARIANTS if v.name == 'jacobian')
    assert bo.variant_args(jac, True)[bo.variant_args(jac, True).index('--jac-every') + 1] == '1' and '2' in bo.variant_args(jac, False)
    from ldeq.training.train import parse_args
    for v in bo.VARIANTS:                                                 # each variant's command line parses
        c = parse_args(['--recipe', 'demo_ldeq', *bo.protocol_args(3, False), *v.args])
        assert (c.train_subset, c.epochs, c.val_subset, c.seed) == (1000, 3, 200, 0)
    row = lambda name, nme, s: dict(variant=name, what=name, args='', epochs=1, val_nme_ep1=nme, val_nme=nme, val_fr10=90.0,
                                    test_f_evals=8.0, rho_end_median=0.8, rho_end_max=1.2, rho_end_above_1=0.25,
                                    train_rho_last=None, train_rho_max_last=None, step_seconds=s)
    rows = [row('baseline', 25.0, 1.0), row('rho_log', 25.0, 1.1), row('jacobian', 24.5, 2.0)]
    md = bo.report(rows, dict(command='c', started='s', cpu='cpu', capability='AVX2', load=0.0, protocol='p'))
    assert '| jacobian | jacobian | 24.50 | -0.50 |' in md and '2.00×' in md and '**yes**' in md
    bo.write_csv(rows, tmp_path / 'x.csv')
    assert (tmp_path / 'x.csv').read_text().splitlines()[0].startswith('variant,what,args,epochs,val_nme_ep1')
