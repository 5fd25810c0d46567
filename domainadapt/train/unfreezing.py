"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT, sec. 3.2) as the trainer applies it."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..models.blocks import _in_block, split_blocks


class GradualUnfreezing:
    """Howard & Ruder 2018 (ULMFiT), sec. 3.2: train the head first, then unfreeze the next backbone block from
    the top every `every` steps, until everything trains.

    Stage s = min(step // every, number of backbone blocks): the head and the top s backbone blocks train.
    Only `managed` parameters are touched (the trainer passes those in its optimizer, so parameters frozen by
    `config.freeze` stay frozen). Which parameters train is a pure function of the step, so a resumed run
    unfreezes exactly where an uninterrupted one does."""

    def __init__(self, model: nn.Module, every: int, managed: Iterable[torch.Tensor] | None = None) -> None:
        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"gradual unfreezing needs a period of >= 1 steps, got {every!r}")
        self.every = every
        backbone, head = split_blocks(model)
        self.blocks = [b for b, _ in head] + [b for b, _ in reversed(backbone)]  # in order of unfreezing
        self.num_stages = len(backbone) + 1
        stage_of: dict[str, int] = {}
        for _, prefixes in head:
            stage_of.update({p: 0 for p in prefixes})
        for s, (_, prefixes) in enumerate(reversed(backbone), start=1):
            stage_of.update({p: s for p in prefixes})
        wanted = None if managed is None else {id(p) for p in managed}
        self.params: list[tuple[str, torch.Tensor, int]] = []
        for name, p in model.named_parameters():
            if (wanted is None and p.requires_grad) or (wanted is not None and id(p) in wanted):
                stage = next(s for prefix, s in stage_of.items() if _in_block(name, [prefix]))
                self.params.append((name, p, stage))
        self._head_count = len(head)

    def stage(self, step: int) -> int:
        return min(step // self.every, self.num_stages - 1)

    def trainable_blocks(self, step: int) -> list[str]:
        """Names of the blocks that train at `step` (before `config.freeze`)."""
        return self.blocks[: self._head_count + self.stage(step)]

    def apply(self, step: int) -> bool:
        """Set requires_grad for `step`; True when it changed (the caller re-runs set_train_mode, so BatchNorm
        of still-frozen blocks stays in eval mode and unfrozen ones start updating their statistics)."""
        stage, changed = self.stage(step), False
        for _, p, s in self.params:
            want = s <= stage
            if p.requires_grad != want:
                p.requires_grad_(want)
                changed = True
        return changed
