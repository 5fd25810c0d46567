"""Forgetting: fine-tuning on a target domain overwrites the source; how much does each remedy keep?

Per seed: train on mnist (the "pretrained" model); fine-tune it on target labels of mnist_m with
  finetune    plain fine-tuning;
  ewc λ       + (λ/2) Σ F_i (θ_i − θ*_i)², F the exact per-sample diagonal Fisher on mnist (Kirkpatrick et al. 2017);
  online_ewc  online EWC (Schwarz et al. 2018): one anchor, F ← γF + F_new (differs from ewc over a sequence);
  l2sp α      + (α/2)‖θ − θ⁰‖² (Li et al. 2018);
  frozen      the backbone frozen (BatchNorm statistics too), only the head trained.
Table 1 per target: mnist accuracy before and after, target accuracy, forgetting (before − after); mean ± std.
Table 2, a sequence mnist → mnist_m → syndigits: the accuracy matrix gives average accuracy and BWT per method
(Lopez-Paz & Ranzato 2017). `paper_figures/forgetting_tradeoff.py` plots source vs target accuracy across λ / α.

Regimes: --optimizer sgd --lr (fine-tuning only), --no-batch-norm (BatchNorm running statistics are buffers, not
parameters: EWC cannot hold them, and with BatchNorm they carry much of the forgetting), --target-per-class N (few
target labels). The table also gives the fraction of parameters whose mnist Fisher is exactly 0 (`fisher_coverage`):
weights of units that never fire on mnist, which EWC leaves free however large λ is.

    python experiments/forgetting.py [--seeds 0 1 2] [--steps 1000] [--targets mnist_m syndigits] [--out results/forgetting]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from domainadapt.evaluation.forgetting import average_accuracy, backward_transfer  # noqa: E402
from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.report import format_mean_std  # noqa: E402
from domainadapt.runs import check_inputs, run_many, run_name  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

RECIPE = dict(batch_size=64, optimizer="adam", lr=1e-3, schedule="dann", weight_decay=5e-4, backbone="digits_cnn",
              backbone_kwargs={"batch_norm": True}, progress=False, checkpoint_every=250)
EWC_LAMBDAS = [10.0, 100.0, 1000.0, 10000.0]
L2SP_ALPHAS = [0.1, 1.0]


def variants(best_lambda: float, lambdas: list[float], alphas: list[float], samples: int) -> dict[str, dict]:
    out: dict[str, dict] = {"finetune": {}}
    for lam in sorted(set(lambdas) | {best_lambda}):
        out[f"ewc λ={lam:g}"] = {"regularizers": {"ewc": {"lam": lam, "samples": samples}}}
    out["online_ewc"] = {"regularizers": {"ewc": {"lam": best_lambda, "samples": samples, "online": True, "gamma": 1.0}}}
    for alpha in alphas:
        out[f"l2sp α={alpha:g}"] = {"regularizers": {"l2sp": {"alpha": alpha}}}
    out["frozen"] = {"freeze": ["backbone.*"]}
    return out


def fisher_zero_fraction(pre_dir: Path, samples: int) -> float:
    """Fraction of the pre-trained model's parameters whose Fisher on its mnist training split is exactly 0: the
    directions EWC leaves free (`fisher_coverage`), from the task's own Fisher, the one the EWC runs anchor on."""
    from domainadapt.regularizers.fisher import diagonal_fisher, fisher_coverage
    from domainadapt.runs import checkpoint_file
    from domainadapt.tasks import get_task
    from domainadapt.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint_file(pre_dir))
    config = TrainConfig.from_dict(state["config"])
    task = get_task(config.task)
    setup = task.build(config, task.options(config), state)
    fisher = diagonal_fisher(setup.model, setup.fisher.data, n_samples=samples)  # as the EWC runs' default kind "true"
    return fisher_coverage(fisher)["all"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000, help="steps of pre-training and of each fine-tuning")
    parser.add_argument("--best-lambda", type=float, default=1000.0, help="λ of online EWC and of the sequence")
    parser.add_argument("--lambdas", nargs="+", type=float, default=EWC_LAMBDAS, help="EWC λ grid")
    parser.add_argument("--alphas", nargs="+", type=float, default=L2SP_ALPHAS, help="L2-SP α grid")
    parser.add_argument("--fisher-samples", type=int, default=1000, help="examples of the Fisher")
    parser.add_argument("--targets", nargs="+", default=["mnist_m", "syndigits"],
                        help="fine-tuning targets of table 1; the sequence needs mnist_m")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                        help="optimizer of the fine-tuning runs (sgd: momentum 0.9, the EWC paper's setting; lr annealed); "
                        "pre-training on mnist always uses Adam 1e-3")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (SGD + EWC: λ · max F · lr must stay "
                        "below ~2(1 + momentum) or the step diverges)")
    parser.add_argument("--no-batch-norm", action="store_true",
                        help="the digits CNN without BatchNorm (whose running statistics EWC cannot protect)")
    parser.add_argument("--target-per-class", type=int, default=None,
                        help="labelled examples per class of every fine-tuning target (few labels: the model trains "
                        "longer on fewer examples and drifts further from the source); default all")
    parser.add_argument("--no-sequence", action="store_true", help="skip the sequence mnist → mnist_m → syndigits")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "forgetting")
    args = parser.parse_args(argv)
    if args.target_per_class is not None and args.target_per_class * 10 < RECIPE["batch_size"]:
        print(f"error: --target-per-class {args.target_per_class} leaves {args.target_per_class * 10} labelled digits, fewer "
              f"than one batch of {RECIPE['batch_size']}; use at least {-(-RECIPE['batch_size'] // 10)}", file=sys.stderr)
        return 2
    runs = args.out / "runs"
    t0 = time.perf_counter()
    pre_common = dict(RECIPE, steps=args.steps, device=args.device, backbone_kwargs={"batch_norm": not args.no_batch_norm})
    common = dict(pre_common, optimizer=args.optimizer, lr=args.lr)  # fine-tuning; pre-training keeps the recipe's Adam
    few = {} if args.target_per_class is None else {"target_per_class": args.target_per_class}

    # 1. pre-train on mnist (evaluated on all three domains: row 0 of the accuracy matrix)
    pre = {s: TrainConfig(method="source_only", source="mnist", target="mnist_m", extra_eval=["syndigits"], seed=s,
                          **pre_common) for s in args.seeds}
    try:
        for c in pre.values():
            check_inputs(c)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pre_dirs = {s: runs / run_name(c) for s, c in pre.items()}
    pre_results = dict(zip(args.seeds, run_many([(pre[s], pre_dirs[s]) for s in args.seeds], args.jobs)))

    # 2. fine-tune on each target with every remedy
    table_variants = variants(args.best_lambda, args.lambdas, args.alphas, args.fisher_samples)
    ft_jobs, ft_keys = [], []
    for target in args.targets:
        for name, extra in table_variants.items():
            for s in args.seeds:
                c = TrainConfig(method="target_oracle", source="mnist", target=target, seed=s,
                                extra_eval=[d for d in ("mnist_m", "syndigits") if d != target],
                                init_from=str(pre_dirs[s]), **common, **few, **extra)
                ft_jobs.append((c, runs / run_name(c)))
                ft_keys.append((target, name, s))
    ft_results = dict(zip(ft_keys, run_many(ft_jobs, args.jobs)))
    ft_dirs = dict(zip(ft_keys, [d for _, d in ft_jobs]))

    rows = []
    for (target, name, s), r in ft_results.items():
        before = pre_results[s]["metrics"]["source_test/acc"]
        after = r["metrics"]["source_test/acc"]
        rows.append({"target_domain": target, "variant": name, "seed": s, "source_before": before, "source_after": after,
                     "target": r["metrics"]["target_test/acc"], "forgetting": before - after})
    frame = pd.DataFrame(rows)
    zero_fisher = [fisher_zero_fraction(pre_dirs[s], args.fisher_samples) for s in args.seeds]

    # 3. the sequence mnist → mnist_m → syndigits (step 2 is the first fine-tuning above)
    seq_methods = {"finetune": "finetune", "ewc": f"ewc λ={args.best_lambda:g}", "online_ewc": "online_ewc",
                   "l2sp": f"l2sp α={args.alphas[-1]:g}", "frozen": "frozen"}
    seq_methods = {k: v for k, v in seq_methods.items() if v in table_variants}
    if args.no_sequence or "mnist_m" not in args.targets:
        seq_methods = {}
    seq_jobs, seq_keys = [], []
    for method, variant in seq_methods.items():
        for s in args.seeds:
            extra = dict(table_variants[variant])
            c = TrainConfig(method="target_oracle", source="mnist_m", target="syndigits", extra_eval=["mnist"], seed=s,
                            init_from=str(ft_dirs[("mnist_m", variant, s)]), **common, **few, **extra)
            seq_jobs.append((c, runs / run_name(c)))
            seq_keys.append((method, variant, s))
    seq_results = dict(zip(seq_keys, run_many(seq_jobs, args.jobs)))
    seq_rows = []
    for (method, variant, s), r3 in seq_results.items():
        r1, r2 = pre_results[s]["metrics"], ft_results[("mnist_m", variant, s)]["metrics"]
        m3 = r3["metrics"]
        R = np.array([[r1["source_test/acc"], r1["target_test/acc"], r1["syndigits_test/acc"]],
                      [r2["source_test/acc"], r2["target_test/acc"], r2["syndigits_test/acc"]],
                      [m3["mnist_test/acc"], m3["source_test/acc"], m3["target_test/acc"]]])
        seq_rows.append({"method": method, "seed": s, "avg_acc": average_accuracy(R), "bwt": backward_transfer(R),
                         **{f"R{i}{j}": R[i, j] for i in range(3) for j in range(3)}})
    seq = pd.DataFrame(seq_rows, columns=["method", "seed", "avg_acc", "bwt"] + [f"R{i}{j}" for i in range(3) for j in range(3)])
    wall = time.perf_counter() - t0

    def summary(df: pd.DataFrame, key: str, columns: list[str]) -> pd.DataFrame:
        out = {}
        for name, g in df.groupby(key, sort=False):
            out[name] = {c: format_mean_std(100 * g[c].mean(), 100 * g[c].std(ddof=1), len(g)) for c in columns}
        return pd.DataFrame(out).T

    optim = "Adam" if args.optimizer == "adam" else "SGD (momentum 0.9)"
    bn = "without BatchNorm" if args.no_batch_norm else "+ BatchNorm"
    labels = "all target labels" if args.target_per_class is None else f"{args.target_per_class} target labels per class"
    header = (f"Fine-tuning from mnist ({args.steps} steps each, {labels}, {optim} {args.lr:g} annealed, digits CNN {bn}): "
              f"accuracy (%) "
              f"on mnist test before/after, target test, forgetting = before − after; mean ± std (n seeds). "
              f"Wall time {wall / 60:.1f} min. The mnist Fisher of the pre-trained model is exactly 0 on "
              f"{100 * np.mean(zero_fisher):.1f}% of its parameters (mean over seeds): directions EWC leaves free.")
    text = header + "\n"
    for target, g in frame.groupby("target_domain", sort=False):
        text += f"\n### mnist → {target}\n\n" + summary(g, "variant", ["source_before", "source_after", "target",
                                                                         "forgetting"]).to_markdown() + "\n"
    if len(seq):
        text += ("\nSequence mnist → mnist_m → syndigits: average accuracy after the third task and backward transfer "
                 "(%), mean ± std.\n\n" + summary(seq, "method", ["avg_acc", "bwt"]).to_markdown() + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "table.md", text)
    atomic_write_text(args.out / "finetune.csv", frame.to_csv(index=False))
    atomic_write_text(args.out / "sequence.csv", seq.to_csv(index=False))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
