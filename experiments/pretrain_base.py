"""Pretrain a small base language model from scratch on general English, for DAPT to continue (experiments/dapt.py).

Gururangan et al. 2020 ("Don't Stop Pretraining", ACL) continue a GENERAL masked LM (RoBERTa, with its head) on
domain text. No package ships one, and all-MiniLM-L6-v2 (the offline text model) is a sentence encoder without a
masked-LM head, so this script builds the paper's setting at CPU scale:
  text       GCIDE definitions + WordNet 3.0 glosses, minus every document sharing an 8-word window with FOLDOC or
             the Jargon File (`domainadapt.text.general`), minus the general "control" part (kept unseen for the
             ¬DAPT row) and the held-out part (the general held-out loss). FOLDOC / Jargon are never read as
             training text, and neither is any test entry of the FOLDOC task.
  tokenizer  WordPiece (--vocab entries) trained on that text only; saved under OUT/tokenizer-v<vocab>/. The default
             8,192 entries are pinned: experiments/base_vocab/general-wordpiece-8192.txt holds the vocabulary trained
             on this text once, because the WordPiece trainer is not deterministic (huggingface/tokenizers#1794) and
             a different vocabulary is a different base. --train-tokenizer trains one anew instead.
  model      BERT (--kind masked; BertForMaskedLM with its head) or GPT-2 (--kind causal), --size mini (4 × 256) or
             tiny (2 × 128), randomly initialised with --seed (OUT/init-<kind>-<size>[-s<seed>]/)
  training   the shared trainer (task masked_lm / causal_lm), AdamW, linear warm-up and decay, masking and batch
             order drawn from --seed; bf16 autocast where the device computes bf16 natively (--amp auto: a CUDA GPU
             that supports it, or a CPU with AVX512-BF16 / AMX through oneDNN: the mini BERT's 3,000 steps took 19.4
             min in bf16 against 31.1 in float32 on 2 such cores, 1.60×; elsewhere float32); checkpoints every --checkpoint-every steps, so
             a killed run resumes exactly where its last checkpoint left it (run the same command again)
  output     OUT/<kind>-<size>[-s<seed>]/: a Hugging Face model folder (save_pretrained; AutoModelForMaskedLM /
             AutoModelForCausalLM load it), written whole or not at all; OUT/<kind>-<size>[-s<seed>].json: its
             training time and held-out loss. Seed 0 writes the folder experiments/dapt.py continues by default.

    apt-get install dict-foldoc dict-jargon dict-gcide wordnet-base     (or: make text-data)
    python experiments/pretrain_base.py                     # masked, mini: the default base of experiments/dapt.py
    python experiments/pretrain_base.py --kind causal       # the causal base
    python experiments/pretrain_base.py --size tiny --steps 1000   # the scaling comparison's small base
    python experiments/pretrain_base.py --seed 1            # another draw of the same recipe (its spread)
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
TRAINED = "trained on the base text"  # tokenizer_source of a vocabulary that no pinned file holds
PINNED_VOCABS = REPO / "experiments" / "base_vocab"  # general-wordpiece-<entries>.txt, one entry per line


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


def pinned_vocab(vocab: int) -> Path | None:
    """The shipped vocabulary with `vocab` entries, if there is one."""
    path = PINNED_VOCABS / f"general-wordpiece-{vocab}.txt"
    return path if path.is_file() else None


def tokenizer_folder(out: Path, vocab: int, texts: list[str] | None = None, pinned: Path | None = None) -> Path:
    """OUT/tokenizer-v<vocab>/, made the first time (written whole or not at all): read from the `pinned`
    vocabulary when one is given, else trained on `texts` (default: the base text). An existing folder is kept,
    except that one holding a pinned vocabulary is an error when training is asked for (the base would mix two)."""
    from domainadapt.text.base_model import train_wordpiece, wordpiece_from_vocab

    folder = out / f"tokenizer-v{vocab}"
    if pinned is None and folder.is_dir() and (source := tokenizer_source(folder)) != TRAINED:
        raise ValueError(f"--train-tokenizer, but {folder} holds the pinned vocabulary {source}: remove it, or "
                         "choose another --out")
    if not folder.is_dir():
        if pinned is not None:
            tokenizer = wordpiece_from_vocab(pinned)
            if len(tokenizer) != vocab:
                raise ValueError(f"{pinned} holds {len(tokenizer)} entries, not --vocab {vocab}")
        else:
            tokenizer = train_wordpiece(texts if texts is not None else base_training_texts(), vocab)
        partial = folder.with_name(folder.name + ".partial")
        tokenizer.save_pretrained(partial)
        partial.replace(folder)
    return folder


def tokenizer_source(folder: Path) -> str:
    """Where the tokenizer in `folder` came from: the pinned vocabulary whose entries it holds, or training."""
    from transformers import AutoTokenizer

    from domainadapt.text.base_model import vocab_lines

    lines = vocab_lines(AutoTokenizer.from_pretrained(folder))
    for path in sorted(PINNED_VOCABS.glob("general-wordpiece-*.txt")):
        if path.read_text(encoding="utf-8") == lines:
            return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    return TRAINED


def base_name(kind: str, size: str, seed: int) -> str:
    """<kind>-<size>, with -s<seed> for any seed but 0 (seed 0 is the base experiments/dapt.py finds)."""
    return f"{kind}-{size}" + (f"-s{seed}" if seed else "")


def init_folder(out: Path, kind: str, size: str, tokenizer_dir: Path, max_positions: int, seed: int = 0) -> Path:
    """OUT/init-<base_name>/: the model randomly initialised from `seed`, and the tokenizer, as a model folder."""
    import torch
    from transformers import AutoTokenizer

    from domainadapt.text.base_model import fresh_model, save_model_folder

    folder = out / f"init-{base_name(kind, size, seed)}"
    if not folder.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        torch.manual_seed(seed)
        save_model_folder(folder, fresh_model(kind, size, tokenizer, max_positions=max_positions), tokenizer)
    return folder


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 matrix products natively: a CUDA GPU that supports bf16, or a CPU whose
    oneDNN has bf16 kernels (AVX512-BF16 or AMX). Elsewhere bf16 autocast is emulated and slower than float32."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device == "cpu":
        try:  # no public API answers this for the CPU; the private op exists in every torch this project supports
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def pretrain_config(args: argparse.Namespace, backbone: Path) -> TrainConfig:
    return TrainConfig(task=TASKS[args.kind], method=TASKS[args.kind], backbone=str(backbone), source="none",
                       target=TRAIN_CORPUS, task_kwargs={"block_size": args.block_size, "heldout_blocks": 256},
                       steps=args.steps, batch_size=args.batch, optimizer="adamw", lr=args.lr, weight_decay=0.01,
                       schedule="linear", warmup_steps=max(1, args.steps // 10), seed=args.seed, device=args.device,
                       progress=args.progress, eval_every=args.eval_every or max(1, args.steps // 4),
                       checkpoint_every=args.checkpoint_every, eval_batch_size=64,
                       amp=("bf16" if native_bf16(args.device) else "none") if args.amp == "auto" else args.amp)


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
    parser.add_argument("--amp", choices=["auto", "none", "bf16"], default="auto",
                        help="bf16 autocast; auto: where the device computes bf16 natively (see above)")
    parser.add_argument("--seed", type=int, default=0, help="the initial weights, the masking and the batch order")
    parser.add_argument("--train-tokenizer", action="store_true",
                        help="train the WordPiece vocabulary on the base text even where a pinned one ships")
    parser.add_argument("--progress", action="store_true", help="a tqdm bar")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "block_size", "vocab", "checkpoint_every"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.seed < 0:
        print(f"error: --seed must be at least 0, not {args.seed}", file=sys.stderr)
        return 2
    missing = missing_prerequisites()
    if missing:
        print("error: this script needs\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    name = base_name(args.kind, args.size, args.seed)
    final = args.out / name
    if final.exists():
        print(f"{final} exists (remove it to pretrain again)")
        return 0
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    pinned = None if args.train_tokenizer else pinned_vocab(args.vocab)
    try:
        tokenizer_dir = tokenizer_folder(args.out, args.vocab, pinned=pinned)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    backbone = init_folder(args.out, args.kind, args.size, tokenizer_dir, max_positions=max(512, args.block_size),
                           seed=args.seed)
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
    summary = {"folder": str(final), "run": str(run_dir), "kind": args.kind, "size": args.size, "seed": args.seed,
               "steps": args.steps, "amp": config.amp,
               "tokenizer": tokenizer_source(tokenizer_dir),
               "tokens_seen": args.steps * args.batch * args.block_size, "train_seconds": result["train_seconds"],
               "heldout_loss": result["metrics"][f"domain_heldout/{metric}"],
               "heldout_perplexity": result["metrics"]["domain_heldout/perplexity"],
               "train_docs": result["sizes"]["target_train_docs"], "export_check": card["check"],
               "wall_seconds": time.perf_counter() - t0}
    atomic_write_text(args.out / f"{name}.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
