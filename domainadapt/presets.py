"""Named recipes: config fields a paper or a tutorial fixes, applied under the user's own (`domainadapt train
--preset NAME`: the preset first, then the --config file, then the flags given, then --strategy).

A recipe given in epochs is expressed as steps here, from the task's training-set size (`Task.train_size`):
steps = ⌈epochs · n_train / batch_size⌉, warm-up = round(warmup_ratio · steps), unless steps / warmup_steps are
given explicitly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .tasks import get_task
from .train.config import TrainConfig


@dataclass(frozen=True)
class Preset:
    doc: str
    fields: dict[str, Any] = field(default_factory=dict)
    epochs: float | None = None
    warmup_ratio: float = 0.0


PRESETS: dict[str, Preset] = {
    # Devlin et al. 2019 (BERT, sec. 4 / appendix A.3: Adam lr among 2e-5..5e-5, batch 16 or 32, 2-4 epochs, linear
    # decay after a 10% warm-up; weight decay 0.01), the defaults of Hugging Face's run_glue / Trainer recipe.
    "bert_finetune": Preset(
        doc="fine-tune a BERT-style encoder on labelled text: AdamW lr 2e-5, weight decay 0.01, batch 16, 3 epochs, "
            "linear decay after a 10% warm-up",
        fields=dict(task="text_classification", method="source_only", optimizer="adamw", lr=2e-5, weight_decay=0.01,
                    batch_size=16, schedule="linear"),
        epochs=3, warmup_ratio=0.1),
}


def preset_fields(name: str) -> dict[str, Any]:
    """The config fields preset `name` sets (an unknown name is one error listing the presets)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name].fields)


def finish_preset(config: TrainConfig, name: str, given: set[str]) -> TrainConfig:
    """The preset's epochs as steps (and its warm-up ratio as steps), unless `given` holds steps / warmup_steps."""
    preset = PRESETS[name]
    if preset.epochs is None or "steps" in given:
        changes: dict[str, Any] = {}
        if preset.warmup_ratio and "warmup_steps" not in given:
            changes["warmup_steps"] = round(preset.warmup_ratio * config.steps)
        return dataclasses.replace(config, **changes) if changes else config
    task = get_task(config.task)
    n = task.train_size(config, task.options(config))
    if n is None:
        raise ValueError(f"preset '{name}' counts {preset.epochs:g} epochs, which needs the training-set size; task "
                         f"'{config.task}' does not report it: give --steps")
    steps = max(1, math.ceil(preset.epochs * n / config.batch_size))
    changes = {"steps": steps}
    if "warmup_steps" not in given:
        changes["warmup_steps"] = round(preset.warmup_ratio * steps)
    return dataclasses.replace(config, **changes)
