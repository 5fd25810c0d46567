"""FixMatch for unsupervised domain adaptation (Sohn et al. 2020, NeurIPS, "FixMatch: Simplifying Semi-Supervised
Learning with Consistency and Confidence", sec. 2, eqs. 2–4; hyper-parameters τ = 0.95, λ_u = 1 from Table 2 /
sec. 4; check the numbering against the paper). The labelled set is the source domain, the unlabelled set the
target domain.

Loss: source cross-entropy + λ_u · (1/B) Σ_b 1[max q_b ≥ τ] · CE(p(y | A(x_b)), argmax q_b), q_b = softmax of the
model on a weak view α(x_b) of target example b (no gradient), A(x_b) a strong view. The mean is over the whole
target batch (eq. 4's 1/(μB)), not over the examples that pass. One forward covers [x_s, α(x_t), A(x_t)]
(concatenated, as `Method.compute_losses` does for [x_s, x_t]; BatchNorm sees all three parts together).

Views are made here on the batch tensor with the global torch RNG only, so the trainer's RNG checkpoint keeps a
resumed run exact. `augment`:
  "digits" (images B×C×H×W in [0, 1]): weak = a random integer translation of up to 2 px per sample; strong = a
      per-sample random affine map (rotation ±30°, translation ±20% of the side, shear ±0.3) through
      affine_grid/grid_sample (zeros outside), a per-sample brightness (×[0.6, 1.4]) and contrast (×[0.6, 1.4]
      about the image mean) jitter, and a cutout square of half the side filled with 0.5 (FixMatch's Cutout),
      all batched.
  "randaugment" (images): weak = the same random translation; strong = torchvision.transforms.v2.RandAugment
      applied per image (through uint8 and back; 1 or 3 channels).
  "noise" (any float tensor, e.g. 2-D point features): the non-image augmentation, weak = x + N(0, 0.05²),
      strong = x + N(0, 0.3²).
Text batches (dicts of tensors) and non-4-D inputs for the image augmentations raise ValueError.
Reported (never trained): `mask_rate`, the fraction of the target batch whose weak-view confidence passes τ.
Pseudo-label accuracy is not reported: target labels are never seen.
Rotated two moons (tests/test_methods_mdd_fixmatch.py, augment='noise'): at the paper's τ = 0.95 target accuracy
0.545 / 0.542 for seeds 0 / 1, below source only (0.598 / 0.602): ~60% of the target batch passes, the points the
source boundary already labels confidently (some confidently wrong), so the pseudo-labels only confirm that
boundary; τ = 0.7 (0.86–0.92 pass) gives 0.838 / 0.995. The default stays the paper's τ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..inference import batch_length
from .base import Method, MethodContext, StepOutput, concat_inputs
from .registry import register_method

AUGMENTATIONS = ("digits", "randaugment", "noise")


def fixmatch_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor,
                  threshold: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over the batch of 1[max q ≥ τ] · CE(logits_strong, argmax q), mask rate), q = softmax(logits_weak)
    with no gradient."""
    q = logits_weak.detach().float().softmax(1)
    confidence, pseudo = q.max(1)
    mask = (confidence >= threshold).float()
    ce = F.cross_entropy(logits_strong.float(), pseudo, reduction="none")
    return (mask * ce).mean(), mask.mean()


def _check_images(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, Mapping) or not isinstance(x, torch.Tensor):
        raise ValueError(f"method 'fixmatch': augment='{what}' needs image tensors B×C×H×W; got "
                         f"{'a dict of tensors (text?)' if isinstance(x, Mapping) else type(x).__name__}. "
                         f"FixMatch makes its views on images (or augment='noise' on float feature tensors)")
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"method 'fixmatch': augment='{what}' needs float image tensors B×C×H×W in [0, 1]; "
                         f"got shape {tuple(x.shape)}, dtype {x.dtype}")
    return x


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low  # global RNG


def weak_translate(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Each image shifted by its own random integer (dx, dy) ∈ [−max_shift, max_shift]², zeros shifted in."""
    b, _, h, w = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (b, 2), device=x.device).to(x.dtype)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -2.0 * shift[:, 0] / w  # output pixel (i, j) reads input (i − dy, j − dx)
    theta[:, 1, 2] = -2.0 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def strong_digits(x: torch.Tensor, rotation_deg: float = 30.0, translation: float = 0.2, shear: float = 0.3,
                  jitter: float = 0.4) -> torch.Tensor:
    """Per-sample random affine (rotation, translation, shear) + brightness/contrast jitter + a cutout square of
    half the side, batched; the output keeps x's shape and dtype and lies in [0, 1]."""
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    angle = _uniform(b, -rotation_deg, rotation_deg, dev) * (math.pi / 180.0)
    sh = _uniform(b, -shear, shear, dev)
    tx, ty = _uniform(b, -translation, translation, dev), _uniform(b, -translation, translation, dev)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([  # rotation @ [[1, shear], [0, 1]], translation in normalised units (2 = the side)
        torch.stack([cos, cos * sh - sin, 2 * tx], 1),
        torch.stack([sin, sin * sh + cos, 2 * ty], 1),
    ], 1).to(dt)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    brightness = _uniform(b, 1 - jitter, 1 + jitter, dev).to(dt).view(b, 1, 1, 1)
    contrast = _uniform(b, 1 - jitter, 1 + jitter, dev).to(dt).view(b, 1, 1, 1)
    y = y * brightness
    mean = y.mean((1, 2, 3), keepdim=True)
    y = ((y - mean) * contrast + mean).clamp(0.0, 1.0)
    side_h, side_w = max(h // 2, 1), max(w // 2, 1)
    top = torch.randint(0, h - side_h + 1, (b,), device=dev).view(b, 1, 1, 1)
    left = torch.randint(0, w - side_w + 1, (b,), device=dev).view(b, 1, 1, 1)
    rows = torch.arange(h, device=dev).view(1, 1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, 1, w)
    cut = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    return torch.where(cut, torch.full_like(y, 0.5), y)


def strong_randaugment(x: torch.Tensor) -> torch.Tensor:
    """torchvision.transforms.v2.RandAugment per image (its random draws use the global torch RNG)."""
    from torchvision.transforms import v2

    if x.shape[1] not in (1, 3):
        raise ValueError(f"method 'fixmatch': augment='randaugment' needs 1 or 3 channels, got {x.shape[1]}")
    transform = v2.RandAugment()
    images = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    out = torch.stack([transform(image) for image in images])
    return out.to(x.dtype) / 255.0


def make_views(x: torch.Tensor, augment: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(weak view, strong view) of the target batch."""
    if augment == "noise":
        if isinstance(x, Mapping) or not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError("method 'fixmatch': augment='noise' needs a float tensor batch; got "
                             f"{'a dict of tensors (text?)' if isinstance(x, Mapping) else type(x).__name__}")
        return x + 0.05 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)
    x = _check_images(x, augment)
    weak = weak_translate(x)
    strong = strong_digits(x) if augment == "digits" else strong_randaugment(x)
    return weak, strong


@register_method
class FixMatch(Method):
    name = "fixmatch"

    def __init__(self, context: MethodContext, threshold: float = 0.95, weight: float = 1.0,
                 augment: str = "digits") -> None:
        super().__init__(context)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"fixmatch: threshold must be in [0, 1], got {threshold}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"fixmatch: augment must be one of {list(AUGMENTATIONS)}, got {augment!r}")
        self.threshold, self.weight, self.augment = threshold, weight, augment

    def compute_losses(self, model: nn.Module, x_s: Any, y_s: torch.Tensor | None, x_t: Any,
                       y_t: torch.Tensor | None, progress: float, step: int) -> dict[str, torch.Tensor]:
        device_type = x_t.device.type if isinstance(x_t, torch.Tensor) else "cpu"
        with torch.no_grad(), torch.autocast(device_type, enabled=False):  # views in the input's dtype
            weak, strong = make_views(x_t, self.augment)
        x = concat_inputs([x_s, weak, strong])
        f, logits = model.features_and_logits(x)
        n_s, n_t = batch_length(x_s), batch_length(x_t)
        out = StepOutput(x_s=x_s, y_s=y_s, x_t=x_t, f_s=f[:n_s], f_t=f[n_s:n_s + n_t], logits_s=logits[:n_s],
                         logits_t=logits[n_s:n_s + n_t], progress=progress, step=step, y_t=y_t)
        self.last_target_logits = out.logits_t.detach()  # the weak view's, for train/health.py
        self._logits_strong = logits[n_s + n_t:]
        try:
            return self.losses(out, model)
        finally:
            self._logits_strong = None

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, torch.Tensor]:
        """`out.logits_t` are the weak view's logits; the strong view's come from `compute_losses`."""
        strong = getattr(self, "_logits_strong", None)
        if strong is None:
            raise RuntimeError("method 'fixmatch' needs its own forward of both target views: call compute_losses")
        unlabelled, mask_rate = fixmatch_loss(out.logits_t, strong, self.threshold)
        self.report("mask_rate", mask_rate)
        return {"cls": F.cross_entropy(out.logits_s, out.y_s), "fixmatch": self.weight * unlabelled}
