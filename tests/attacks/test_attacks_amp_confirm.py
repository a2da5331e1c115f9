"""Under mixed precision a claimed break is confirmed in float32 before a sample stops being
stepped (a bf16 near-tie used to freeze samples and flatten the success curve)."""
import torch
from torch import nn

from robustbench_fundus.attacks import get_attack


class TieUnderAutocast(nn.Module):
    """Float32: grade 0 while the mean pixel is below 0.5. Under autocast the logits get a +10
    offset on grade 1, so the low-precision pass claims every input is already fooled."""

    def forward(self, x):
        m = x.flatten(1).mean(1)
        z = torch.stack([(0.5 - m) * 20, torch.zeros_like(m)], 1)
        z = torch.cat([z, torch.full((x.shape[0], 3), -50.0)], 1)
        if torch.is_autocast_enabled(x.device.type):
            z = z + torch.tensor([0.0, 10.0, 0, 0, 0])
        return z


def test_bf16_claims_are_confirmed_in_float32():
    x = torch.full((4, 3, 8, 8), 0.3)
    y = torch.zeros(4, dtype=torch.long)
    model = TieUnderAutocast()
    res = get_attack("pgd", steps=10, amp="bf16", sanity_eps=None)(model, x, y, [0.05, 0.3],
                                                                     seed=0)
    # 0.05 cannot lift the mean past 0.5 in float32; 0.3 can, and the engine must keep stepping
    # the samples whose bf16 break was rejected instead of freezing them.
    assert res.counts.n_success == [0, 4]
    assert list(res.counts.n_unverified) == [0, 0]
    with torch.no_grad():
        assert (model(res.per_eps[1].x_adv).argmax(1) != y).all()
