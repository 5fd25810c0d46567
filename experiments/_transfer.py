"""What experiments/negative_transfer.py and experiments/strategies.py share: the recipe, the options, and the
fine-tuning config on a few labelled target examples."""

from __future__ import annotations

import argparse
from pathlib import Path

from domainadapt.train import TrainConfig

RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=5e-4, backbone="digits_cnn", backbone_kwargs={"batch_norm": True},
              progress=False, checkpoint_every=250)  # an interrupted sweep resumes each run (not in the run key)


def add_common_args(parser: argparse.ArgumentParser, default_out: Path) -> None:
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", nargs="+", type=int, help="labelled target examples per class; 0 = all")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pre-steps", type=int, help="source pretraining steps (default: the preset's)")
    parser.add_argument("--ft-steps", type=int, help="fine-tuning steps (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=default_out)


def resolve(args: argparse.Namespace, presets: dict[str, dict]) -> tuple[dict, list[int], int, int]:
    """(preset, sizes, pretraining steps, fine-tuning steps) after the command-line overrides."""
    preset = dict(presets["quick" if args.quick else "standard"])
    return preset, args.sizes or preset["sizes"], args.pre_steps or preset["pre_steps"], args.ft_steps or preset["ft_steps"]


def pretrain_config(source: str, target: str, seed: int, steps: int, image_size: int, device: str) -> TrainConfig:
    """Source-only training: the pretrained model every transfer strategy starts from."""
    return TrainConfig(method="source_only", source=source, target=target, seed=seed, steps=steps, batch_size=64,
                       image_size=image_size, device=device, **RECIPE)


def finetune_config(target: str, per_class: int, seed: int, steps: int, image_size: int, device: str,
                    **extra: object) -> TrainConfig:
    """Training on `per_class` labelled target examples per class (0: all); the batch is at most the labelled set."""
    return TrainConfig(method="target_oracle", source=target, target=target, seed=seed, steps=steps,
                       batch_size=min(64, 10 * per_class) if per_class else 64, target_per_class=per_class or None,
                       image_size=image_size, device=device, **RECIPE, **extra)
