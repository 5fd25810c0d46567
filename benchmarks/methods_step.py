"""Step time of each adaptation method over source-only, measured in one run on the same model and data.

Source-only forwards the source batch only; the alignment methods forward source + target (twice the images)
and add their loss term, so a ratio near 2 is the cost of seeing the target at all, and anything above it is
the method's own term (discriminator, kernel matrices, covariances). Source-free / test-time methods (shot, tent)
forward the target batch only; mcd makes 2 + num_k updates per step; shot's time includes its refresh at step 0
(one forward pass over the 2,000 target images). The digits CNN has BatchNorm here (the digits recipe's; tent
trains only it). adabn is not timed: it makes no training step (one pass over the target set, then evaluation).

    python benchmarks/methods_step.py [--steps 60] [--repeats 3] [--methods dann dan coral ...] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domainadapt.data.domain import DigitDomain  # noqa: E402
from domainadapt.methods import MethodContext, available_methods, build_method  # noqa: E402
from domainadapt.models import build_model  # noqa: E402
from domainadapt.models.classifier import fresh_copy  # noqa: E402
from domainadapt.train import TrainConfig, Trainer  # noqa: E402
from domainadapt.seeding import seed_everything  # noqa: E402


NOT_TIMED = ("source_only", "masked_lm", "target_oracle", "adabn")  # baseline, another task, target labels, no step


def make_domain(n: int, size: int, seed: int) -> DigitDomain:
    g = torch.Generator().manual_seed(seed)
    return DigitDomain(f"bench{seed}", torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                       torch.arange(n) % 10)


def steps_per_second(method: str, config: TrainConfig, source: DigitDomain, target: DigitDomain) -> float:
    seed_everything(0)
    model = build_model(config.backbone, 10, config.image_size, backbone_kwargs={"batch_norm": True})
    m = build_method(method, MethodContext(model.feature_dim, 10, config.steps, new_head=lambda: fresh_copy(model.head)))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(**{**config.to_dict(), "method": method}), model, m, source_train=source,
                          target_train=target, eval_sets={}, run_dir=tmp)
        trainer.fit()
    return config.steps / trainer.train_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=[m for m in available_methods() if m not in NOT_TIMED],
                        help="default: every registered adaptation method")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, device=args.device, progress=False,
                         schedule="dann", log_every=50)
    source, target = make_domain(2000, 32, 0), make_domain(2000, 32, 1)
    names = ["source_only", *args.methods]
    rounds: dict[str, list[float]] = {n: [] for n in names}
    steps_per_second("source_only", TrainConfig(**{**config.to_dict(), "steps": 5}), source, target)  # warm-up
    for _ in range(args.repeats):  # interleaved, so machine load hits every method alike
        for name in names:
            rounds[name].append(steps_per_second(name, config, source, target))
    base = statistics.median(rounds["source_only"])
    result = {"device": args.device, "threads": torch.get_num_threads(), "steps": args.steps, "batch_size": args.batch_size,
              "steps_per_s": {n: statistics.median(v) for n, v in rounds.items()},
              "step_time_over_source_only": {n: base / statistics.median(v) for n, v in rounds.items()}}
    print(f"{'method':12s} {'steps/s':>9s} {'step time / source_only':>24s}")
    for n in names:
        print(f"{n:12s} {result['steps_per_s'][n]:9.2f} {result['step_time_over_source_only'][n]:24.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
