"""The ranking and linearity losses of the mobile recipe (lmliqa.train.losses), against their definitions."""

import math

import pytest
import torch

from lmliqa.train.losses import fidelity_rank_loss, plcc_loss


def test_plcc_loss_is_one_minus_pearson_over_two_and_blind_to_scale():
    y = torch.tensor([10.0, 20.0, 35.0, 50.0, 80.0])
    assert plcc_loss(3 * y + 7, y).item() == pytest.approx(0.0, abs=1e-6)
    assert plcc_loss(-y, y).item() == pytest.approx(1.0, abs=1e-6)
    p = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0])
    r = torch.corrcoef(torch.stack([p, y]))[0, 1].item()
    assert plcc_loss(p, y).item() == pytest.approx((1 - r) / 2, abs=1e-6)
    assert plcc_loss(10 * p, y).item() == pytest.approx(plcc_loss(p, y).item(), abs=1e-6)


def fidelity_reference(s, y, group):
    """The fidelity loss written pair by pair (Tsai et al. 2007), sigma 1."""
    total, n = 0.0, 0
    for i in range(len(s)):
        for j in range(len(s)):
            if y[i] == y[j] or group[i] == group[j]:
                continue
            p = 0.5 * (1 + math.erf((s[i] - s[j]) / math.sqrt(2) / math.sqrt(2)))
            want = 1.0 if y[i] > y[j] else 0.0
            total += 1 - math.sqrt(p * want) - math.sqrt((1 - p) * (1 - want))
            n += 1
    return total / n


def test_fidelity_rank_loss_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(12, generator=g)
    y = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 3.0, 3.0, 3.0])
    group = torch.arange(4).repeat_interleave(3)
    got = fidelity_rank_loss(s, y, group).item()
    assert got == pytest.approx(fidelity_reference(s.tolist(), y.tolist(), group.tolist()), abs=1e-4)


def test_fidelity_rank_loss_rewards_the_right_order():
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    right = fidelity_rank_loss(4 * y, y).item()
    wrong = fidelity_rank_loss(-4 * y, y).item()
    assert right < 0.01 and wrong > 0.9
    s = torch.zeros(4, requires_grad=True)
    fidelity_rank_loss(s, y).backward()
    assert torch.all(s.grad[1:] - s.grad[:-1] < 0)            # descent raises the better photos' scores
    # nothing to rank (one photo's crops only): zero, and still differentiable
    one = torch.zeros(3, requires_grad=True)
    loss = fidelity_rank_loss(one, torch.ones(3), torch.zeros(3, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
