"""Training health: named warnings from what the trainer already computes, never from target labels.

The trainer hands the monitor two things, only at its log steps (every `log_every` steps and the last one):
- the flushed mean training losses of the window since the previous log step (train/cls, train/domain,
  train/total, ...: means over `log_every` steps, averaged over processes);
- the predicted-class histogram of the TARGET batches of that window: argmax of the target logits of every
  micro-step (`Method.last_target_logits`, the logits the method's own forward made), counted on the device with
  no host sync; read (and all-reduced over processes) at the log step. No label enters it: the monitor's API takes
  none (the trainer loads target labels only for a method that declares `uses_target_labels`, the oracle, and
  even then they go to the method, not here).

The monitor only reads: it draws no random numbers and changes no tensor the training uses, so a run trains the
same bits with it on, warning or not, or off.

Checks (codes), each with a typed threshold in `HealthOptions` (`TrainConfig.health_kwargs`, `--health-arg`):

- `source_at_chance`: train/cls ≥ (1 − chance_tolerance)·ln C after the learning gate (below): the classifier
  has not beaten the uniform guess, whose cross-entropy is ln C. A loss ABOVE ln C (a diverging or oscillating
  run) is not better than chance either, so it is flagged too.
- `discriminator_won`: train/domain (divided by the method's domain-loss weight) < won_threshold for `patience`
  consecutive checks, after the learning gate. A binary cross-entropy of 0.05 means the domain classifier gives
  the right domain a probability of about e^−0.05 ≈ 0.95 on average: the domains are separated, the features are
  not aligned. Gated because DANN's reversal coefficient starts at 0 and ramps up (λ_p = 2/(1+e^−10p) − 1), so an
  early win is expected; `patience` because the mean over one window is noisy (a single window at 0.03 between
  windows at 0.6 is not a won game). The domain-loss weight is the method's own (`weight` of dann,
  `domain_weight` of importance_weighted; `HealthOptions.domain_weight` overrides it), so the thresholds are on
  the binary cross-entropy itself. For importance_weighted (a non-adversarial classifier on detached features) a
  win means the domains are separable and its importance weights will sit at their clip.
- `discriminator_pinned`: for DANN a domain loss at ln 2 ≈ 0.693 (the discriminator cannot tell the domains
  apart) is the GOAL, so it alone is never flagged. Flagged only when it cannot be the goal:
  (a) within pinned_tolerance (1%) of ln 2 AND the source classifier at chance, for `patience` consecutive
      checks after the gate: the features carry no information at all (collapsed to a point), which "aligns"
      the domains trivially; or
  (b) exactly the same value at max(patience, 2) consecutive checks (any time): a mean over `log_every` different
      batches repeats bit for bit only when the discriminator's output no longer depends on its input (dead
      features, a saturated discriminator).
- `target_collapse`: entropy of the target predicted-class histogram < collapse_fraction·ln C after the gate,
  when the window holds at least collapse_min_per_class·C target predictions. The uniform distribution has
  entropy ln C; half of it (C = 10: 1.15 nats, e^1.15 ≈ 3.2 "effective classes") means the predictions cluster
  on a few majority classes, which a real class imbalance of the target rarely explains. Gated because an
  untrained network often maps every input to one class.
- `loss_spike`: train/total non-finite, or > spike_factor × the median of the previous up to spike_window finite
  checks (at least spike_min_history of them) and larger than it by at least spike_min_increase: a median is not
  moved by the spike itself, the factor 3 is far outside the window-to-window noise of a mean over `log_every`
  steps, and the absolute margin keeps a loss near zero (0.01 → 0.03) from counting as a spike. Not gated.

The learning gate: progress ≥ min_progress (25% of the steps) AND step ≥ min_steps (50). The share scales with
the run; the absolute floor because a network sits on an initial plateau for tens of steps whatever the run's
length (the toy domains of the tests: train/cls still 2.25 of ln 10 = 2.30 at step 20 of a healthy 60-step run
at SGD 0.05), and a 3-step smoke run has learned nothing by design.

Records: a code's record is written when it FIRES (inactive → active) and a `health_cleared` record when it
stops holding; it may fire again later. `codes` lists every code that fired, in order of first firing (what
result.json records under "health"). The state goes into the trainer's checkpoint, so a resumed run writes the
records an uninterrupted run writes. `TrainConfig.on_unhealthy`: "warn" (the default) records; "stop" also raises
`UnhealthyRunError` at the log step where a code holds, after its record and before any checkpoint of that step
(the last one is kept; re-running the directory with "warn" continues it); "off" builds no monitor.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..options import parse_options

HEALTH_CODES = ("source_at_chance", "discriminator_won", "discriminator_pinned", "target_collapse", "loss_spike")
ON_UNHEALTHY = ("warn", "stop", "off")
LN2 = math.log(2.0)


class UnhealthyRunError(RuntimeError):
    """`on_unhealthy="stop"`: a health check fired; the record is written and the last checkpoint kept."""


@dataclass(frozen=True)
class HealthOptions:
    """Thresholds of the health checks (see the module docstring for the rationale of each default)."""

    min_progress: float = 0.25  # learning gate: share of the steps done before learning is judged
    min_steps: int = 50  # learning gate: optimizer steps done before learning is judged
    chance_tolerance: float = 0.05  # source_at_chance: train/cls >= (1 - this) * ln C
    won_threshold: float = 0.05  # discriminator_won: train/domain / domain_weight below this
    pinned_tolerance: float = 0.01  # discriminator_pinned: |train/domain / domain_weight - ln 2| <= this * ln 2
    patience: int = 3  # consecutive checks the discriminator conditions must hold
    collapse_fraction: float = 0.5  # target_collapse: entropy < this * ln C
    collapse_min_per_class: int = 5  # target_collapse: judged only on >= this * C target predictions
    spike_factor: float = 3.0  # loss_spike: train/total > this * running median
    spike_window: int = 10  # loss_spike: the median is over the previous <= this many checks
    spike_min_history: int = 3  # loss_spike: ... of at least this many
    spike_min_increase: float = 0.1  # loss_spike: and train/total - median >= this (nats)
    domain_weight: float | None = None  # the method's weight of train/domain (None: the method's own, else 1)


def parse_health_options(data: Mapping[str, Any] | HealthOptions | None, error: type[Exception] = ValueError,
                         where: str = "health_kwargs") -> HealthOptions:
    """HealthOptions from a config's dict, names, types and ranges checked (message names the field)."""
    options = parse_options(HealthOptions, data if isinstance(data, HealthOptions) else dict(data or {}),
                            where=where, error=error)
    for name in ("chance_tolerance", "pinned_tolerance", "collapse_fraction", "min_progress"):
        if not 0.0 <= getattr(options, name) <= 1.0:
            raise error(f"{where}: {name} must be in [0, 1], got {getattr(options, name)}")
    for name in ("min_steps", "collapse_min_per_class", "spike_min_increase"):
        if getattr(options, name) < 0:
            raise error(f"{where}: {name} must be >= 0, got {getattr(options, name)}")
    for name in ("patience", "spike_window", "spike_min_history"):
        if getattr(options, name) < 1:
            raise error(f"{where}: {name} must be >= 1, got {getattr(options, name)}")
    if not options.won_threshold > 0 or not options.spike_factor > 1:
        raise error(f"{where}: won_threshold must be > 0 and spike_factor > 1, got {options.won_threshold}, "
                    f"{options.spike_factor}")
    if options.domain_weight is not None and not options.domain_weight > 0:
        raise error(f"{where}: domain_weight must be > 0 or None, got {options.domain_weight}")
    return options


def method_domain_weight(method: Any) -> float:
    """The weight a method multiplies its `domain` loss term by, where it exposes one as a number: `domain_weight`
    (importance_weighted) or `weight` (dann); 1 otherwise. `HealthOptions.domain_weight` overrides it."""
    for name in ("domain_weight", "weight"):
        value = getattr(method, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return 1.0


@dataclass(frozen=True)
class HealthEvent:
    """A code that began to hold (`fired`) or stopped holding at a check."""

    step: int
    code: str
    message: str
    fired: bool = True

    def record(self) -> dict[str, Any]:
        """Its metrics.jsonl record."""
        if self.fired:
            return {"step": self.step, "event": "health", "code": self.code, "message": self.message}
        return {"step": self.step, "event": "health_cleared", "code": self.code, "message": self.message}


def entropy(counts: torch.Tensor | list[int]) -> float:
    """Entropy (nats) of the distribution a histogram of counts describes."""
    c = torch.as_tensor(counts, dtype=torch.float64)
    p = c[c > 0] / c.sum()
    return float(-(p * p.log()).sum())


class HealthMonitor:
    """The checks of the module docstring. `observe_target_logits` every micro-step (device only), `check` at the
    log steps with the flushed losses and the window's target histogram; `state_dict` goes into checkpoints."""

    def __init__(self, num_classes: int, options: HealthOptions | None = None, domain_weight: float = 1.0) -> None:
        self.options = options if options is not None else HealthOptions()
        self.num_classes = int(num_classes)
        self.domain_weight = self.options.domain_weight or float(domain_weight)
        self.active: dict[str, str] = {}  # code -> message of the check it fired at
        self.codes: list[str] = []  # every code that fired, order of first firing
        self.streaks: dict[str, int] = {}  # consecutive checks a patience condition held
        self.totals: list[float] = []  # previous finite train/total, the last spike_window
        self.domains: list[float] = []  # previous train/domain, the last `patience`
        self._counts: torch.Tensor | None = None  # target predicted-class counts since the last check (device)

    # ------------------------------------------------------------------ target predictions (no labels)
    def observe_target_logits(self, logits: torch.Tensor | None) -> None:
        """Add the argmax histogram of a batch of target logits (rows × classes) to the window's counts, on the
        logits' device and without a host sync (no bincount: deterministic on every device)."""
        if logits is None or logits.dim() != 2 or logits.shape[1] != self.num_classes or self.num_classes < 2:
            return
        with torch.no_grad():
            pred = logits.detach().argmax(1)
            classes = torch.arange(self.num_classes, device=pred.device)
            counts = (pred.unsqueeze(1) == classes).sum(0)
            self._counts = counts if self._counts is None else self._counts + counts

    def take_target_counts(self) -> torch.Tensor | None:
        """The window's counts (a device tensor, for the trainer to all-reduce), and a fresh window."""
        counts, self._counts = self._counts, None
        return counts

    # ------------------------------------------------------------------ the checks
    def check(self, step: int, progress: float, losses: Mapping[str, float],
              target_counts: torch.Tensor | list[int] | None = None) -> list[HealthEvent]:
        """Judge one log step: `losses` are the flushed means ('train/cls', ...), `target_counts` the predicted-class
        histogram of the window's target batches (None: the method forwards no target). Returns what fired or
        cleared at this step."""
        o = self.options
        gate = progress >= o.min_progress and step >= o.min_steps
        holding: dict[str, str] = {}
        chance = math.log(self.num_classes) if self.num_classes >= 2 else None
        cls = losses.get("train/cls")
        # at or above (1 - tolerance)·ln C: a loss above chance (diverging, oscillating) is no better than chance;
        # a non-finite one is loss_spike's
        at_chance = (chance is not None and cls is not None and math.isfinite(cls)
                     and cls >= (1 - o.chance_tolerance) * chance)
        if gate and at_chance:
            holding["source_at_chance"] = (f"train/cls {cls:.4g} is still at or above chance ln {self.num_classes} = "
                                           f"{chance:.4g} after {step} steps ({progress:.0%} of training)")

        domain = losses.get("train/domain")
        if domain is not None:
            d = domain / self.domain_weight
            won = self._streak("won", d < o.won_threshold)
            if won >= o.patience and gate:
                holding["discriminator_won"] = (
                    f"train/domain {domain:.4g} < {o.won_threshold * self.domain_weight:.4g} for {won} checks: "
                    "the domain classifier separates the domains, the features are not aligned")
            near_ln2 = abs(d - LN2) <= o.pinned_tolerance * LN2
            repeats = max(o.patience, 2)  # "the same value" needs two checks at least
            self.domains = (self.domains + [domain])[-repeats:]
            frozen = len(self.domains) == repeats and len(set(self.domains)) == 1
            if frozen:
                holding["discriminator_pinned"] = (
                    f"train/domain is exactly {domain!r} at {repeats} checks: the discriminator's output no "
                    "longer depends on its input (dead features or a saturated discriminator)")
            pinned = self._streak("pinned", near_ln2 and at_chance)
            if not frozen and pinned >= o.patience and gate:
                holding["discriminator_pinned"] = (
                    f"train/domain {domain:.4g} ≈ ln 2 with train/cls at chance for {pinned} checks: the "
                    "features carry no information (collapsed), which aligns the domains trivially")

        if target_counts is not None and chance is not None:
            counts = torch.as_tensor(target_counts)
            n = int(counts.sum())
            if gate and n >= o.collapse_min_per_class * self.num_classes:
                h = entropy(counts)
                if h < o.collapse_fraction * chance:
                    top = int(counts.argmax())
                    holding["target_collapse"] = (
                        f"target predictions' entropy {h:.3g} < {o.collapse_fraction:g}·ln {self.num_classes} = "
                        f"{o.collapse_fraction * chance:.3g} ({n} predictions, {int(counts[top]) / n:.0%} class {top})")

        total = losses.get("train/total")
        if total is not None:
            if not math.isfinite(total):
                holding["loss_spike"] = f"train/total is {total} (non-finite)"
            else:
                if len(self.totals) >= o.spike_min_history:
                    median = statistics.median(self.totals)
                    if total > o.spike_factor * median and total - median >= o.spike_min_increase:
                        holding["loss_spike"] = (f"train/total {total:.4g} > {o.spike_factor:g}× its running median "
                                                 f"{median:.4g} (last {len(self.totals)} checks)")
                self.totals = (self.totals + [total])[-o.spike_window:]
        return self._transitions(step, holding)

    def _streak(self, name: str, holds: bool) -> int:
        self.streaks[name] = self.streaks.get(name, 0) + 1 if holds else 0
        return self.streaks[name]

    def _transitions(self, step: int, holding: dict[str, str]) -> list[HealthEvent]:
        events = []
        for code in HEALTH_CODES:
            if code in holding and code not in self.active:
                events.append(HealthEvent(step, code, holding[code]))
                if code not in self.codes:
                    self.codes.append(code)
            elif code in self.active and code not in holding:
                events.append(HealthEvent(step, code, f"{code} no longer holds", fired=False))
        self.active = {c: holding[c] for c in HEALTH_CODES if c in holding}
        return events

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "active": dict(self.active),
            "codes": list(self.codes),
            "streaks": dict(self.streaks),
            "totals": list(self.totals),
            "domains": list(self.domains),
            "target_counts": None if self._counts is None else self._counts.detach().cpu(),
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device | str | None = None) -> None:
        self.active = dict(state["active"])
        self.codes = list(state["codes"])
        self.streaks = dict(state["streaks"])
        self.totals = list(state["totals"])
        self.domains = list(state["domains"])
        counts = state["target_counts"]
        self._counts = None if counts is None else counts.to(device) if device is not None else counts.clone()

