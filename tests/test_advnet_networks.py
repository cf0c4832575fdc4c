"""The adversarial-networks paper's networks and objective: generator heads, D1/D2 shapes, and the finite-difference
Hessian-vector product of §3.1 against double backpropagation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advframe
from advframe.errors import ParameterError
from advframe.threat import ThreatModel
from advframe_advnet.classifiers import D1, D2
from advframe_advnet.generators import build_generator
from advframe_advnet.objective import (MinimaxSettings, classifier_loss_exact, classifier_loss_finite_difference,
                                       generator_gradient, shifted)

GAMMA = 0.01


@pytest.mark.parametrize("kind", ["g1", "g2", "g3"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_generator_outputs_stay_in_the_ball_and_the_bounds(kind, norm):
    torch.manual_seed(0)
    gen = build_generator(kind, 1, 28, 10, width=2, norm=norm)
    x = torch.rand(6, 1, 28, 28)
    x[:, :, :4] = 0.0
    y = torch.arange(6) % 10
    d = gen(x, y, torch.Generator().manual_seed(1))
    assert d.shape == x.shape
    if norm == "linf":
        assert float(d.detach().abs().max()) <= 1.0
    else:
        torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.ones(6))
    x_adv = gen.perturb(x, y, 0.3, (0.0, 1.0), torch.Generator().manual_seed(1))
    assert ThreatModel(norm, 0.3, (0.0, 1.0)).audit(x_adv, x).violations == 0
    assert float((x_adv - x).detach().abs().max()) > 0


def test_generators_read_what_the_paper_says():
    torch.manual_seed(0)
    x, other = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3])
    g1, g2, g3 = (build_generator(k, 1, 28, 10, width=2).eval() for k in ("g1", "g2", "g3"))
    noise = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert not torch.equal(g1(x, y), g1(other, y))  # G1 reads the image
    torch.testing.assert_close(g2(x, y, noise()), g2(other, y.flip(0), noise()))  # G2: only z
    assert not torch.equal(g2(x, y, noise()), g2(x, y, torch.Generator().manual_seed(6)))
    torch.testing.assert_close(g3(x, y), g3(other, y))  # G3: only the label
    assert not torch.equal(g3(x, y), g3(x, y.flip(0)))
    assert g3.reads_label and not g1.reads_label and not g2.reads_label


def test_generator_and_classifier_shapes_follow_the_appendix():
    torch.manual_seed(0)
    d1, d2 = D1(), D2()
    assert d1(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert d2(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert [m.out_channels for m in d1.features if isinstance(m, nn.Conv2d)] == [32, 64]
    assert sum(isinstance(m, nn.Module) and type(m).__name__ == "ResidualBlock" for m in d2.modules()) == 9
    gen = build_generator("g1", 3, 32, 10, width=4)
    blocks = [m for m in gen.modules() if type(m).__name__ == "ResidualBlock"]
    assert len(blocks) == 6 and blocks[0].conv1.out_channels == 16  # residual-block(3,1,4k) x6
    assert build_generator("g2", 3, 32, 10, width=64).code(torch.rand(1, 3, 32, 32), None, None).numel() == 256 * 64
    with pytest.raises(ParameterError, match="multiple of 4"):
        build_generator("g1", 1, 30, 10)
    with pytest.raises(ParameterError, match="unknown generator 'g4'"):
        build_generator("g4", 1, 28, 10)
    with pytest.raises(ParameterError, match="multiple of 4"):
        D1(image_size=30)


class SmoothGenerator(nn.Module):
    """A generator with a smooth (tanh) map: its Hessian exists everywhere."""

    def __init__(self, d: int):
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)

    def perturb(self, x, y, eps, bounds, noise=None):
        return (x + eps * torch.tanh(self.b(torch.tanh(self.a(x.flatten(1))))).view_as(x)).clamp(*bounds)


def _grad(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])


def _hvp_terms(model, gen, x, y, eps, h):
    """(finite-difference, exact) Hessian-vector-product terms of the classifier gradient."""
    settings = MinimaxSettings(eps=eps, bounds=(0.0, 1.0), lam=1.0, gamma=GAMMA, h=h)
    exact, _ = classifier_loss_exact(model, model, gen, x, y, settings)
    g_exact = _grad(exact, model)  # before the finite difference moves (and restores) the generator
    plain, _ = classifier_loss_exact(model, model, gen, x, y, MinimaxSettings(eps, (0.0, 1.0), 1.0, 0.0))
    g0 = _grad(plain, model)
    fd, _ = classifier_loss_finite_difference(model, model, gen, x, y, settings)
    return _grad(fd, model) - g0, g_exact - g0, fd, exact


def test_finite_difference_hvp_converges_to_double_backprop_on_a_smooth_game():
    """Stated tolerance: in float64 the relative error of the HVP term is first order in h,
    ≤ 1e-4 at h = 0.1 and ≤ 1e-6 at the paper's h = η_G/10 = 2e-4."""
    torch.manual_seed(0)
    model = advframe.as_model(nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Softplus(), nn.Linear(16, 5)))
    model, gen = model.double(), SmoothGenerator(12).double()
    x = 0.3 + 0.4 * torch.rand(8, 1, 3, 4, dtype=torch.float64)  # interior: no clipping
    y = torch.randint(0, 5, (8,))
    errors = {}
    for h in (1e-1, 1e-2, 2e-4):
        fd, exact, fd_loss, exact_loss = _hvp_terms(model, gen, x, y, 0.1, h)
        errors[h] = float((fd - exact).norm() / exact.norm())
        # the value of the finite-difference loss is the regularised objective F + (γ/2)‖∇_ψ F‖²
        torch.testing.assert_close(fd_loss.detach(), exact_loss.detach(), rtol=1e-12, atol=1e-12)
    assert errors[1e-1] < 1e-4 and errors[2e-4] < 1e-6, errors
    assert errors[1e-2] < errors[1e-1] / 5  # first order in h


def test_finite_difference_hvp_matches_double_backprop_on_d1_and_g1_at_small_h():
    """D1 and G1 are piecewise linear (ReLU, max-pooling): within a step h·v that flips no ReLU the
    finite difference is exact up to rounding. Stated tolerance: float64, h = 1e-6, relative error of
    the HVP term ≤ 1e-4. (At the paper's h = η_G/10 = 2e-4 flips do occur: the finite difference then
    measures the curvature at the scale of a generator step, as §3.1 intends, not the pointwise HVP.)"""
    torch.manual_seed(0)
    model, gen = D1().double(), build_generator("g1", 1, 28, 10, width=2).double()
    x, y = torch.rand(8, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (8,))
    fd, exact, _, _ = _hvp_terms(model, gen, x, y, 0.3, 1e-6)
    assert float((fd - exact).norm() / exact.norm()) < 1e-4


def test_regularised_gradient_is_plain_gradient_plus_gamma_hvp():
    """With γ = 0 both modes give exactly ∇_θ F; the regulariser changes the gradient only by γ·H·v."""
    torch.manual_seed(0)
    model, gen = D1(), build_generator("g1", 1, 28, 10, width=2)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    plain, _ = classifier_loss_exact(model, model, gen, x, y, MinimaxSettings(0.3, (0.0, 1.0), 1.0, 0.0))
    settings = MinimaxSettings(0.3, (0.0, 1.0), 1.0, 0.0, h=2e-4)
    fd0, stats = classifier_loss_finite_difference(model, model, gen, x, y, settings)
    torch.testing.assert_close(_grad(fd0, model), _grad(plain, model))
    assert stats["grad_norm_g"] == 0.0


def test_shifted_restores_the_generator_bit_for_bit_and_ascent_raises_the_loss():
    torch.manual_seed(0)
    model, gen = D1().eval(), build_generator("g1", 1, 28, 10, width=2).eval()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    v, loss0, _ = generator_gradient(model, gen, x, y, 0.3, (0.0, 1.0), 1.0, None)
    params = [p for p in gen.parameters()]
    with shifted(params, v, 1e-2):
        _, loss1, _ = generator_gradient(model, gen, x, y, 0.3, (0.0, 1.0), 1.0, None)
    assert loss1 > loss0  # psi + h·v is a gradient-ASCENT step of the generator
    for k, t in gen.state_dict().items():
        assert torch.equal(t, before[k]), k
