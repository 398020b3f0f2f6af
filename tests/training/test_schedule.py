"""The appendix-A.6 schedule: linear warm-up from 1/100, then polynomial decay (power 1.5) to 0."""
import math

from hcdp_training.schedule import build_scheduler, lr_factor
import pytest
import torch


@pytest.mark.parametrize("step, expected", [
    (0, 0.01),                 # warm-up starts at start_factor
    (1000, 0.01 + 0.99 * 0.5),  # half-way through the warm-up
    (1999, 0.01 + 0.99 * 1999 / 2000),
    (2000, 1.0),               # end of warm-up, start of the decay
    (6000, 0.5 ** 1.5),        # half-way through the decay: (1 - 0.5)^1.5 = 0.35355...
    (9000, 0.125 ** 1.5),
    (10000, 0.0),              # the last step
    (12000, 0.0),              # past the end stays at 0
])
def test_lr_factor_matches_hand_values_for_the_paper_recipe(step, expected):
    assert lr_factor(step, total_steps=10000, warmup_steps=2000) == pytest.approx(expected,
                                                                                  abs=1e-12)


def test_lr_factor_without_warmup_starts_at_one_and_decays_with_power():
    assert lr_factor(0, 4, 0) == 1.0
    assert lr_factor(1, 4, 0) == pytest.approx(0.75 ** 1.5)
    assert lr_factor(3, 4, 0, power=1.0) == pytest.approx(0.25)


def test_scheduler_scales_every_group_by_the_same_factor_of_its_own_base_lr():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW([{"params": [params[0]], "lr": 1e-4},
                             {"params": [params[1]], "lr": 1e-6}])
    sched = build_scheduler(opt, total_steps=10, warmup_steps=4)
    seen = []
    for _ in range(10):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for step, (a, b) in enumerate(seen):
        f = lr_factor(step, 10, 4)
        assert math.isclose(a, 1e-4 * f, rel_tol=1e-12) and math.isclose(b, 1e-6 * f,
                                                                         rel_tol=1e-12)
    assert seen[0][0] == pytest.approx(1e-6) and seen[4][0] == pytest.approx(1e-4)
