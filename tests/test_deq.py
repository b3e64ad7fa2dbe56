"""Tests of ldeq.deq beyond the notebook's examples."""
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from ldeq.deq import DEQ, DEQConfig
from ldeq.solvers import METHODS, SolverConfig

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
    "Official fpi with max_iters K + extra step outputs f^(K+1)(z0); ours with max_iters K + 1 gives the same."
    cell = Tanh(8, 3, 0.7, 2)
    deq = DEQ(cell, DEQConfig(fwd=SolverConfig(method='fpi', tol=0)))
    x = torch.randn(4, 3, dtype=f64); z0 = torch.randn(4, 8, dtype=f64)
    with torch.no_grad():
        for K in (1, 2, 5):
            want = z0
            for _ in range(K + 1): want = cell(want, x)
            y, st_ = deq(x, z0, max_iters=K + 1)
            torch.testing.assert_close(y, want, atol=1e-14, rtol=0)
            assert (st_.nfe == K + 1).all()


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
