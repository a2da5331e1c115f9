"""One trusted path through the benchmark: every advertised attack runs from `rbf bench` on the
demo model (a plugin's from its entry point too), results of different attack configs never
shadow each other, eps added later carry the breaks of the smaller eps already stored, and the
preprocessing a model gets is the stage's and is stated in the report."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from _bench_helpers import tensor_data, tiny_model
from _plugin import plugin_env
from robustbench_fundus import evaluate
from robustbench_fundus.attacks import Attack, AttackConfig
from robustbench_fundus.bench import DataOptions, RunOptions, load_entries, render
from robustbench_fundus.cli import main

MUST = ["pgd", "pgd_l2", "fgsm", "autoattack", "torchattacks:PGD", "torchattacks:FGSM"]
ARGS = ["--data", "synthetic:16", "--corruptions", "none", "--eps", "1/255,4/255",
        "--no-progress", "--json"]


def _cases():
    for name in MUST:
        if name == "autoattack":
            # AutoAttack (standard) costs about 7 minutes of CPU at 1/255 on the trained demo
            # model (Square's 5000 queries and FAB-T on the survivors of APGD): the exact command
            # runs with -m expensive; the default suite runs it where APGD breaks most images
            yield pytest.param(name, "1/255,4/255", marks=pytest.mark.expensive,
                               id="autoattack-1/255")
            yield pytest.param(name, "4/255,8/255", id="autoattack-4/255")
        else:
            yield pytest.param(name, "1/255,4/255", id=name)


@pytest.mark.parametrize("name, eps", _cases())
def test_demo_model_bench_runs_every_advertised_attack(name, eps, tmp_path, capsys):
    args = [a if a != "1/255,4/255" else eps for a in ARGS]
    rc = main(["bench", *args, "--attack", name, "--store", str(tmp_path / "r.sqlite")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    d = json.loads(out.out)
    assert len(d["attacks"]) == 2 and d["dataset"]["n"] == 16
    assert {a["norm"] for a in d["attacks"]} == {"l2" if name == "pgd_l2" else "linf"}
    assert d["provenance"]["preprocessing"]["enhancement"] == "graham"
    assert d["provenance"]["preprocessing"]["source"] == "model"


PLUGIN = textwrap.dedent('''
    import torch
    from robustbench_fundus.attacks import Attack, AttackConfig

    class Darken(Attack):
        """Darkens the image by eps (a throw-away plugin attack)."""
        name = "darken"
        norm = "Linf"
        Config = AttackConfig
        description = "plugin test: subtract eps"

        def _attack_eps(self, ctx, x, y, eps, *, seed, sample_ids):
            return (x - eps).clamp(0, 1)
''')


def test_plugin_attack_from_an_entry_point_runs_from_rbf_bench(tmp_path):
    env = plugin_env(tmp_path, "rbf_darken_plugin", PLUGIN, "robustbench_fundus.attacks",
                     "darken = rbf_darken_plugin:Darken", "rbf-darken-plugin")
    res = subprocess.run([sys.executable, "-m", "robustbench_fundus", "bench", *ARGS,
                          "--attack", "darken", "--store", str(tmp_path / "r.sqlite")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert [a["name"] for a in d["attacks"]] == ["darken", "darken"]
    assert d["attacks"][0]["label"] == "darken_linf"
    listing = subprocess.run([sys.executable, "-m", "robustbench_fundus", "list", "attacks",
                              "--json"], env=env, capture_output=True, text=True, timeout=300)
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["darken"]["source"] == "plugin:rbf-darken-plugin"


def test_pgd_1_and_pgd_10_in_one_store_are_told_apart(tmp_path):
    store = tmp_path / "r.sqlite"
    m = tiny_model(32, seed=1)
    x, y = tensor_data(8, 32)
    kw = dict(corruptions="none", attack="pgd", eps="2/255,8/255", store=store, name="tiny")
    r1 = evaluate(m, (x, y), steps=1, **kw)
    r10 = evaluate(m, (x, y), steps=10, **kw)
    assert r10.provenance["conditions_computed"] == 2  # PGD-10 is not read from PGD-1's rows
    entries = load_entries(str(store))
    assert len(entries) == 1
    rows = list(csv.DictReader(io.StringIO(render(entries, "csv"))))
    for lab, rep in (("pgd_linf_1", r1), ("pgd_linf_10", r10)):
        for eps_text, eps in (("2/255", 2 / 255), ("8/255", 8 / 255)):
            col = f"{lab}@{eps_text}"
            assert col in rows[0], list(rows[0])
            want = rep.attack(eps).success_rate
            assert float(rows[0][col]) == pytest.approx(want)
    md = render(entries, "md")
    assert "pgd_linf_1@2/255" in md and "pgd_linf_10@2/255" in md
    # two configs sharing a label (same steps, another step rule) get their hash added
    evaluate(m, (x, y), steps=10, attack_options={"step_ratio": 1.0}, **kw)
    header = render(load_entries(str(store)), "csv").splitlines()[0].split(",")
    tagged = [h for h in header if h.startswith("pgd_linf_10~") and h.endswith("@2/255")
              and "_robust_acc" not in h]
    assert len(tagged) == 2


class _Threshold(nn.Module):
    """Grade 0 while the mean pixel is below 0.5 + 0.5/255, grade 1 above: an input with mean
    0.5 is one 8-bit level from the boundary."""
    input_size = (8, 8)
    preprocessing = "none"

    def forward(self, x):
        m = x.flatten(1).mean(1)
        z = (m - (0.5 + 0.5 / 255)) * 1e4
        return torch.stack([-z, z, *(torch.full_like(z, -1e6) for _ in range(3))], 1)


class _TurnBack(Attack):
    """Up by eps below 3/255, down by eps above: breaks the threshold model at 1/255 only, so a
    sweep over (1/255, 8/255) breaks at 8/255 only by carrying the 1/255 break over."""
    name = "turn_back"
    norm = "Linf"
    Config = AttackConfig

    def __init__(self, config=None, **kw):
        kw.setdefault("sanity_samples", 0)
        super().__init__(config, **kw)

    def _attack_eps(self, ctx, x, y, eps, *, seed, sample_ids):
        return x + (eps if eps < 3 / 255 else -eps)


def test_eps_added_later_carry_over_the_smaller_stored_eps(tmp_path):
    x = torch.full((4, 3, 8, 8), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    model = _Threshold()
    kw = dict(corruptions="none", attack=_TurnBack())
    alone = evaluate(model, (x, y), eps="8/255", **kw).attack(8 / 255)
    assert alone.n_broken == 0                      # on its own, 8/255 breaks nothing
    one_shot = evaluate(model, (x, y), eps="1/255,8/255", **kw).attack(8 / 255)
    assert one_shot.n_broken == 4                   # in a sweep, the 1/255 breaks carry over
    store = tmp_path / "r.sqlite"
    evaluate(model, (x, y), eps="1/255", store=store, **kw)
    later = evaluate(model, (x, y), eps="1/255,8/255", store=store, **kw)
    assert later.provenance["conditions_computed"] == 1
    assert later.attack(8 / 255).n_broken == 4      # stored later, equal to the one-shot sweep
    assert later.attack(1 / 255).n_broken == 4


class _Bare(nn.Module):
    """A bare module: no `preprocessing`, no `input_size` attribute."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def test_a_bare_module_gets_the_stage_default_and_the_report_says_so():
    from robustbench_fundus.data.dataset import collate
    from robustbench_fundus.data.synth import SyntheticDataset
    from robustbench_fundus.preprocessing import resolve_preprocessing
    inner = tiny_model(32, seed=2)
    bare = _Bare(inner).eval()
    rep = evaluate(bare, "synthetic:8", corruptions="none", attack=None,
                   data_options=DataOptions(size=32), run=RunOptions(batch_size=8))
    pre = rep.provenance["preprocessing"]
    assert pre["enhancement"] == "graham" and pre["source"] == "default"
    assert "preprocessing_assumed" in {f.code for f in rep.flags}
    # the clean numbers are those of the stage's model input
    from robustbench_fundus.bench.resolve import DEFAULT_SYNTH_SEED
    batch = collate([SyntheticDataset(8, 32, seed=DEFAULT_SYNTH_SEED)[i] for i in range(8)])
    x = batch["image"].float() / 255
    stage = resolve_preprocessing(bare)
    with torch.no_grad():
        pred = bare(stage.model_input(x, stage.geometry(x))).argmax(1)
    cm = [[0] * 5 for _ in range(5)]
    for t, p in zip(batch["label"].tolist(), pred.tolist()):
        cm[t][p] += 1
    assert rep.clean.confusion == cm
    # an explicit override is stated as the caller's
    rep2 = evaluate(bare, "synthetic:8", corruptions="none", attack=None, preprocessing="none",
                    data_options=DataOptions(size=32))
    assert rep2.provenance["preprocessing"]["enhancement"] == "none"
    assert rep2.provenance["preprocessing"]["source"] == "caller"
    assert rep2.model["sha256"] != rep.model["sha256"]   # fed differently: another entry
