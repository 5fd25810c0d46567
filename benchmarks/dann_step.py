"""DANN training step on an ImageNet backbone: images/s of bf16 autocast + channels_last (and torch.compile) against
fp32, and of the shared trainer against a bare hand-written DANN loop, all measured in one run.

Made for a GPU (issue 15's figures: ResNet-50 DANN step, aim bf16 + channels_last ≥ 2× fp32 and trainer / bare ≥
0.95): each variant is a fresh model trained --steps DANN steps (batch --batch-size source + --batch-size target,
random uint8 images already at --image-size, so the data costs nothing and the step is what is timed) after
--warmup untimed steps; variants are interleaved (A, B, C, … per round, median of --repeats rounds) so machine
load hits all alike. The trainer's time is its own training-loop clock (`Trainer.train_seconds`); the bare loop is
what a user writes by hand: the same model, the same DANN loss (gradient reversal with the same λ schedule, the
same discriminator) and SGD. `--compile` adds a variant whose backbone is `nn.Module.compile()`d in place.

    python benchmarks/dann_step.py [--device cuda] [--backbone resnet50] [--image-size 224] [--batch-size 32]
                                   [--steps 30] [--warmup 5] [--repeats 3] [--compile] [--out result.json]

On CPU (this project's build machines) it runs as a smoke test at a tiny size: --device cpu --backbone resnet18
--image-size 32 --batch-size 4 --steps 2 --warmup 1 --repeats 1; bf16 autocast on CPU is not a speed-up there.
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
from domainadapt.methods.grl import grad_reverse, grl_coefficient  # noqa: E402
from domainadapt.models import build_model  # noqa: E402
from domainadapt.seeding import seed_everything  # noqa: E402
from domainadapt.train import TrainConfig, Trainer  # noqa: E402

NUM_CLASSES = 31  # Office-31's head


def make_domain(n: int, size: int, seed: int) -> DigitDomain:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    return DigitDomain(f"bench{seed}", images, torch.arange(n) % NUM_CLASSES, tuple(str(c) for c in range(NUM_CLASSES)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model(args: argparse.Namespace, compiled: bool) -> torch.nn.Module:
    seed_everything(0)
    model = build_model(args.backbone, NUM_CLASSES, args.image_size, {"weights": None, "bottleneck": 256})
    if compiled:
        model.backbone.compile()
    return model


def trainer_images_per_s(args: argparse.Namespace, amp: str, channels_last: bool, compiled: bool,
                         source: DigitDomain, target: DigitDomain) -> float:
    config = TrainConfig(method="dann", backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size,
                         steps=args.warmup + args.steps, schedule="dann", optimizer="sgd", lr=0.01, momentum=0.9,
                         device=args.device, amp=amp, channels_last=channels_last, progress=False,
                         log_every=10_000, checkpoint_every=0)
    model = _model(args, compiled)
    method = build_method("dann", MethodContext(model.feature_dim, NUM_CLASSES, config.steps))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, model, method, source_train=source, target_train=target, eval_sets={}, run_dir=tmp)
        step_times: list[float] = []
        original = trainer.train_step

        def timed_step() -> None:  # per-step clock, so the warm-up steps (compilation, cudnn autotune) drop out
            sync(trainer.device)
            t0 = time.perf_counter()
            original()
            sync(trainer.device)
            step_times.append(time.perf_counter() - t0)

        trainer.train_step = timed_step  # type: ignore[method-assign]
        trainer.fit()
    timed = step_times[args.warmup:]
    return 2 * args.batch_size * len(timed) / sum(timed)


def bare_images_per_s(args: argparse.Namespace, amp: str, channels_last: bool, source: DigitDomain,
                      target: DigitDomain) -> float:
    """The hand-written DANN loop: concatenated forward, CE on the source half, BCE of a discriminator behind a
    gradient reversal (the library's DANN module supplies the discriminator and the λ schedule, so the loss is the
    same); bf16 autocast and channels_last as asked."""
    device = torch.device(args.device)
    steps = args.warmup + args.steps
    model = _model(args, False).to(device)
    method = build_method("dann", MethodContext(model.feature_dim, NUM_CLASSES, steps)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [*model.parameters(), *method.parameters()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    dtype = torch.bfloat16 if amp == "bf16" else None
    g = torch.Generator().manual_seed(0)
    b = args.batch_size
    model.train()
    times = []
    for step in range(steps):
        xs, ys = source.get_batch(torch.randint(0, len(source), (b,), generator=g))
        xt, _ = target.get_batch(torch.randint(0, len(target), (b,), generator=g))
        sync(device)
        t0 = time.perf_counter()
        x = torch.cat([xs, xt]).to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ys = ys.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            features, logits = model.features_and_logits(x)
            domain_logits = method.discriminator(grad_reverse(features, grl_coefficient(step / steps))).reshape(-1)
            labels = torch.cat([torch.ones(b, device=device), torch.zeros(b, device=device)])
            loss = F.cross_entropy(logits[:b], ys) + F.binary_cross_entropy_with_logits(domain_logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    timed = times[args.warmup:]
    return 2 * b * len(timed) / sum(timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32, help="per domain (source and target each)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="add a bf16 + channels_last + compiled variant")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible (run with --device cpu for a smoke test)")
    n = max(4 * args.batch_size, 64)
    source, target = make_domain(n, args.image_size, 0), make_domain(n, args.image_size, 1)
    variants = {
        "trainer_fp32": lambda: trainer_images_per_s(args, "none", False, False, source, target),
        "trainer_bf16_cl": lambda: trainer_images_per_s(args, "bf16", True, False, source, target),
        "bare_bf16_cl": lambda: bare_images_per_s(args, "bf16", True, source, target),
    }
    if args.compile:
        variants["trainer_bf16_cl_compiled"] = lambda: trainer_images_per_s(args, "bf16", True, True, source, target)
    rounds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, measure in variants.items():
            rounds[name].append(measure())
    med = {k: statistics.median(v) for k, v in rounds.items()}
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "backbone": args.backbone, "image_size": args.image_size, "batch_size": f"{args.batch_size} + {args.batch_size}",
        "steps": args.steps, "warmup": args.warmup, "images_per_s": med,
        "bf16_cl_over_fp32": med["trainer_bf16_cl"] / med["trainer_fp32"],
        "trainer_over_bare": med["trainer_bf16_cl"] / med["bare_bf16_cl"],
        "aims": "bf16_cl_over_fp32 >= 2, trainer_over_bare >= 0.95", "rounds": rounds,
    }
    if args.compile:
        result["compiled_over_fp32"] = med["trainer_bf16_cl_compiled"] / med["trainer_fp32"]
    for name, value in med.items():
        print(f"{name:26s} {value:9.1f} images/s")
    print(f"bf16 + channels_last / fp32 = {result['bf16_cl_over_fp32']:.2f} (aim ≥ 2), "
          f"trainer / bare = {result['trainer_over_bare']:.3f} (aim ≥ 0.95)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
