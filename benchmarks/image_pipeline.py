"""Image pipeline: images/s of our file-backed training stream over a bare torchvision ImageFolder + DataLoader.

Ours: `load_domain("lazy_folder:…")` → ImageFileDomain with the da_train pipeline (square resize to 256·s/224,
RandomResizedCrop s, flip; transforms.v2) read by InfiniteBatchStream with --workers DataLoader workers, items
fetched as (index, draw_seed) pairs, each augmented under its own forked, seeded generator. Bare: what a user
writes by hand, `torchvision.datasets.ImageFolder` + `DataLoader(shuffle=True, batch_size, num_workers=N)` with
the same v2 transforms (transforms.build_transform("da_train", s)). Both decode the same generated folder of
JPEGs (--images files of random sizes around 300×250, as Office-31's, so the resize costs what it does there;
10 classes). The two are timed alternately in one process (A, B, A, B …, median of --repeats rounds; each
round starts fresh workers, discards a warm-up batch, then times --batches batches) so machine load hits both
alike; a third contender reads the same images from 8 WebDataset shards (`shards:`, one seek per image). Aim:
ratio ours/bare ≥ 0.95.

    python benchmarks/image_pipeline.py [--images 2000] [--workers 2] [--batch-size 32] [--image-size 224]
                                        [--batches 40] [--repeats 3] [--out result.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domainadapt.data import load_domain, load_file_parts, write_shards  # noqa: E402
from domainadapt.data.streams import InfiniteBatchStream  # noqa: E402
from domainadapt.data.transforms import build_transform  # noqa: E402

NUM_CLASSES = 10


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    """n JPEGs under root/class_<c>/, sides drawn around 300×250; smooth colour fields plus noise, so each file
    compresses and decodes like a photo rather than like white noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(NUM_CLASSES):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = int(rng.integers(240, 361)), int(rng.integers(200, 301))
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BILINEAR)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        image.save(root / f"class_{i % NUM_CLASSES}" / f"{i:06d}.jpg", quality=90)


def time_batches(batches: Iterator, count: int, batch_size: int) -> float:
    """Discard one warm-up batch (worker start-up, first reads), then time `count` batches; images/s."""
    next(batches)
    t0 = time.perf_counter()
    for _ in range(count):
        x, _ = next(batches)
        if x.shape[0] != batch_size:
            raise RuntimeError(f"a batch of {x.shape[0]} images, expected {batch_size}")
    return count * batch_size / (time.perf_counter() - t0)


def ours(name: str, args: argparse.Namespace, round_index: int) -> float:
    domain = load_domain(name, image_size=args.image_size).with_transform("da_train")
    stream = InfiniteBatchStream(domain, args.batch_size, seed=round_index, num_workers=args.workers)
    try:
        return time_batches(stream, args.batches, args.batch_size)
    finally:
        del stream
        gc.collect()  # shut the round's workers down before the next round starts its own


def endless(loader: torch.utils.data.DataLoader) -> Iterator:
    """The loader's batches, epoch after epoch (persistent workers: no restart at an epoch's end)."""
    while True:
        yield from loader


def bare(root: Path, args: argparse.Namespace, round_index: int) -> float:
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(root), transform=build_transform("da_train", args.image_size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0,
                                         generator=torch.Generator().manual_seed(round_index))

    try:
        return time_batches(endless(loader), args.batches, args.batch_size)
    finally:
        del loader
        gc.collect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per round (after a warm-up batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        t0 = time.perf_counter()
        make_folder(root, args.images)
        generate_s = time.perf_counter() - t0
        write_shards(load_file_parts(f"lazy_folder:{root}"), Path(tmp) / "shards", max_count=max(1, args.images // 8))
        bare_rounds, our_rounds, shard_rounds = [], [], []
        for r in range(args.repeats):
            our_rounds.append(ours(f"lazy_folder:{root}", args, r))
            bare_rounds.append(bare(root, args, r))
            shard_rounds.append(ours(f"shards:{Path(tmp) / 'shards'}", args, r))
    result = {
        "images": args.images,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "batches_per_round": args.batches,
        "threads": torch.get_num_threads(),
        "generate_seconds": round(generate_s, 2),
        "bare_images_per_s": statistics.median(bare_rounds),
        "ours_images_per_s": statistics.median(our_rounds),
        "ratio_ours_over_bare": statistics.median(our_rounds) / statistics.median(bare_rounds),
        "shards_images_per_s": statistics.median(shard_rounds),
        "ratio_shards_over_bare": statistics.median(shard_rounds) / statistics.median(bare_rounds),
        "aim": "ratio_ours_over_bare >= 0.95",
        "rounds": {"bare": bare_rounds, "ours": our_rounds, "shards": shard_rounds},
    }
    print(f"bare ImageFolder + DataLoader {result['bare_images_per_s']:8.1f} images/s")
    print(f"ImageFileDomain + stream      {result['ours_images_per_s']:8.1f} images/s")
    print(f"the same from 8 shards      {result['shards_images_per_s']:8.1f} images/s")
    print(f"ratio ours/bare = {result['ratio_ours_over_bare']:.3f} (aim ≥ 0.95; {args.repeats} rounds, median), "
          f"shards/bare = {result['ratio_shards_over_bare']:.3f}")
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
