"""Pretrain a small base language model from scratch on general English, for DAPT to continue (experiments/dapt.py).

Gururangan et al. 2020 ("Don't Stop Pretraining", ACL) continue a GENERAL masked LM (RoBERTa, with its head) on
domain text. No package ships one, and all-MiniLM-L6-v2 (the offline text model) is a sentence encoder without a
masked-LM head, so this script builds the paper's setting at CPU scale:
  text       GCIDE definitions + WordNet 3.0 glosses, minus every document sharing an 8-word window with FOLDOC or
             the Jargon File (`domainadapt.text.general`), minus the general "control" part (kept unseen for the
             ¬DAPT row) and the held-out part (the general held-out loss). FOLDOC / Jargon are never read as
             training text, and neither is any test entry of the FOLDOC task.
  tokenizer  WordPiece (--vocab entries) trained on that text only; saved under OUT/tokenizer-v<vocab>/
  model      BERT (--kind masked; BertForMaskedLM with its head) or GPT-2 (--kind causal), --size mini (4 × 256) or
             tiny (2 × 128), randomly initialised with seed 0 (OUT/init-<kind>-<size>/)
  training   the shared trainer (task masked_lm / causal_lm), AdamW, linear warm-up and decay; checkpoints every
             --checkpoint-every steps, so a killed run resumes exactly where its last checkpoint left it (run the
             same command again)
  output     OUT/<kind>-<size>/: a Hugging Face model folder (save_pretrained; AutoModelForMaskedLM /
             AutoModelForCausalLM load it), written whole or not at all; OUT/<kind>-<size>.json: its training time
             and held-out loss

    apt-get install dict-foldoc dict-jargon dict-gcide wordnet-base     (or: make text-data)
    python experiments/pretrain_base.py                     # masked, mini: the default base of experiments/dapt.py
    python experiments/pretrain_base.py --kind causal       # the causal base
    python experiments/pretrain_base.py --size tiny --steps 1000   # the scaling comparison's small base
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from domainadapt.io import atomic_write_text  # noqa: E402
from domainadapt.runs import check_inputs, run_many, run_name  # noqa: E402
from domainadapt.train import TrainConfig  # noqa: E402

DEFAULT_OUT = REPO / "results" / "base"
TRAIN_CORPUS = "general:base"  # base + held-out documents; the held-out ones are scored, never trained on
TASKS = {"masked": "masked_lm", "causal": "causal_lm"}


def missing_prerequisites() -> list[str]:
    """What this machine lacks, each with the command that installs it."""
    from domainadapt.text.dictd import DictdError, dictd_path
    from domainadapt.text.wordnet import WordNetError, wordnet_dir

    missing = []
    for name in ("gcide", "foldoc", "jargon"):
        try:
            dictd_path(name)
        except DictdError:
            missing.append(f"the {name} dictionary: apt-get install dict-{name}")
    try:
        wordnet_dir()
    except WordNetError:
        missing.append("WordNet: apt-get install wordnet-base")
    return missing


def base_training_texts() -> list[str]:
    """Every document the base's tokenizer and model train on: general:base without its held-out documents."""
    from domainadapt.text.parts import is_heldout
    from domainadapt.text.sources import corpus_texts

    return [t for t in corpus_texts(TRAIN_CORPUS) if not is_heldout(t)]


def tokenizer_folder(out: Path, vocab: int, texts: list[str] | None = None) -> Path:
    """OUT/tokenizer-v<vocab>/, trained on the base text the first time (written whole or not at all)."""
    from domainadapt.text.base_model import train_wordpiece

    folder = out / f"tokenizer-v{vocab}"
    if not folder.is_dir():
        tokenizer = train_wordpiece(texts if texts is not None else base_training_texts(), vocab)
        partial = folder.with_name(folder.name + ".partial")
        tokenizer.save_pretrained(partial)
        partial.replace(folder)
    return folder


def init_folder(out: Path, kind: str, size: str, tokenizer_dir: Path, max_positions: int) -> Path:
    """OUT/init-<kind>-<size>/: the randomly initialised model (seed 0) and the tokenizer, as a model folder."""
    import torch
    from transformers import AutoTokenizer

    from domainadapt.text.base_model import fresh_model, save_model_folder

    folder = out / f"init-{kind}-{size}"
    if not folder.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        torch.manual_seed(0)
        save_model_folder(folder, fresh_model(kind, size, tokenizer, max_positions=max_positions), tokenizer)
    return folder


def pretrain_config(args: argparse.Namespace, backbone: Path) -> TrainConfig:
    return TrainConfig(task=TASKS[args.kind], method=TASKS[args.kind], backbone=str(backbone), source="none",
                       target=TRAIN_CORPUS, task_kwargs={"block_size": args.block_size, "heldout_blocks": 256},
                       steps=args.steps, batch_size=args.batch, optimizer="adamw", lr=args.lr, weight_decay=0.01,
                       schedule="linear", warmup_steps=max(1, args.steps // 10), seed=0, device=args.device,
                       progress=args.progress, eval_every=args.eval_every or max(1, args.steps // 4),
                       checkpoint_every=args.checkpoint_every, eval_batch_size=64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=sorted(TASKS), default="masked")
    parser.add_argument("--size", choices=["mini", "tiny"], default="mini")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32, help="blocks per step")
    parser.add_argument("--block-size", type=int, default=128, help="tokens per block")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--vocab", type=int, default=8192, help="WordPiece vocabulary size")
    parser.add_argument("--eval-every", type=int, help="default: a quarter of the steps")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--progress", action="store_true", help="a tqdm bar")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "block_size", "vocab", "checkpoint_every"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}", file=sys.stderr)
            return 2
    missing = missing_prerequisites()
    if missing:
        print("error: this script needs\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    final = args.out / f"{args.kind}-{args.size}"
    if final.exists():
        print(f"{final} exists (remove it to pretrain again)")
        return 0
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = tokenizer_folder(args.out, args.vocab)
    backbone = init_folder(args.out, args.kind, args.size, tokenizer_dir, max_positions=max(512, args.block_size))
    config = pretrain_config(args, backbone)
    try:
        check_inputs(config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = args.out / "runs" / run_name(config)
    result = run_many([(config, run_dir)], verbose=True)[0]

    from domainadapt.deploy.export import export_run

    card = export_run(run_dir, "hf", final)
    metric = "mlm_loss" if args.kind == "masked" else "lm_loss"
    summary = {"folder": str(final), "run": str(run_dir), "kind": args.kind, "size": args.size, "steps": args.steps,
               "tokens_seen": args.steps * args.batch * args.block_size, "train_seconds": result["train_seconds"],
               "heldout_loss": result["metrics"][f"domain_heldout/{metric}"],
               "heldout_perplexity": result["metrics"]["domain_heldout/perplexity"],
               "train_docs": result["sizes"]["target_train_docs"], "export_check": card["check"],
               "wall_seconds": time.perf_counter() - t0}
    atomic_write_text(args.out / f"{args.kind}-{args.size}.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
