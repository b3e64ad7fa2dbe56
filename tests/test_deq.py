"""Tests of ldeq.engine.deq beyond the notebook's examples."""
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from ldeq.models.checkpoint import config_from_official_args, official_to_evals
from ldeq.engine.deq import DEQ, DEQConfig
from ldeq.engine.solvers import METHODS, PUBLISHED_PRELOOP, SolverConfig

f64 = torch.float64


class Tanh(nn.Module):
    def __init__(self, d=8, dx=3, norm=0.7, seed=0, dtype=f64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(d, d, generator=g, dtype=f64)
        self.W = nn.Parameter((W * norm / torch.linalg.matrix_norm(W, 2)).to(dtype))
        self.U = nn.Parameter(torch.randn(d, dx, generator=g, dtype=f64).to(dtype))
    def forward(self, z, x): return torch.tanh(z @ self.W.T + x @ self.U.T)


def tight(method='anderson', backward='implicit', iters=400):
    s = SolverConfig(method=method, max_iters=iters, tol=1e-13)
    return DEQConfig(fwd=s, bwd=s, backward=backward)


def param_and_input_grads(deq, x, z0, c):
    x = x.detach().requires_grad_(); deq.zero_grad(set_to_none=True)
    y, _ = deq(x, z0); (y * c).sum().backward()
    return [p.grad.clone() for p in deq.parameters()] + [x.grad.clone()]


@settings(max_examples=12, deadline=None)
@given(d=st.integers(1, 10), B=st.integers(1, 4), norm=st.floats(0.05, 0.8), seed=st.integers(0, 1000),
       fwd=st.sampled_from(METHODS), bwd=st.sampled_from(METHODS))
def test_implicit_equals_unrolled_any_solver_pair(d, B, norm, seed, fwd, bwd):
    cell = Tanh(d, 3, norm, seed)
    x = torch.randn(B, 3, dtype=f64, generator=torch.Generator().manual_seed(seed))
    c = torch.randn(B, d, dtype=f64, generator=torch.Generator().manual_seed(seed + 1))
    z0 = torch.zeros(B, d, dtype=f64)
    cfg = DEQConfig(fwd=SolverConfig(method=fwd, max_iters=400, tol=1e-13), bwd=SolverConfig(method=bwd, max_iters=400, tol=1e-13))
    g = param_and_input_grads(DEQ(cell, cfg), x, z0, c)
    g_ref = param_and_input_grads(DEQ(cell, DEQConfig(fwd=SolverConfig(method='fpi', max_iters=200, tol=0), backward='unrolled')), x, z0, c)
    for a, b in zip(g, g_ref):
        assert (a - b).norm() <= 1e-6 * b.norm() + 1e-12


def test_unrolled_double_backward_matches_finite_differences():
    "unrolled is plain autograd: its Hessian-vector product agrees with central differences of the gradient."
    cell = Tanh(6, 3, 0.6, 1)
    deq = DEQ(cell, DEQConfig(fwd=SolverConfig(method='fpi', max_iters=25, tol=0), backward='unrolled'))
    x = torch.randn(2, 3, dtype=f64, requires_grad=True); z0 = torch.zeros(2, 6, dtype=f64)
    v = torch.randn_like(x)
    def grad_at(xx):
        y, _ = deq(xx, z0)
        return torch.autograd.grad(y.square().sum(), xx, create_graph=True)[0]
    gx = grad_at(x)
    hv, = torch.autograd.grad((gx * v).sum(), x)
    eps = 1e-5
    fd = (grad_at((x + eps * v).detach().requires_grad_()) - grad_at((x - eps * v).detach().requires_grad_())) / (2 * eps)
    torch.testing.assert_close(hv, fd.detach(), atol=1e-7, rtol=1e-6)


def test_rwr_official_fpi_mapping():
    "Official fpi with max_iters K + extra step: K + 1 evaluations, output f^(K+1)(z0); ours the same in both semantics."
    cell = Tanh(8, 3, 0.7, 2)
    calls = [0]
    def counted(z, x): calls[0] += 1; return cell(z, x)
    x = torch.randn(4, 3, dtype=f64); z0 = torch.randn(4, 8, dtype=f64)
    with torch.no_grad():
        for K in (1, 2, 5):
            want = z0
            for _ in range(K + 1): want = cell(want, x)
            assert official_to_evals('fpi', K) == K + 1
            for fwd in (SolverConfig(method='fpi', tol=0, max_iters=K + 1),                       # ldeq: f reused as the extra step
                        SolverConfig(method='fpi', tol=0, max_iters=K, semantics='published')):    # published: a fresh extra step
                calls[0] = 0
                y, st_ = DEQ(counted, DEQConfig(fwd=fwd))(x, z0)
                torch.testing.assert_close(y, want, atol=1e-14, rtol=0)
                assert calls[0] == official_to_evals('fpi', K) and (st_.nfe == fwd.max_iters).all()


# The published inference forward (utils/solvers.py, then models/ldeq.py's extra step), literally, on (B, D) tensors.
def _pub_fpi(f, x0, K, tol, mode):
    x_prev = x0
    for _ in range(K):
        x_new = f(x_prev)
        a = (x_new - x_prev).norm(dim=1); r = a / (1e-5 + x_new.norm(dim=1))
        if (a if mode == 'abs' else r).mean() < tol: break
        x_prev = x_new
    return x_new


def _pub_anderson(f, x0, K, tol, mode, m, lam, beta):
    B, D = x0.shape
    X, F = x0.new_zeros(B, m, D), x0.new_zeros(B, m, D)
    X[:, 0], F[:, 0] = x0, f(x0)
    X[:, 1], F[:, 1] = F[:, 0], f(F[:, 0])
    H = x0.new_zeros(B, m + 1, m + 1); H[:, 0, 1:] = H[:, 1:, 0] = 1
    y = x0.new_zeros(B, m + 1, 1); y[:, 0] = 1
    for k in range(2, K + 2):
        n = min(k, m)
        G = F[:, :n] - X[:, :n]
        H[:, 1:n + 1, 1:n + 1] = G @ G.transpose(1, 2) + lam * torch.eye(n, dtype=x0.dtype)[None]
        alpha = torch.linalg.solve(H[:, :n + 1, :n + 1], y[:, :n + 1])[:, 1:n + 1, 0]
        X[:, k % m] = beta * (alpha[:, None] @ F[:, :n])[:, 0] + (1 - beta) * (alpha[:, None] @ X[:, :n])[:, 0]
        F[:, k % m] = f(X[:, k % m])
        a = (F[:, k % m] - X[:, k % m]).norm(dim=1)
        d = (a if mode == 'abs' else a / (1e-5 + F[:, k % m]).norm(dim=1)).mean()
        if k == 2 or d < lowest: lowest, best = d, X[:, k % m].clone()
        if d < tol: break
    return best


def _pub_broyden(f, x0, K, tol, mode):
    B, D = x0.shape
    g = lambda v: f(v) - v
    matvec = lambda U, VT, v: -v + torch.einsum('bdk,bk->bd', U, torch.einsum('bkd,bd->bk', VT, v))
    rmatvec = lambda U, VT, v: -v + torch.einsum('bk,bkd->bd', torch.einsum('bd,bdk->bk', v, U), VT)
    x, gx = x0, g(x0)
    Us, VTs = x0.new_zeros(B, D, K), x0.new_zeros(B, K, D)
    update, trace, nstep = gx, [], 0
    while nstep < K:
        x_new = x + update; gx_new = g(x_new)
        dx, dg, x, gx = x_new - x, gx_new - gx, x_new, gx_new
        nstep += 1
        a = gx.norm(dim=1)
        d = (a if mode == 'abs' else a / (1e-5 + (gx + x).norm(dim=1))).mean(); trace.append(d)
        if nstep == 1 or d < lowest: lowest, best = d, x.clone()
        if d < tol: break
        if d < 3 * tol and nstep > 30 and max(trace[-30:]) / min(trace[-30:]) < 1.3: break
        if d > trace[0] * (1e6 if mode == 'abs' else 1e3): break
        U, VT = Us[:, :, :nstep - 1], VTs[:, :nstep - 1]
        vT = rmatvec(U, VT, dx)
        u = (dx - matvec(U, VT, dg)) / (vT * dg).sum(1, keepdim=True)
        vT[vT != vT] = 0; u[u != u] = 0
        VTs[:, nstep - 1], Us[:, :, nstep - 1] = vT, u
        update = -matvec(Us[:, :, :nstep], VTs[:, :nstep], gx)
    return best


_PUB_ARGS = dict(model_mode='implicit', cell_name='Cell0', cell_norm='softargmax', injection_width=16, cell_base_width=16,
                 cell_width_increment=4, cell_gn_groups=1, cell_softargmax_beta=1.0, z_width=98, n_keypoints=98,
                 heatmap_size=16, im_size=64, anderson_m=6, anderson_lam=1e-4, anderson_beta=1.0, z0_mode='zeros')


@pytest.mark.parametrize('solver', ('fpi', 'anderson', 'broyden'))
def test_published_args_compute_the_published_forward(solver):
    "A published file's args give a DEQ that evaluates f as often, and outputs the same, as the published code (literal above)."
    cell = Tanh(10, 3, 0.6, 5)
    n = [0]
    def counted(z, x): n[0] += 1; return cell(z, x)
    x = torch.randn(3, 3, dtype=f64, generator=torch.Generator().manual_seed(6)); z0 = torch.zeros(3, 10, dtype=f64)
    f = lambda z: counted(z, x)
    for K, tol, mode, one_less in [(1, 0.0, 'rel', False), (3, 0.0, 'abs', False), (7, 0.0, 'rel', True), (40, 1e-6, 'rel', False),
                                   (40, 1e-6, 'abs', False)]:
        args = dict(_PUB_ARGS, solver=solver, max_iters=K, stop_mode=mode, rel_diff_target=tol, abs_diff_target=tol,
                    take_one_less_inference_step=one_less)
        c = config_from_official_args(args)
        assert c.deq.fwd.semantics == 'published' and c.deq.fwd.max_iters == K + PUBLISHED_PRELOOP[solver]
        with torch.no_grad():
            n[0] = 0
            if solver == 'fpi': zs = _pub_fpi(f, z0, K, tol, mode)
            elif solver == 'anderson': zs = _pub_anderson(f, z0, K, tol, mode, 6, 1e-4, 1.0)
            else: zs = _pub_broyden(f, z0, K, tol, mode)
            want = zs if one_less else f(zs)          # models/ldeq.py: the extra step unless take_one_less_inference_step
            n_pub = n[0]
            n[0] = 0
            y, st_ = DEQ(counted, c.deq)(x, z0, extra_step=c.extra_step)
        assert n[0] == n_pub, (solver, K, tol, mode, n[0], n_pub)
        if tol == 0: assert n_pub == official_to_evals(solver, K, extra_step=not one_less)
        else: assert n_pub < official_to_evals(solver, K), 'the early stop should have happened'
        torch.testing.assert_close(y, want, atol=1e-10, rtol=0)


def test_state_dict_keys_and_gradient_routing():
    class Model(nn.Module):
        def __init__(self): super().__init__(); self.deq_layer = DEQ(Tanh(), DEQConfig())
    assert sorted(Model().state_dict()) == ['deq_layer.cell.U', 'deq_layer.cell.W']
    cell = Tanh()
    x = torch.randn(2, 3, dtype=f64); z0 = torch.zeros(2, 8, dtype=f64, requires_grad=True)
    y, _ = DEQ(cell, tight())(x, z0)
    y.sum().backward()
    assert z0.grad is None  # the implicit gradient does not depend on the start
    y, _ = DEQ(cell, DEQConfig(fwd=SolverConfig(method='fpi', max_iters=3, tol=0), backward='unrolled'))(x, z0)
    y.sum().backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0


@pytest.mark.parametrize('mode', ('implicit', 'jfb', 'unrolled'))
def test_float32_conv_cell_all_modes_run_and_flag(mode):
    "A float32 conv cell trains in every mode; per-sample stats have batch length."
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    with torch.no_grad(): conv.weight.mul_(0.5 / conv.weight.norm())
    class Cell(nn.Module):
        def __init__(self): super().__init__(); self.conv = conv
        def forward(self, z, x): return torch.tanh(self.conv(z) + x)
    deq = DEQ(Cell(), DEQConfig(fwd=SolverConfig(tol=1e-5, max_iters=40), bwd=SolverConfig(tol=1e-5, max_iters=40), backward=mode))
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    y, st_ = deq(x, torch.zeros(3, 4, 5, 5))
    y.square().mean().backward()
    assert y.dtype == torch.float32 and st_.steps.shape == (3,) and torch.isfinite(x.grad).all()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_jfb_memory_grows_with_steps_only():
    cell = Tanh(16, 3, 0.7, 3)
    x = torch.randn(4, 3, dtype=f64); z0 = torch.zeros(4, 16, dtype=f64)
    def saved(k, iters):
        n = [0]
        def pack(t): n[0] += t.numel() * t.element_size(); return t
        deq = DEQ(cell, DEQConfig(fwd=SolverConfig(tol=0), backward='jfb', jfb_steps=k))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, _ = deq(x, z0, max_iters=iters); y.sum().backward()
        return n[0]
    assert saved(1, 5) == saved(1, 40) and saved(4, 5) == saved(4, 40) > 3 * saved(1, 5)


def test_implicit_backward_respects_bwd_settings():
    cell = Tanh(8, 3, 0.7, 4)
    x = torch.randn(3, 3, dtype=f64, requires_grad=True); z0 = torch.zeros(3, 8, dtype=f64)
    for method in METHODS:
        for cap in (0, 1, 3):
            deq = DEQ(cell, DEQConfig(bwd=SolverConfig(method=method, max_iters=cap, tol=0)))
            y, _ = deq(x, z0); y.sum().backward()
            assert (deq.last_bwd_stats.nfe == cap).all()
