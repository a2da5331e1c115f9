"""Investigate PGD survivors at the largest eps for a checkpoint on the bench's synthetic set.

Usage (from the repository root, CPU):
  python docs/results/experiments-cpu/plateau/plateau_check.py CKPT N OUT.json [VARIANTS]
CKPT: a `rbf train` checkpoint; N: as `rbf bench --data synthetic:N`; VARIANTS: comma-separated
of ce, margin, ce_bf16, margin_bf16, ce_noRS, ce_warm (PGD-10 with CE / margin loss, bf16
autocast forced on, no random start, warm start). Written for docs/experiments.md ("The PGD
plateau of the H100 run"); outputs beside this file (pilot_*: pilot-n1200 baseline, main_*:
the main run's baseline, checkpoints not kept)."""
import json, sys, time
import torch, torch.nn.functional as F
from robustbench_fundus.bench.evaluate import resolve_model, DEFAULT_SYNTH_SEED
from robustbench_fundus.data.synth import SyntheticDataset
from robustbench_fundus.data.geometry import estimate_geometry
from robustbench_fundus.data.graham import graham
from robustbench_fundus.attacks import get_attack
from robustbench_fundus.attacks.pgd import unit_noise

ckpt, n, outp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
variants = sys.argv[4].split(",") if len(sys.argv) > 4 else ["ce", "margin", "ce_bf16", "ce_noRS"]
torch.set_grad_enabled(False)
mi = resolve_model(ckpt)
m = mi.module.eval()
ds = SyntheticDataset(n, 128, seed=DEFAULT_SYNTH_SEED)
items = [ds[i] for i in range(n)]
x_raw = torch.stack([it["image"] for it in items]).float() / 255
y = torch.tensor([int(it["label"]) for it in items])
ids = torch.tensor([int(it["index"]) for it in items])
x = graham(x_raw, estimate_geometry(x_raw))
eps = [0.5/255, 1/255, 2/255, 2.5/255, 4/255, 8/255]
logits = m(x)
cc = logits.argmax(1) == y
rep = {"ckpt": ckpt, "n": n, "clean_correct": int(cc.sum())}

def margin(z, yy):
    zy = z.gather(1, yy[:, None]).squeeze(1)
    other = z.scatter(1, yy[:, None], float("-inf")).amax(1)
    return zy - other

res = {}
for v in variants:
    cfg = dict(steps=10)
    if v.startswith("margin"): cfg["loss"] = "margin"
    if "bf16" in v: cfg["amp"] = "bf16"
    if "noRS" in v: cfg["random_start"] = False
    if "warm" in v: cfg["warm_start"] = True
    atk = get_attack("pgd", **cfg)
    t = time.time()
    with torch.enable_grad():
        r = atk(m, x, y, eps, seed=0, sample_ids=ids, keep_adv=False)
    res[v] = r
    rep[v] = {"n_success": r.counts.n_success, "n_attacked": r.counts.n_attacked,
              "success_rate": [round(s, 4) for s in r.success_rate],
              "flags": [f["name"] for f in r.flags],
              "grad_checked": r.counts.grad_checked, "grad_zero": r.counts.grad_zero,
              "huge_checked": r.counts.huge_checked, "huge_unbroken": r.counts.huge_unbroken,
              "seconds": round(time.time() - t, 1)}
    print(v, rep[v], flush=True)

base = res["ce"]
survmask = torch.zeros_like(cc)
for v, r in res.items():
    sv = cc & ~r.per_eps[-1].success
    rep[f"survivors8_{v}_ids"] = ids[sv].tolist()
    survmask |= sv
surv = survmask.nonzero().squeeze(1)
rep["survivors_ids"] = ids[surv].tolist()
rep["survivors_labels"] = y[surv].tolist()
# margins of clean correct images: survivors vs broken
mg = margin(logits, y)
broken8 = cc & base.per_eps[-1].success
rep["clean_margin_survivors"] = [round(float(a), 2) for a in mg[surv]]
rep["clean_margin_broken_median"] = float(mg[broken8].median()) if broken8.any() else None
rep["clean_margin_all_correct_quantiles"] = [round(float(q), 2) for q in torch.quantile(mg[cc], torch.tensor([0.1, 0.5, 0.9, 0.99]))]
rep["clean_pred_survivors"] = logits[surv].argmax(1).tolist()
rep["label_counts_correct"] = torch.bincount(y[cc], minlength=5).tolist()
rep["label_counts_survivors"] = torch.bincount(y[surv], minlength=5).tolist()
# gradients of the CE loss at the clean point and at the 8/255 random start, for survivors
def grads(xx, yy, loss, amp=False):
    with torch.enable_grad():
        xx = xx.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            z = m(xx).float()
        if loss == "ce":
            l = F.cross_entropy(z, yy, reduction="sum")
        else:
            l = (-margin(z, yy)).sum()
        g, = torch.autograd.grad(l, xx)
    return z.detach(), g
if surv.numel():
    xs, ys = x[surv], y[surv]
    for where in ("clean", "start8"):
        xx = xs
        if where == "start8":
            noise = unit_noise("Linf", tuple(x.shape[1:]), 0, ids[surv], x.device, key=8/255)
            xx = (xs + noise * 8/255).clamp(0, 1)
        for loss in ("ce", "margin", "ce_bf16"):
            z, g = grads(xx, ys, loss.split("_")[0], amp=loss.endswith("bf16"))
            gf = g.flatten(1)
            p = F.softmax(z, 1).gather(1, ys[:, None]).squeeze(1)
            rep[f"{where}_{loss}"] = {
                "margin": [round(float(a), 2) for a in margin(z, ys)],
                "p_true_min": float(p.min()),
                "ce_loss": [float(a) for a in F.cross_entropy(z, ys, reduction="none")][:40],
                "grad_all_zero": int((gf == 0).all(1).sum()),
                "grad_nonfinite": int((~torch.isfinite(gf)).any(1).sum()),
                "grad_linf_median": float(gf.abs().amax(1).median()),
                "grad_frac_zero_entries_median": float((gf == 0).float().mean(1).median())}
    # which variants break the survivors
    for v, r in res.items():
        rep[f"survivors_broken_at8_by_{v}"] = int(r.per_eps[-1].success[surv].sum())
    # for broken (by ce) images, compare
json.dump(rep, open(outp, "w"), indent=1)
print(json.dumps({k: v for k, v in rep.items() if k not in variants}, indent=1))
