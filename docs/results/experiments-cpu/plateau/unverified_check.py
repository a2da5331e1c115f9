"""For the given sample indices of the bench's synthetic set: PGD-10 per-eps successes and
float32-unverified claims under bf16/float32 and CE/margin loss, and, for bf16, the engine's own
claims and the float32 / bf16 predictions at the iterate it kept (docs/experiments.md).

Usage: python unverified_check.py CKPT N IDS(comma-separated) OUT.json"""
import json, sys, torch
from robustbench_fundus.bench.evaluate import resolve_model, DEFAULT_SYNTH_SEED
from robustbench_fundus.data.synth import SyntheticDataset
from robustbench_fundus.data.geometry import estimate_geometry
from robustbench_fundus.data.graham import graham
from robustbench_fundus.attacks import get_attack
from robustbench_fundus.attacks.pgd import pgd_sweep
from robustbench_fundus.attacks.base import Context
torch.set_grad_enabled(False)
ckpt, n, sel, outp = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")], sys.argv[4]
m = resolve_model(ckpt).module.eval()
ds = SyntheticDataset(n, 128, seed=DEFAULT_SYNTH_SEED)
items = [ds[i] for i in sel]
x_raw = torch.stack([it["image"] for it in items]).float() / 255
y = torch.tensor([int(it["label"]) for it in items]); ids = torch.tensor([int(it["index"]) for it in items])
x = graham(x_raw, estimate_geometry(x_raw))
eps = [0.5/255, 1/255, 2/255, 2.5/255, 4/255, 8/255]
rep = {"ids": ids.tolist()}
for v, cfg in {"ce_bf16": dict(amp="bf16"), "margin_bf16": dict(amp="bf16", loss="margin"),
               "ce_fp32": dict(amp="off"), "margin_fp32": dict(amp="off", loss="margin")}.items():
    with torch.enable_grad():
        r = get_attack("pgd", steps=10, **cfg)(m, x, y, eps, seed=0, sample_ids=ids, keep_adv=True)
    d = {"n_success": r.counts.n_success, "n_unverified": r.counts.n_unverified,
         "flags": [f["name"] for f in r.flags]}
    if v == "ce_bf16":
        # engine-level view: at which eps/step did the bf16 forward claim a break?
        ctx = Context(device=x.device, amp=True, channels_last=False, model=m)
        with torch.enable_grad():
            raw = pgd_sweep(ctx, x, y, eps, norm="Linf", steps=10, step_size=None, step_ratio=2.5,
                            random_start=True, warm_start=False, seed=0, sample_ids=ids)
        d["engine_claimed_at_eps"] = [int((st >= 0).sum()) for _, st in raw]
        xa2 = raw[2][0]  # the kept iterate at 2/255
        z32 = m(xa2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z16 = m(xa2).float()
        top2 = z32.topk(2, 1).values
        d["fp32_margin_top2_at_claimed_iterate"] = [round(float(a), 4) for a in (top2[:, 0] - top2[:, 1])]
        d["fp32_pred_at_claimed_iterate"] = z32.argmax(1).tolist()
        d["bf16_pred_at_claimed_iterate"] = z16.argmax(1).tolist()
        d["label"] = y.tolist()
    rep[v] = d
    print(v, d, flush=True)
json.dump(rep, open(outp, "w"), indent=1)
