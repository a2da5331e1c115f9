"""Options are a typed boundary: names checked, command-line strings coerced to each option's
type, one resolver for the benchmark, and the explicit adapter for foreign callables."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from robustbench_fundus.attacks import (PGD, REGISTRY, Attack, AttackConfig, CallableAttack,
                                        get_attack, parse_option_assignments, resolve_attack)
from robustbench_fundus.attacks.options import coerce
from robustbench_fundus.errors import RBFError

SHARED = ["amp", "channels_last", "keep_adv", "sanity_eps", "sanity_samples"]


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


def test_unknown_option_names_every_option():
    with pytest.raises(RBFError) as e:
        get_attack("fgsm", steps=3)
    assert _one_line(e) == ("attack 'fgsm' has no option 'steps'; its options are "
                            "amp, channels_last, keep_adv, sanity_eps, sanity_samples")
    with pytest.raises(RBFError) as e:
        get_attack("pgd", stepz=3)
    msg = _one_line(e)
    assert msg.startswith("attack 'pgd' has no option 'stepz'; its options are ")
    listed = msg.split("its options are ")[1].split(", ")
    assert listed == sorted(get_attack("pgd").options())


@pytest.mark.parametrize("name", REGISTRY.names())
def test_options_round_trip(name):
    """Every registered attack lists its options, and with_options(**options()) rebuilds an
    equal configuration (a new instance; the original is untouched)."""
    if name == "torchattacks":
        pytest.importorskip("torchattacks")
        name = "torchattacks:PGD"
    atk = get_attack(name)
    opts = atk.options()
    assert set(SHARED) <= set(opts)
    again = atk.with_options(**opts)
    assert again is not atk and again.options() == opts
    assert again.identity() == atk.identity()
    changed = atk.with_options(sanity_samples=3)
    assert changed.options()["sanity_samples"] == 3 and atk.options()["sanity_samples"] == 8


def test_string_options_are_coerced():
    atk = resolve_attack("pgd", options={"steps": "20", "step_size": "0.5/255",
                                         "random_start": "false", "sanity_eps": "none",
                                         "warm_start": "YES", "channels_last": "false",
                                         "amp": "off", "loss": "margin"})
    c = atk.config
    assert (c.steps, c.random_start, c.sanity_eps, c.warm_start, c.channels_last, c.amp,
            c.loss) == (20, False, None, True, False, "off", "margin")
    assert c.step_size == pytest.approx(0.5 / 255) and isinstance(c.step_size, float)
    assert resolve_attack("pgd", options={"step_ratio": 2}).config.step_ratio == 2.0
    assert isinstance(resolve_attack("pgd", options={"step_ratio": 2}).config.step_ratio, float)
    aa = resolve_attack("autoattack", options={"version": "plus", "n_target_classes": "3"})
    assert (aa.config.version, aa.config.n_target_classes) == ("plus", 3)
    assert resolve_attack("autoattack", options={"n_target_classes": "null"}
                          ).config.n_target_classes is None


@pytest.mark.parametrize("opts, words", [
    ({"steps": "ten"}, "option 'steps': expected an integer, got 'ten'"),
    ({"steps": "2.5"}, "option 'steps': expected an integer"),
    ({"steps": True}, "option 'steps': expected an integer"),
    ({"random_start": "maybe"}, "option 'random_start': expected true or false"),
    ({"step_size": "fast"}, "option 'step_size': expected a number (e.g. 0.5 or 2/255) or none"),
    ({"step_size": "1/0"}, "option 'step_size'"),
    ({"sanity_samples": "-1"}, "sanity_samples must be an integer >= 0"),
    ({"amp": "fp16"}, "amp must be one of auto, bf16, off"),
    ({"loss": "hinge"}, "loss must be one of"),
])
def test_bad_option_values(opts, words):
    with pytest.raises(RBFError) as e:
        resolve_attack("pgd", options=opts)
    assert words in _one_line(e)


def test_coerce_rules():
    assert coerce("1", bool, where="x") is True and coerce("No", bool, where="x") is False
    assert coerce("0", bool, where="x") is False
    assert coerce("3/4", float, where="x") == 0.75
    assert coerce("none", int | None, where="x") is None
    assert coerce("2,10", tuple[int, ...], where="x") == (2, 10)
    assert coerce([2, 10], tuple[int, ...], where="x") == (2, 10)
    assert coerce("auto", bool | str, where="x") == "auto"
    assert coerce("true", bool | str, where="x") is True
    with pytest.raises(RBFError, match="x: expected an integer"):
        coerce(2.5, int, where="x")
    with pytest.raises(RBFError, match="x: expected true or false"):
        coerce(1, bool, where="x")


def test_resolve_attack_forms():
    assert resolve_attack(None) is None
    for s in ("none", "None", " NONE "):
        assert resolve_attack(s) is None
    pgd = PGD(steps=4)
    assert resolve_attack(pgd) is pgd
    five = resolve_attack(pgd, steps=5)
    assert five.config.steps == 5 and pgd.config.steps == 4 and type(five) is PGD
    assert resolve_attack(pgd, options={"loss": "margin"}).config.loss == "margin"
    assert resolve_attack("pgd").config.steps == 10        # the attack's own default
    assert resolve_attack("pgd", steps=7).config.steps == 7
    assert resolve_attack("pgd", steps=7, options={"steps": "7"}).config.steps == 7
    with pytest.raises(RBFError, match="disagree"):
        resolve_attack("pgd", steps=7, options={"steps": "8"})
    assert isinstance(resolve_attack(PGD), PGD)


def test_resolve_attack_refuses_foreign_callables():
    class NotAnAttack:
        def __call__(self, model, x, y, eps):
            return x

    for spec in (lambda model, x, y, eps: x, NotAnAttack(), 3, ""):
        with pytest.raises(RBFError) as e:
            resolve_attack(spec)
        msg = _one_line(e)
        assert "Attack instance or a registered attack name" in msg
        assert "robustbench_fundus.attacks.CallableAttack(fn, name=..., norm=...)" in msg


def test_steps_shorthand():
    with pytest.raises(RBFError) as e:
        resolve_attack("fgsm", steps=10)
    assert _one_line(e) == ("--steps: attack 'fgsm' has no steps; its options are amp, "
                            "channels_last, keep_adv, sanity_eps, sanity_samples")
    with pytest.raises(RBFError, match="--steps: attack 'autoattack' has no steps"):
        resolve_attack("autoattack", steps=10)


def test_torchattacks_options():
    pytest.importorskip("torchattacks")
    pgd = get_attack("torchattacks:PGD")
    opts = pgd.options()
    assert set(opts) == {*SHARED, "norm", "alpha", "steps", "random_start"}
    assert (opts["steps"], opts["alpha"], opts["norm"]) == (10, "auto", "Linf")
    assert resolve_attack("torchattacks:PGD").steps == 10   # torchattacks' own default
    assert resolve_attack("torchattacks:PGD", steps=3).options()["steps"] == 3
    a = resolve_attack("torchattacks:PGD", options={"random_start": "false", "alpha": "1/255"})
    assert a.config.kwargs == {"random_start": False, "alpha": pytest.approx(1 / 255)}
    with pytest.raises(RBFError) as e:
        resolve_attack("torchattacks:FGSM", steps=3)
    assert _one_line(e) == ("--steps: attack 'torchattacks:FGSM' has no steps; its options are "
                            "amp, channels_last, keep_adv, norm, sanity_eps, sanity_samples")
    with pytest.raises(RBFError, match="torchattacks:FGSM' has no option 'steps'"):
        get_attack("torchattacks:FGSM", steps=3)
    with pytest.raises(RBFError, match="option 'alpha': expected a number .* or 'auto'"):
        resolve_attack("torchattacks:PGD", options={"alpha": "big"})
    cw = resolve_attack("torchattacks:CW", options={"c": "0.5", "steps": "5"})
    assert cw.config.kwargs == {"c": 0.5, "steps": 5} and cw.norm == "L2"
    pix = resolve_attack("torchattacks:Pixle", options={"x_dimensions": "1,4"})
    assert pix.options()["x_dimensions"] == (1, 4)
    assert get_attack("torchattacks:APGDT").options()["n_classes"] == "auto"
    with pytest.raises(RBFError, match="rejected its options"):
        get_attack("torchattacks:AutoAttack", version="best")
    with pytest.raises(RBFError, match="Linf norm only"):
        get_attack("torchattacks:PGD", norm="L2")
    assert get_attack("torchattacks:APGD", norm="l2").norm == "L2"
    assert get_attack("torchattacks:DeepFool", norm="Linf").norm == "Linf"


def test_parse_option_assignments():
    assert parse_option_assignments(["steps=20", "step_size = 0.5/255", "steps=30",
                                     "eq=a=b"]) == {"steps": "30", "step_size": "0.5/255",
                                                    "eq": "a=b"}
    assert parse_option_assignments([]) == {} and parse_option_assignments(None) == {}
    with pytest.raises(RBFError) as e:
        parse_option_assignments(["steps"])
    assert _one_line(e).startswith("--attack-opt: 'steps' is not KEY=VALUE")
    with pytest.raises(RBFError, match="--opt: '=3' has an empty key"):
        parse_option_assignments(["=3"], what="--opt")


def _shift_up(model, x, y, eps):
    """A foreign attack: one signed-gradient step of the cross-entropy."""
    xg = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(xg), y)
    (g,) = torch.autograd.grad(loss, xg)
    return (x + 2 * eps * g.sign()).clamp(0, 1)  # twice too far: the base class projects


def test_callable_attack(toy_model, small_batch):
    x, y = small_batch
    atk = CallableAttack(_shift_up, name="shift_up", norm="linf", steps=1,
                         description="one step")
    assert isinstance(atk, Attack) and atk.norm == "Linf"
    res = atk(toy_model, x, y, [2 / 255, 8 / 255], seed=0)
    assert res.attack == "shift_up"
    for k, e in enumerate(res.eps):
        assert ((res[k].x_adv - x).abs().flatten(1).amax(1) <= e + 1e-6).all()
    assert res.counts.n_projected[0] > 0
    assert res.counts.n_success[1] >= res.counts.n_success[0] > 0
    ident = atk.identity()
    assert (ident.name, ident.norm, ident.steps, ident.label) == ("shift_up", "linf", 1,
                                                                 "shift_up_linf_1")
    assert ident.config["function"].endswith("test_attacks_options._shift_up")
    other = CallableAttack(lambda m, x, y, e: x, name="shift_up", norm="Linf", steps=1)
    assert other.identity().config_hash != ident.config_hash     # another function
    assert CallableAttack(_shift_up, name="shift_up", norm="L2", steps=1
                          ).identity().config_hash != ident.config_hash
    assert resolve_attack(atk) is atk
    fp = resolve_attack(atk, options={"amp": "off"})
    assert fp.fn is _shift_up and fp.config.amp == "off" and fp.identity() == ident
    with pytest.raises(RBFError, match="has no steps"):
        resolve_attack(atk, steps=3)
    with pytest.raises(RBFError, match="norm must be one of"):
        CallableAttack(_shift_up, name="x", norm="L1")
    with pytest.raises(RBFError, match="fn must be a function"):
        CallableAttack(3, name="x")
    bad = CallableAttack(lambda m, x, y, e: None, name="bad")
    with pytest.raises(RBFError, match="fn returned NoneType"):
        bad(toy_model, x, y, [2 / 255])


def test_plugin_config_fields_are_options():
    """A plugin attack's dataclass fields are its options, typed by their annotations."""
    @dataclasses.dataclass
    class NoiseConfig(AttackConfig):
        scale: float = 1.0
        draws: int = 1

    class Noise(Attack):
        name = "noise_test_plugin"
        Config = NoiseConfig

        def _attack_eps(self, ctx, x, y, eps, *, seed, sample_ids):
            g = torch.Generator().manual_seed(seed)
            return x + self.config.scale * eps * torch.randn(x.shape, generator=g).sign()

    a = Noise(scale="1/2", draws="3")
    assert (a.config.scale, a.config.draws) == (0.5, 3)
    with pytest.raises(RBFError, match="'noise_test_plugin' has no option 'steps'"):
        Noise(steps=3)
    assert a.steps is None and a.identity().label == "noise_test_plugin_linf"


def test_torchattacks_needs_a_class_name():
    with pytest.raises(RBFError, match="needs a class name: write torchattacks:<Name>"):
        resolve_attack("torchattacks")
