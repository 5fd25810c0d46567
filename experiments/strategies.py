"""Which transfer strategy wins at which target data size? And does gradual unfreezing converge faster?

From a source model (mnist, source-only), fine-tune on labelled target examples (mnist_m by default) with
  scratch             random init: the control;
  feature_extraction  backbone frozen (BatchNorm statistics too), head trained;
  partial             the top backbone block + head trained;
  full                everything trained, one learning rate;
  gradual             head first, one more backbone block every N steps (Howard & Ruder 2018, ULMFiT §3.2);
  discriminative      every block trained, lr × (1/2.6)^depth from the top (ULMFiT §3.2).
Table 1: target test accuracy mean ± std over seeds per strategy × labelled size (per class), the winner marked
(best mean; "tied" when its interval overlaps the runner-up's). Table 2: steps until the target test accuracy
first reaches 95% of its final value (evaluated every --eval-every steps; the target test split stands in for a
validation set, so read it as a convergence measure, not for model selection), gradual vs full: the claim to
test is ~30% fewer steps for gradual unfreezing.

    python experiments/strategies.py [--quick] [--source mnist] [--target mnist_m] [--seeds 0 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from domainadapt.evaluation import mean_std, t_interval  # noqa: E402
from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.runs import check_inputs, run_many, run_name  # noqa: E402
from domainadapt.strategies import apply_strategy  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

from _transfer import add_common_args, finetune_config, pretrain_config, resolve  # noqa: E402  (experiments/)

STRATEGIES = ["scratch", "feature_extraction", "partial", "full", "gradual", "discriminative"]
PRESETS = {"quick": dict(pre_steps=500, ft_steps=400, image_size=28, sizes=[10, 100, 0]),
           "standard": dict(pre_steps=2000, ft_steps=1500, image_size=32, sizes=[5, 20, 100, 0])}


def steps_to_fraction(curve: list[tuple[int, float]], final: float, fraction: float = 0.95) -> int:
    """First evaluated step whose accuracy reaches `fraction` × the final accuracy (the last step if none)."""
    for step, acc in curve:
        if acc >= fraction * final:
            return step
    return curve[-1][0]


def accuracy_curve(run_dir: Path, final_step: int, final_acc: float) -> list[tuple[int, float]]:
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "target_test/acc" in record and record.get("event") != "final":
            curve.append((int(record["step"]), float(record["target_test/acc"])))
    return sorted(curve) + [(final_step, final_acc)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="mnist")
    parser.add_argument("--target", default="mnist_m")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--eval-every", type=int, help="default: fine-tuning steps / 20")
    add_common_args(parser, REPO / "results" / "strategies")
    args = parser.parse_args(argv)
    p, sizes, pre_steps, ft_steps = resolve(args, PRESETS)
    eval_every = args.eval_every or max(1, ft_steps // 20)
    runs = args.out / "runs"
    t0 = time.perf_counter()

    pre = {s: pretrain_config(args.source, args.target, s, pre_steps, p["image_size"], args.device) for s in args.seeds}
    jobs: dict[tuple[str, int, int], TrainConfig] = {}
    for k in sizes:
        for s in args.seeds:
            base = finetune_config(args.target, k, s, ft_steps, p["image_size"], args.device, eval_every=eval_every)
            for strategy in args.strategies:
                init = None if strategy == "scratch" else str(runs / run_name(pre[s]))
                options = {"blocks": 1} if strategy == "partial" else {}
                jobs[(strategy, k, s)] = apply_strategy(base, strategy, init_from=init, **options)
    try:
        for c in [*pre.values(), *(c for c in jobs.values() if c.init_from is None)]:
            check_inputs(c)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    run_many([(c, runs / run_name(c)) for c in pre.values()], args.jobs)
    dirs = [runs / run_name(c) for c in jobs.values()]
    results = run_many(list(zip(jobs.values(), dirs)), args.jobs)
    rows = []
    for (strategy, k, s), r, d in zip(jobs, results, dirs):
        acc = r["metrics"]["target_test/acc"]
        curve = accuracy_curve(d, r["steps"], acc)
        rows.append({"strategy": strategy, "per_class": k, "seed": s, "acc": acc,
                     "steps_to_95": steps_to_fraction(curve, acc)})
    frame = pd.DataFrame(rows)
    wall = time.perf_counter() - t0

    table1 = {}
    for k, g in frame.groupby("per_class", sort=False):
        stats = {st: mean_std(100 * gs.acc) for st, gs in g.groupby("strategy", sort=False)}
        ranked = sorted(stats, key=lambda st: -stats[st][0])
        intervals = {st: t_interval(100 * g[g.strategy == st].acc) if stats[st][2] > 1 else (np.nan, np.nan)
                     for st in ranked[:2]}
        tied = len(ranked) > 1 and intervals[ranked[0]][0] <= intervals[ranked[1]][1]
        col = {}
        for st, (m, sd, n) in stats.items():
            mark = " **(best)**" if st == ranked[0] and not tied else f" (best; {ranked[1]} within its interval)" \
                if st == ranked[0] else ""
            col[st] = f"{m:.1f} ± {sd:.1f}{mark}"
        table1["all" if k == 0 else f"{k}/class"] = col
    table1 = pd.DataFrame(table1)

    conv = []
    for k, g in frame[frame.strategy.isin(["gradual", "full"])].groupby("per_class", sort=False):
        gr = g[g.strategy == "gradual"].set_index("seed").steps_to_95
        fu = g[g.strategy == "full"].set_index("seed").steps_to_95
        if len(gr) and len(fu):
            ratio = (gr / fu.loc[gr.index]).to_numpy(dtype=float)
            conv.append({"size": "all" if k == 0 else f"{k}/class", "full: steps to 95%": f"{fu.mean():.0f} ± {fu.std():.0f}",
                         "gradual: steps to 95%": f"{gr.mean():.0f} ± {gr.std():.0f}",
                         "gradual / full": f"{ratio.mean():.2f}" + (
                             f" [{t_interval(ratio)[0]:.2f}, {t_interval(ratio)[1]:.2f}]" if len(ratio) > 1 else "")})
    table2 = pd.DataFrame(conv)
    text = (f"Transfer strategies {args.source} → {args.target}: target test accuracy (%), mean ± std over seeds "
            f"{args.seeds}; pretraining {pre_steps} steps, fine-tuning {ft_steps} steps, {p['image_size']}px, digits CNN "
            f"+ BN, Adam 1e-3. Best = highest mean; tied when its 95% interval overlaps the runner-up's. "
            f"Wall time {wall / 60:.1f} min.\n\n" + table1.to_markdown() +
            f"\n\nSteps until target test accuracy first reaches 95% of its final value (evaluated every {eval_every} "
            "steps); gradual / full as the per-seed ratio with a 95% interval:\n\n" + table2.to_markdown(index=False) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "runs.csv", frame.to_csv(index=False))
    atomic_write_text(args.out / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
