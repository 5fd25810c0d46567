"""Image memory: peak RSS of a short training run from a folder of JPEGs, lazy (`lazy_folder:`) vs eager (`folder:`).

The eager path decodes every image into one uint8 tensor in RAM, N×3×S×S bytes (20,000 images at 224 px: 3.0 GB)
before the first step; the lazy path (ImageFileDomain) keeps paths and labels and decodes per item in DataLoader
workers, so its memory is O(batch) whatever N is. Each path trains in its own subprocess, so each peak is its own:
the child reads `resource.getrusage(RUSAGE_SELF).ru_maxrss` (the training process) and `RUSAGE_CHILDREN` (its
largest finished child) at the end. Data: --images small JPEGs (sides 48..80 px, fast
to generate) in two folders (source and target, half each, 10 classes); both paths resize them to --image-size,
so the eager tensor is as large as full-size photos would make it. Run: --steps DANN steps (source and target
streams), batch 32, digits_cnn backbone, num_workers 2 for the lazy path (0 for the eager one: its batches are
one gather), then the final evaluation on a small held-out split (--test-fraction) in batches of --batch-size.
Backbone: --backbone (default mobilenet_v3_small with random weights, a real ImageNet-size network whose
activations at 224 px are small; digits_cnn keeps full-resolution conv maps, several hundred MB at 224 px, and
its 134,832 features would make DANN's default 1024-unit discriminator 138 M parameters). DANN's discriminator
is fc100 → 1 (Ganin et al.'s MNIST one).

The model's parameters and activations and the torch libraries (~0.4 GB) count in both peaks alike; the data is
the difference. `worker_peak` comes from RUSAGE_CHILDREN: the largest finished child (a DataLoader worker, or a
helper such as ctypes' find_library), counting the pages it shares with the training process.
`model` is a third child: the same network's steps on random tensors of the same batch (no data at all), the
floor of both; the data overheads are each peak minus it. Aim: lazy peak < 1.5 GB (training process), far below
the eager one. On the CUDA build of torch, importing torch + torchvision alone is ~0.67 GB, and a 224-px batch of
32 + 32 through mobilenet_v3_small with gradients ~1.25 GB more, so at that batch the floor itself is above
1.5 GB; --batch-size 8 shows the aim for the whole process.

    python benchmarks/image_memory.py [--images 20000] [--image-size 224] [--steps 10] [--backbone mobilenet_v3_small]
                                      [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NUM_CLASSES = 10
AIM_LAZY_MB = 1536


def make_folder(root: Path, n: int, seed: int) -> None:
    """n small JPEGs under root/class_<c>/, random sides in 48..80 px."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(NUM_CLASSES):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(48, 81, 2))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"class_{i % NUM_CLASSES}" / f"{i:06d}.jpg", quality=85)


def bare_model_steps(args: argparse.Namespace) -> None:
    """The floor no data path can go below: the same network trained for --steps steps on random tensors of the
    same batch (source + target, 2 × --batch-size), with a fc100 → 1 domain head as DANN's, no data at all."""
    import torch
    import torch.nn.functional as F

    from domainadapt.models import build_model

    model = build_model(args.backbone, NUM_CLASSES, args.image_size,
                        {} if args.backbone == "digits_cnn" else {"weights": None})
    domain_head = torch.nn.Sequential(torch.nn.Linear(model.feature_dim, 100), torch.nn.ReLU(), torch.nn.Linear(100, 1))
    params = [*model.parameters(), *domain_head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    b = args.batch_size
    for _ in range(args.steps):
        x = torch.rand(2 * b, 3, args.image_size, args.image_size)
        features, logits = model.features_and_logits(x)
        domain = torch.cat([torch.ones(b, 1), torch.zeros(b, 1)])
        loss = F.cross_entropy(logits[:b], torch.randint(0, NUM_CLASSES, (b,))) + \
            F.binary_cross_entropy_with_logits(domain_head(features), domain)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def child(args: argparse.Namespace) -> int:
    """One training run (in this fresh process); prints its peaks as one JSON line."""
    from domainadapt.runs import run
    from domainadapt.train import TrainConfig

    if args.child == "model":
        t0 = time.perf_counter()
        bare_model_steps(args)
        return _report(0, time.perf_counter() - t0)

    prefix = "lazy_folder:" if args.child == "lazy" else "folder:"
    config = TrainConfig(
        source=f"{prefix}{args.data / 'source'}", target=f"{prefix}{args.data / 'target'}", method="dann",
        method_kwargs={"hidden": [100]}, backbone=args.backbone,
        backbone_kwargs={} if args.backbone == "digits_cnn" else {"weights": None}, image_size=args.image_size, steps=args.steps, batch_size=args.batch_size,
        test_fraction=args.test_fraction, eval_batch_size=args.batch_size, log_every=args.steps,
        num_workers=args.workers if args.child == "lazy" else 0, device="cpu", progress=False,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        run(config, run_dir)
    return _report(config.num_workers, time.perf_counter() - t0)


def _report(num_workers: int, seconds: float) -> int:
    kb = 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb,
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb,  # largest child
        "num_workers": num_workers,
        "seconds": round(seconds, 1),
    }))
    return 0


def measure(mode: str, data: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--data", str(data),
           "--image-size", str(args.image_size), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--workers", str(args.workers), "--backbone", args.backbone, "--test-fraction", str(args.test_fraction)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{mode} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000, help="source and target together")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the lazy path")
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--backbone", default="mobilenet_v3_small", help="digits_cnn or a torchvision model name")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=("lazy", "eager", "model"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t0 = time.perf_counter()
        make_folder(data / "source", args.images // 2, seed=0)
        make_folder(data / "target", args.images - args.images // 2, seed=1)
        generate_s = time.perf_counter() - t0
        lazy = measure("lazy", data, args)
        eager = measure("eager", data, args)
        model = measure("model", data, args)
    s = args.image_size
    result = {
        "images": args.images,
        "image_size": s,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "backbone": args.backbone,
        "generate_seconds": round(generate_s, 1),
        "eager_tensor_mb": args.images * 3 * s * s / 2**20,
        "lazy_peak_rss_mb": lazy["peak_rss_mb"],
        "eager_peak_rss_mb": eager["peak_rss_mb"],
        "lazy_worker_peak_rss_mb": lazy["worker_peak_rss_mb"],
        "model_only_peak_rss_mb": model["peak_rss_mb"],
        "lazy_data_overhead_mb": lazy["peak_rss_mb"] - model["peak_rss_mb"],
        "eager_data_overhead_mb": eager["peak_rss_mb"] - model["peak_rss_mb"],
        "aim": f"lazy_peak_rss_mb < {AIM_LAZY_MB}",
        "aim_met": lazy["peak_rss_mb"] < AIM_LAZY_MB,
        "runs": {"lazy": lazy, "eager": eager, "model": model},
    }
    print(f"model only:        peak RSS {model['peak_rss_mb']:8.0f} MB (the network's steps on random tensors, "
          f"no data)")
    print(f"eager folder:      peak RSS {eager['peak_rss_mb']:8.0f} MB "
          f"(image tensor alone {result['eager_tensor_mb']:.0f} MB)")
    print(f"lazy lazy_folder:  peak RSS {lazy['peak_rss_mb']:8.0f} MB "
          f"({lazy['num_workers']} workers, largest child {lazy['worker_peak_rss_mb']:.0f} MB; aim < {AIM_LAZY_MB} MB)")
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
