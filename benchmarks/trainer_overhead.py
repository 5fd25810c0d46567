"""Trainer overhead: steps/s of the shared trainer over a bare hand-written PyTorch loop.

Same model (digits CNN), same in-memory data, same batch, same optimizer and LR schedule, source-only loss;
the two are timed alternately in one process (median of --repeats rounds) so machine load hits both alike.
The trainer's time is its own training-loop clock (`Trainer.train_seconds`), which leaves out the final
evaluation and checkpoint that a bare loop does not do. Aim: ratio ≥ 0.95.

    python benchmarks/trainer_overhead.py [--steps 150] [--repeats 3] [--device cpu] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domainadapt.data.domain import DigitDomain  # noqa: E402
from domainadapt.methods import MethodContext, build_method  # noqa: E402
from domainadapt.models import build_model  # noqa: E402
from domainadapt.train import TrainConfig, Trainer  # noqa: E402
from domainadapt.train.schedules import lr_factor  # noqa: E402
from domainadapt.seeding import seed_everything  # noqa: E402


def make_domain(n: int, size: int) -> DigitDomain:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return DigitDomain("bench", images, torch.arange(n) % 10)


def bare_loop(domain: DigitDomain, config: TrainConfig, device: torch.device) -> float:
    """The loop a user would write by hand; returns steps/s."""
    seed_everything(config.seed)
    model = build_model(config.backbone, 10, config.image_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(config.schedule, config.steps))
    g = torch.Generator().manual_seed(0)
    perm, pos = torch.randperm(len(domain), generator=g), 0
    model.train()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(config.steps):
        if pos + config.batch_size > len(domain):
            perm, pos = torch.randperm(len(domain), generator=g), 0
        x, y = domain.get_batch(perm[pos : pos + config.batch_size])
        pos += config.batch_size
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    sync(device)
    return config.steps / (time.perf_counter() - t0)


def trainer_loop(domain: DigitDomain, config: TrainConfig, workdir: Path) -> float:
    seed_everything(config.seed)
    model = build_model(config.backbone, 10, config.image_size)
    method = build_method("source_only", MethodContext(model.feature_dim, 10, config.steps))
    trainer = Trainer(config, model, method, source_train=domain, target_train=domain, eval_sets={}, run_dir=workdir)
    trainer.fit()
    return config.steps / trainer.train_seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    domain = make_domain(4000, args.image_size)
    config = TrainConfig(source="bench", target="bench", image_size=args.image_size, steps=args.steps,
                         batch_size=args.batch_size, schedule="dann", device=args.device, progress=False,
                         log_every=50)
    bare, ours = [], []
    bare_loop(domain, TrainConfig(**{**config.to_dict(), "steps": 10}), device)  # warm-up
    for _ in range(args.repeats):
        bare.append(bare_loop(domain, config, device))
        with tempfile.TemporaryDirectory() as tmp:
            ours.append(trainer_loop(domain, config, Path(tmp)))
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "bare_steps_per_s": statistics.median(bare),
        "trainer_steps_per_s": statistics.median(ours),
        "ratio_trainer_over_bare": statistics.median(ours) / statistics.median(bare),
        "rounds": {"bare": bare, "trainer": ours},
    }
    print(f"bare loop      {result['bare_steps_per_s']:8.2f} steps/s")
    print(f"shared trainer {result['trainer_steps_per_s']:8.2f} steps/s")
    print(f"ratio trainer/bare = {result['ratio_trainer_over_bare']:.3f} (aim ≥ 0.95; {args.repeats} rounds, median)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
