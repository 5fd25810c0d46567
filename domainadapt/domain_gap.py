"""How far apart are two named domains? Features of each (pixels, FID Inception, or a layer of a trained
model) → every divergence of `domainadapt.divergence`, each with its uncertainty.

Feature spaces:
  "pixels"           the images themselves, flattened (3·S² values in [0, 1]);
  "inception"        2048-d pool features of the FID InceptionV3 (pytorch-fid's network and resizing);
  "CHECKPOINT:LAYER" the output of a named module of a model trained by `domainadapt train`
                     (CHECKPOINT: a run directory or a .pt checkpoint; LAYER: e.g. "backbone" or
                     "head.net.1"), so the gap can be measured layer by layer (Yosinski et al. 2014).
Everything checkable is checked before features are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .data import DigitDomain, load_domain
from .divergence import METRICS, measure
from .inference import UnknownLayerError, extract_features
from .runs import load_trained_model


@dataclass(frozen=True)
class FeatureSpec:
    kind: str  # "pixels" | "inception" | "layer"
    checkpoint: Path | None = None
    layer: str | None = None

    def text(self) -> str:
        """The spec as `parse` reads it: "pixels", "inception" or "CHECKPOINT:LAYER"."""
        return self.kind if self.kind != "layer" else f"{self.checkpoint}:{self.layer}"

    @classmethod
    def parse(cls, text: str) -> "FeatureSpec":
        if text in ("pixels", "inception"):
            return cls(text)
        path, sep, layer = text.rpartition(":")
        if not sep or not path or not layer:
            raise ValueError(f"features must be 'pixels', 'inception' or 'CHECKPOINT:LAYER', got '{text}'")
        if not Path(path).exists():
            raise FileNotFoundError(f"features '{text}': no run directory or checkpoint at {path}")
        return cls("layer", Path(path), layer)


class FeatureExtractor:
    """Loads what a feature space needs once (model, weights), failing early; then maps domains to n×d."""

    def __init__(self, spec: FeatureSpec, *, device: str = "cpu", fid_weights: str | None = None,
                 allow_download: bool = False, batch_size: int = 100) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model: torch.nn.Module | None = None
        if spec.kind == "inception":
            from .divergence import load_fid_inception  # torchvision (3 s of import): only for FID features

            self.model = load_fid_inception(fid_weights, allow_download=allow_download, device=self.device)
        elif spec.kind == "layer":
            self.model, self.config = load_trained_model(spec.checkpoint)
            names = dict(self.model.named_modules())
            if spec.layer not in names:
                raise UnknownLayerError(
                    f"model of {spec.checkpoint} has no layer '{spec.layer}'; layers: {', '.join(n for n in names if n)}"
                )

    def __call__(self, domain: DigitDomain) -> torch.Tensor:
        images = domain_pixels(domain)
        if self.spec.kind == "pixels":
            return images.flatten(1)
        if self.spec.kind == "inception":
            from .divergence import inception_features

            return inception_features(images, self.model, batch_size=self.batch_size, device=self.device)
        if self.config.image_size != domain.image_size:
            raise ValueError(f"the model of {self.spec.checkpoint} takes {self.config.image_size}px images, "
                             f"the domain has {domain.image_size}px")
        return extract_features(self.model, images, [self.spec.layer], batch_size=self.batch_size,
                                device=self.device)[self.spec.layer]


def domain_pixels(domain: Any) -> torch.Tensor:
    """Float N×3×S×S in [0, 1]: an in-memory domain's images, or a file-backed domain's items decoded one by one
    (its pipeline: a square resize unless set otherwise; measure a sample, `sample_domain`, of a large one)."""
    images = getattr(domain, "images", None)
    if isinstance(images, torch.Tensor):
        return images.float() / 255.0
    return torch.stack([domain[i][0] for i in range(len(domain))])


def sample_domain(domain: DigitDomain, n: int | None, seed: int) -> DigitDomain:
    """n images drawn without replacement (seeded); all of them when n is None or ≥ the domain's size."""
    if n is None or n >= len(domain):
        return domain
    g = torch.Generator().manual_seed(seed)
    return domain.subset(torch.randperm(len(domain), generator=g)[:n].sort().values)


def measure_domains(
    source: str,
    target: str,
    *,
    features: str = "pixels",
    metrics: Sequence[str] = METRICS,
    n: int | None = 1000,
    seed: int = 0,
    n_permutations: int = 1000,
    image_size: int = 32,
    data_root: str | None = None,
    device: str = "cpu",
    fid_weights: str | None = None,
    allow_download: bool = False,
    extractor: FeatureExtractor | None = None,
) -> dict[str, Any]:
    """Measure source vs target: {"source", "target", "features", "n_source", "n_target", "metrics": {...}}.

    Both domains are subsampled to the same n (FD is biased in n: compare at equal n). With source == target
    the two samples are disjoint halves of the domain: the measures' null reference (MMD p-value uniform,
    proxy A-distance near 0)."""
    unknown = [m for m in metrics if m not in METRICS and m not in ("frechet", "pad", "proxy_a_distance")]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if extractor is None:
        extractor = FeatureExtractor(FeatureSpec.parse(features), device=device, fid_weights=fid_weights,
                                     allow_download=allow_download)
    if source == target:  # a null reference: two disjoint samples of one domain
        domain = load_domain(source, root=data_root, image_size=image_size)
        size = len(domain) // 2 if n is None else min(n, len(domain) // 2)
        order = torch.randperm(len(domain), generator=torch.Generator().manual_seed(seed))
        halves = [domain.subset(order[:size].sort().values), domain.subset(order[size : 2 * size].sort().values)]
    else:
        domains = [load_domain(name, root=data_root, image_size=image_size) for name in (source, target)]
        size = min(len(d) for d in domains) if n is None else min([n, *(len(d) for d in domains)])
        halves = [sample_domain(d, size, seed + i) for i, d in enumerate(domains)]
    xs = [extractor(d) for d in halves]
    result = measure(xs[0], xs[1], metrics=list(metrics), seed=seed, n_permutations=n_permutations)
    return {"source": source, "target": target, "features": extractor.spec.text(), "n_source": size, "n_target": size,
            "metrics": result}


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: value and its uncertainty as text (for tables)."""
    rows = []
    for metric, r in result["metrics"].items():
        if metric == "mmd":
            unc = f"p = {r['p_value']:.3g}, {r['n_permutations']} permutations"
        elif metric == "fd":
            unc = f"± {r['std']:.3g} bootstrap std" if r.get("std") is not None else ""
        elif metric == "kid":
            unc = f"± {r['std']:.2g} std over {r['n_subsets']} subsets of {r['subset_size']}"
        else:
            lo, hi = r["interval"]
            unc = f"95% CI [{lo:.2f}, {hi:.2f}]"
        rows.append({"metric": metric, "value": r["value"], "uncertainty": unc})
    return rows
