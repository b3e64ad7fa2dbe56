"""Property tests of ldeq.engine.solvers beyond the notebook's examples."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from ldeq.engine.solvers import METHODS, SolverConfig, _sym_matrix, anderson, solve, solve_fz

f64 = torch.float64


def linear_problem(d, B, rho, seed):
    "f(z) = A z + b with A symmetric, spectral radius rho; exact solution."
    A = _sym_matrix(d, torch.linspace(-rho, rho, d), seed=seed)
    b = torch.randn(B, d, dtype=f64, generator=torch.Generator().manual_seed(seed + 1))
    zs = torch.linalg.solve(torch.eye(d, dtype=f64) - A, b.T).T
    return (lambda z: z @ A.T + b), zs


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 24), B=st.integers(1, 5), rho=st.floats(0.0, 0.9), seed=st.integers(0, 10_000),
       method=st.sampled_from(METHODS))
def test_linear_contractions_reach_tolerance_with_error_bound(d, B, rho, seed, method):
    "On a contraction with constant rho, |z - z*| <= |f(z) - z| / (1 - rho): the abs residual bounds the error."
    f, zs = linear_problem(d, B, rho, seed)
    z, s = solve(f, torch.zeros(B, d, dtype=f64), SolverConfig(method=method, max_iters=500, tol=1e-9, stop_mode='abs'))
    assert s.converged.all() and not s.failed.any()
    assert ((z - zs).norm(dim=1) <= s.residual / (1 - rho) * (1 + 1e-6) + 1e-14).all()
    # the reported residual is the residual of the returned z
    torch.testing.assert_close(s.residual, (f(z) - z).norm(dim=1), rtol=1e-4, atol=1e-13)


@pytest.mark.parametrize('method', METHODS)
def test_batch_permutation_equivariance(method):
    "Permuting the batch permutes the results (per-sample independence)."
    d, B = 10, 6
    W = _sym_matrix(d, torch.linspace(-0.9, 0.9, d), seed=3)
    scale = torch.linspace(0.1, 1.0, B, dtype=f64)[:, None]
    x = torch.randn(B, d, dtype=f64, generator=torch.Generator().manual_seed(4))
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(5))
    cfg = SolverConfig(method=method, max_iters=200, tol=1e-9)
    z, s = solve(lambda z: torch.tanh(scale * (z @ W.T) + x), torch.zeros(B, d, dtype=f64), cfg)
    zp, sp = solve(lambda z: torch.tanh(scale[perm] * (z @ W.T) + x[perm]), torch.zeros(B, d, dtype=f64), cfg)
    assert (zp - z[perm]).abs().max() <= 1e-6
    assert torch.equal(sp.steps, s.steps[perm]) and torch.equal(sp.converged, s.converged[perm])
    assert len(set(s.steps.tolist())) > 1  # samples really stopped at different steps


@pytest.mark.parametrize('method', ('fpi', 'anderson'))
@pytest.mark.parametrize('beta', (0.5, 0.8))
def test_mixing_and_damping(method, beta):
    f, zs = linear_problem(12, 3, 0.8, 7)
    z, s = solve(f, torch.zeros(3, 12, dtype=f64), SolverConfig(method=method, max_iters=500, tol=1e-10, beta=beta))
    assert s.converged.all()
    torch.testing.assert_close(z, zs, atol=1e-8, rtol=0)


def test_relative_regularisation_is_scale_free():
    "f_s(z) = s f(z / s) has the fixed point s z*: relative-λ Anderson takes the same steps at every scale."
    f, zs = linear_problem(30, 2, 0.95, 11)
    runs = {}
    for s_ in (1.0, 1e-4, 1e4):
        z, st_ = anderson(lambda z: s_ * f(z / s_), torch.zeros(2, 30, dtype=f64), SolverConfig(max_iters=200, tol=1e-10))
        runs[s_] = st_.steps.tolist()
        assert st_.converged.all()
        torch.testing.assert_close(z / s_, zs, atol=1e-7, rtol=1e-7)
    assert runs[1.0] == runs[1e-4] == runs[1e4], runs


def test_problem_a_tight_tolerance_in_float32():
    "Issue 2's problem A (d = 1024, spectrum in [0, 0.99]) reaches rel 1e-5 in float32 well within 100 evaluations."
    d, B = 1024, 8
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=f64))
    W = ((U * torch.linspace(0, 0.99, d, dtype=f64)) @ U.T).float()
    x = torch.randn(B, d, generator=g)
    f = lambda z: torch.tanh(z @ W.T + x)
    for method, cap in (('anderson', 30), ('broyden', 40)):
        z, s = solve(f, torch.zeros(B, d), SolverConfig(method=method, max_iters=100, tol=1e-5))
        assert s.converged.all() and int(s.nfe.max()) <= cap, (method, s.nfe)
        rel = (f(z) - z).norm(dim=1) / f(z).norm(dim=1)
        assert (rel < 1e-5).all()


@pytest.mark.parametrize('method', METHODS)
def test_solve_fz_returns_the_image_of_the_result(method):
    f, _ = linear_problem(8, 4, 0.7, 2)
    for k in (1, 2, 3, 7):
        z, fz, s = solve_fz(f, torch.ones(4, 8, dtype=f64), SolverConfig(method=method, max_iters=k, tol=0))
        torch.testing.assert_close(fz, f(z), atol=1e-12, rtol=0)
        assert (s.nfe == k).all() and s.trace.shape == (4, k) and torch.isfinite(s.trace).all()


@pytest.mark.parametrize('method', METHODS)
def test_inf_in_f_is_flagged(method):
    calls = [0]
    def f(z):
        out = 0.5 * z + 1
        if calls[0] >= 2: out[0, 0] = math.inf
        calls[0] += 1
        return out
    z, s = solve(f, torch.zeros(3, 4), SolverConfig(method=method, max_iters=50, tol=1e-6))
    assert s.failed.tolist() == [True, False, False] and s.converged.tolist() == [False, True, True]
    assert torch.isfinite(z).all() and torch.isfinite(s.residual).all()


def test_solver_does_not_touch_its_inputs_or_build_graphs():
    z0 = torch.randn(2, 5, requires_grad=True)
    keep = z0.detach().clone()
    w = torch.randn(5, 5, requires_grad=True)
    z, s = solve(lambda z: 0.3 * torch.tanh(z @ w), z0, SolverConfig(max_iters=20))
    assert torch.equal(z0.detach(), keep) and not z.requires_grad and z.grad_fn is None
