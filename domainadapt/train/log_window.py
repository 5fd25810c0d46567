"""What a log step averages: the training losses and the method's reports since the previous log step."""

from __future__ import annotations

from typing import Any

import torch

from ..distributed import DistContext


class LogWindow:
    """Per-term loss sums over the optimizer steps since the last flush (each micro-step's value divided by
    grad_accum, so a step adds its mean), the step count, and each value the method reported (`Method.report`)
    with its count. Everything stays on the device (no host sync per step); `flush` is the one all-reduce of
    training; `state_dict` goes into every checkpoint, so a resumed run logs the same means."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.loss_count = 0
        self.report_sums: dict[str, tuple[Any, int]] = {}  # name -> (sum, count)

    def add_forward(self, losses: dict[str, torch.Tensor], total: torch.Tensor, accum: int,
                    reports: dict[str, tuple[Any, int]]) -> None:
        """One training forward (micro-step): its loss terms and total, and what the method reported in it."""
        for name, value in losses.items():
            self.loss_sums[name] = self.loss_sums.get(name, 0.0) + value.detach().float() / accum
        self.loss_sums["total"] = self.loss_sums.get("total", 0.0) + total.detach() / accum
        for name, (value, count) in reports.items():  # logged, never trained
            previous, n = self.report_sums.get(name, (0.0, 0))
            self.report_sums[name] = (previous + value, n + count)

    def end_step(self) -> None:
        self.loss_count += 1

    def non_finite_loss(self) -> str | None:
        """The name of a loss term whose running sum is not finite, or None."""
        return next((n for n, v in self.loss_sums.items() if not bool(torch.isfinite(torch.as_tensor(v)).all())),
                    None)

    def flush(self, dist: DistContext) -> dict[str, float]:
        """Mean loss per term since the last flush (`train/<name>`) and the mean of each reported value
        (`method/<name>`), averaged over ranks in one all-reduce; then the window starts again."""
        if not self.loss_sums:
            return {}
        names = sorted(self.loss_sums)
        values = torch.stack([torch.as_tensor(self.loss_sums[n], device=self.device).float() for n in names])
        reported = sorted(self.report_sums)
        means = [torch.as_tensor(self.report_sums[n][0], device=self.device).double() / self.report_sums[n][1]
                 for n in reported]
        values = dist.all_reduce_sum(torch.cat([values.double(), *(m.reshape(1) for m in means)]))
        losses = values[: len(names)] / (dist.world_size * self.loss_count)
        reports = values[len(names):] / dist.world_size
        self.loss_sums, self.loss_count, self.report_sums = {}, 0, {}
        return {**{f"train/{n}": v for n, v in zip(names, losses.tolist())},
                **{f"method/{n}": v for n, v in zip(reported, reports.tolist())}}

    def state_dict(self) -> dict[str, Any]:
        return {"loss_sums": {k: v.detach().cpu() for k, v in self.loss_sums.items()}, "loss_count": self.loss_count,
                "report_sums": {k: (torch.as_tensor(v).detach().cpu(), c) for k, (v, c) in self.report_sums.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From a trainer checkpoint (its `loss_sums`, `loss_count` and, since method reports, `report_sums`)."""
        self.loss_sums = {k: v.to(self.device) for k, v in state["loss_sums"].items()}
        self.loss_count = int(state["loss_count"])
        self.report_sums = {k: (v.to(self.device), int(c)) for k, (v, c) in state.get("report_sums", {}).items()}
