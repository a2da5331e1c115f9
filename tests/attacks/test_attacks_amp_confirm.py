"""Under mixed precision a claimed break is confirmed in float32 before a sample stops being
stepped (a bf16 near-tie used to freeze samples and flatten the success curve), for every attack:
the native engines confirm inside the sweep, the base class confirms for every other attack and
re-attacks in float32 the samples whose bf16 claim float32 rejects."""
import pytest
import torch
from torch import nn

from robustbench_fundus.attacks import REGISTRY, Attack, get_attack
from robustbench_fundus.attacks.context import predict


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


# ---------------------------------------------------------------------------------------------
# every attack, through the base class: a bf16 sweep breaks exactly what a float32 sweep breaks
# ---------------------------------------------------------------------------------------------
# 8x8x3 inputs at 0.3; float32 breaks once the mean pixel passes 0.5: out of reach at the first
# eps, within reach at the second (Linf 0.3 -> mean 0.6; L2 4.0 -> mean up to 0.3 + 4/sqrt(192))
EPS = {"Linf": [0.05, 0.3], "L2": [0.5, 4.0]}
EXPECTED = [0, 4]
DOUBLE = "test_double_trusts_bf16"
TORCHATTACKS_EXPANDED = ["torchattacks:PGD", "torchattacks:FGSM", "torchattacks:APGD",
                         "torchattacks:PGDL2"]


class TrustsBf16(Attack):
    """A test double with its own _sweep that decides "fooled" with the attack-precision
    forward (bf16 under autocast) and never confirms: at each eps it checks the clean point,
    then takes one signed-gradient step of size eps, and freezes whatever it believes broken."""
    name = DOUBLE
    norm = "Linf"

    def _sweep(self, ctx, x, y, eps, *, seed, sample_ids):
        B = x.shape[0]
        x_adv, broken, out = x.clone(), torch.zeros(B, dtype=torch.bool), []
        for e in eps:
            at = torch.full((B,), -1, dtype=torch.int64)
            at[broken] = 0
            act = (~broken).nonzero().squeeze(1)
            xs = x[act].clone().requires_grad_(True)
            with torch.enable_grad():
                logits = ctx.forward(xs)
                (g,) = torch.autograd.grad(
                    torch.nn.functional.cross_entropy(logits, y[act], reduction="sum"), xs)
            ctx.work += int(act.numel())
            start = predict(logits.detach()) != y[act]
            stepped = (x[act] + e * g.sign()).clamp(0, 1)
            with torch.no_grad():
                after = predict(ctx.forward(stepped)) != y[act]
            xa = torch.where(start.view(-1, 1, 1, 1), x[act], stepped)
            fooled = start | after
            x_adv[act] = xa
            broken[act[fooled]] = True
            at[act[fooled]] = torch.where(start, 0, 1)[fooled]
            out.append((x_adv.clone(), at))
        return out


def _torchattacks_installed() -> bool:
    try:
        import torchattacks  # noqa: F401
        return True
    except ImportError:
        return False


def _every_attack() -> list[str]:
    names = []
    for n in REGISTRY.names():
        if n == "torchattacks":
            if _torchattacks_installed():
                names += TORCHATTACKS_EXPANDED
        else:
            names.append(n)
    return names + [DOUBLE]


def _default_sweep(name: str) -> bool:
    if name == DOUBLE:
        return False
    return type(get_attack(name))._sweep is Attack._sweep


@pytest.fixture
def double_registered():
    REGISTRY.register(TrustsBf16, name=DOUBLE, norm="Linf")
    try:
        yield
    finally:
        REGISTRY.unregister(DOUBLE)


def _near_tie(name: str):
    """Run ``name`` with amp off and bf16 on the near-tie model; assert the bf16 sweep breaks
    exactly what the float32 one breaks, and the expected samples."""
    model = TieUnderAutocast()
    x = torch.full((4, 3, 8, 8), 0.3)
    y = torch.zeros(4, dtype=torch.long)
    atk = get_attack(name, sanity_samples=0)
    eps = EPS[atk.norm]
    fp = atk.with_options(amp="off")(model, x, y, eps, seed=0)
    bf = atk.with_options(amp="bf16")(model, x, y, eps, seed=0)
    assert fp.counts.n_success == EXPECTED, (name, "float32", fp.counts.n_success)
    assert bf.counts.n_success == EXPECTED, (name, "bf16", bf.counts.n_success)
    assert torch.equal(bf.success, fp.success)
    with torch.no_grad():
        assert (model(bf[1].x_adv).argmax(1) != y).all()
    assert list(fp.counts.n_unverified) == [0, 0]
    return fp, bf


@pytest.mark.parametrize("name", _every_attack())
def test_bf16_sweep_breaks_what_float32_breaks(name, double_registered):
    fp, bf = _near_tie(name)
    if name == DOUBLE or _default_sweep(name):
        # the bf16 claims were rejected in float32 and those samples re-attacked in float32
        assert bf.counts.n_unverified[0] == 4
        assert "unverified_success" in {f["name"] for f in bf.flags}


# the two places of the mechanism, switched off
def _no_confirmation(self, ctx, x, y, xs, claim, eps, k, *, seed, sample_ids):
    return xs, claim


def _no_reattack(self, ctx, x, y, ids, eps, proj, *, seed):
    return proj, None, None


@pytest.mark.parametrize("name", [n for n in _every_attack() if _default_sweep(n)] + [DOUBLE])
def test_near_tie_test_has_teeth(name, double_registered, monkeypatch):
    """Without the base class's float32 confirmation and re-attack, the adapters and the test
    double fail the near-tie test: its expectation depends on the mechanism."""
    monkeypatch.setattr(Attack, "_confirm_breaks", _no_confirmation)
    monkeypatch.setattr(Attack, "_reattack_rejected", _no_reattack)
    with pytest.raises(AssertionError, match="'bf16'"):
        _near_tie(name)


class _CountRows(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("name", ["pgd", "fgsm", DOUBLE] +
                         (["torchattacks:PGD"] if _torchattacks_installed() else []))
def test_float32_runs_cost_nothing_extra(name, double_registered, monkeypatch, toy_model,
                                         small_batch):
    """Without autocast the mechanism runs no forward pass: the same rows reach the model with
    the mechanism on and switched off."""
    x, y = small_batch
    atk = get_attack(name, amp="off")
    rows = []
    for patch in (False, True):
        if patch:
            monkeypatch.setattr(Attack, "_confirm_breaks", _no_confirmation)
            monkeypatch.setattr(Attack, "_reattack_rejected", _no_reattack)
        m = _CountRows(toy_model)
        res = atk(m, x, y, [1 / 255, 4 / 255], seed=0)
        rows.append((m.rows, res.counts.n_success))
    assert rows[0] == rows[1]
