"""Kernels for MMD: Gaussian (one or several bandwidths, median heuristic) and linear.

Bandwidth convention (documented because libraries differ: median vs mean, squared or not, factor 2):

    k_σ(a, b) = exp(−‖a − b‖² / (2σ²))

Median heuristic (Gretton et al. 2012, JMLR, §8: σ = median distance between points of the
aggregate sample): σ² = the median of the squared Euclidean distances ‖z_i − z_j‖², i < j, over the
pooled sample z = [x; y]. It is the lower median (``torch.median``), taken over at most
``median_rows`` rows spaced evenly through the pooled sample (all rows when there are fewer), so the
cost stays bounded for large n. It is computed without gradient (a constant of the loss), and it does
not change under a permutation of the pooled rows, so a permutation test may compute it once. If the
median is 0 (many duplicate rows) the mean squared distance is used, and 1 if that is 0 too.

Multi-kernel form (DAN, Long et al. 2015, ICML, §3.1 eq. 3): the average of ``n_kernels`` Gaussian
kernels with σ_k² = σ² · ratio^(k − (n_kernels − 1)/2), k = 0..n_kernels−1: a geometric series
centred on the base. ``n_kernels=5, ratio=2`` gives σ² × {1/4, 1/2, 1, 2, 4}, the series of the
public DAN code (ratio applied to σ²). Equal weights 1/n_kernels keep k(a, a) = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianKernel:
    """Gaussian kernel(s) ``mean_k exp(−‖a−b‖²/(2σ_k²))``; ``sigma=None`` means median heuristic."""

    sigma: float | None = None
    n_kernels: int = 1
    ratio: float = 2.0
    median_rows: int = 2048

    def __post_init__(self) -> None:
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"GaussianKernel sigma must be > 0; got {self.sigma}")
        if self.n_kernels < 1:
            raise ValueError(f"GaussianKernel n_kernels must be >= 1; got {self.n_kernels}")
        if not self.ratio > 0:
            raise ValueError(f"GaussianKernel ratio must be > 0; got {self.ratio}")
        if self.median_rows < 2:
            raise ValueError(f"GaussianKernel median_rows must be >= 2; got {self.median_rows}")

    def base_sigma2(self, x: Tensor, y: Tensor) -> Tensor:
        """σ² of the base kernel (0-dim tensor, no gradient) for the pooled sample of x and y."""
        if self.sigma is not None:
            return torch.tensor(float(self.sigma) ** 2, dtype=x.dtype, device=x.device)
        return median_sq_distance(torch.cat([x.detach(), y.detach()]), self.median_rows)

    def sigma2s(self, x: Tensor, y: Tensor) -> Tensor:
        """All bandwidths σ_k² (shape ``(n_kernels,)``, no gradient)."""
        base = self.base_sigma2(x, y)
        k = torch.arange(self.n_kernels, dtype=x.dtype, device=x.device) - (self.n_kernels - 1) / 2
        return base * torch.as_tensor(self.ratio, dtype=x.dtype, device=x.device) ** k


@dataclass(frozen=True)
class LinearKernel:
    """``k(a, b) = aᵀb``; then MMD² = ‖μ_P − μ_Q‖² (Gretton et al. 2012, §2.2)."""


Kernel = Union[GaussianKernel, LinearKernel]
KernelSpec = Union[str, float, int, GaussianKernel, LinearKernel]

_NAMED = {
    "gaussian": GaussianKernel(),
    "rbf": GaussianKernel(),
    "multi_gaussian": GaussianKernel(n_kernels=5, ratio=2.0),
    "mk": GaussianKernel(n_kernels=5, ratio=2.0),
    "dan": GaussianKernel(n_kernels=5, ratio=2.0),
    "linear": LinearKernel(),
}


def resolve_kernel(spec: KernelSpec) -> Kernel:
    """Turn a kernel spec into a kernel object.

    ``"gaussian"``/``"rbf"``: one Gaussian, median heuristic; ``"multi_gaussian"``/``"mk"``/``"dan"``:
    DAN's 5 kernels, ratio 2, around the median-heuristic base; ``"linear"``; a number: one Gaussian
    with that σ; or a :class:`GaussianKernel` / :class:`LinearKernel` instance.
    """
    if isinstance(spec, (GaussianKernel, LinearKernel)):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"unknown kernel {spec!r}")
    if isinstance(spec, (int, float)):
        return GaussianKernel(sigma=float(spec))
    if isinstance(spec, str) and spec.lower() in _NAMED:
        return _NAMED[spec.lower()]
    raise ValueError(f"unknown kernel {spec!r}; use one of {sorted(_NAMED)}, a bandwidth σ, or a kernel object")


def sq_distances(a: Tensor, b: Tensor, a_sq: Tensor | None = None, b_sq: Tensor | None = None) -> Tensor:
    """‖a_i − b_j‖² via ‖a‖² + ‖b‖² − 2aᵀb, clamped at 0 (differentiable, unlike cdist at 0).

    a: (n, d) and b: (m, d) give (n, m); stacks a: (k, n, d) and b: (k, m, d) give (k, n, m).
    """
    a_sq = (a * a).sum(-1) if a_sq is None else a_sq
    b_sq = (b * b).sum(-1) if b_sq is None else b_sq
    base = a_sq[..., :, None] + b_sq[..., None, :]
    if a.dim() == 2:
        d2 = torch.addmm(base, a, b.T, alpha=-2.0)  # one GEMM with the add fused
    else:
        d2 = torch.baddbmm(base, a, b.transpose(-1, -2), alpha=-2.0)
    return d2.clamp_min(0.0) if d2.requires_grad else d2.clamp_min_(0.0)


def median_sq_distance(z: Tensor, max_rows: int = 2048) -> Tensor:
    """Lower median of ‖z_i − z_j‖² over i < j (on ≤ ``max_rows`` evenly spaced rows); no sync.

    The r(r−1)/2 upper-triangle values are gathered row block by row block into one vector (no r×r
    matrix, no index tensors): 17 MB at the default 2,048 rows, whatever the size of z.
    """
    z = z.detach()
    if z.shape[0] > max_rows:
        idx = torch.linspace(0, z.shape[0] - 1, max_rows, device=z.device).round().long()
        z = z[idx]
    z = z - z.mean(0)
    r = z.shape[0]
    z_sq = (z * z).sum(1)
    vals = torch.empty(r * (r - 1) // 2, dtype=z.dtype, device=z.device)
    offset, rows = 0, 256
    for i in range(0, r - 1, rows):
        blk = sq_distances(z[i : i + rows], z[i:], z_sq[i : i + rows], z_sq[i:])  # rows × (r − i)
        for k in range(blk.shape[0]):
            tail = blk[k, k + 1 :]
            vals[offset : offset + tail.numel()] = tail
            offset += tail.numel()
    med = vals.median()
    mean = vals.mean()
    one = torch.ones((), dtype=z.dtype, device=z.device)
    return torch.where(med > 0, med, torch.where(mean > 0, mean, one))


def gaussian_from_sq(d2: Tensor, sigma2s: Tensor) -> Tensor:
    """Average of exp(−d2 / (2σ_k²)) over the bandwidths, one kernel at a time (bounded memory)."""
    out = torch.exp(d2 * (-0.5 / sigma2s[0]))
    for s2 in sigma2s[1:]:
        out = out + torch.exp(d2 * (-0.5 / s2))
    return out / sigma2s.numel() if sigma2s.numel() > 1 else out


def kernel_block(kernel: Kernel, a: Tensor, b: Tensor, sigma2s: Tensor | None) -> Tensor:
    """Kernel matrix between the rows of a and b (or a stack of them, for (k, n, d) and (k, m, d) stacks)."""
    if isinstance(kernel, LinearKernel):
        return a @ b.transpose(-1, -2)
    assert sigma2s is not None
    return gaussian_from_sq(sq_distances(a, b), sigma2s)


def pooled_block_fn(kernel: Kernel, z: Tensor, sigma2s: Tensor | None):
    """``block(a, b, i0, j0)``: the kernel between rows ``z[i0:i0+len(a)]`` (= a) and ``z[j0:j0+len(b)]`` (= b).

    Squared norms of z are computed once; a single Gaussian is evaluated in place (no extra block-sized
    temporaries); on a diagonal block (i0 == j0) a Gaussian's diagonal is set to exactly k(a, a) = 1 (the
    expansion ‖a‖² + ‖b‖² − 2aᵀb can leave 1 − ε).
    """
    if isinstance(kernel, LinearKernel):
        return lambda a, b, i0, j0: a @ b.T
    assert sigma2s is not None
    z_sq = (z * z).sum(1)
    single = -0.5 / sigma2s[0] if sigma2s.numel() == 1 else None

    def block(a: Tensor, b: Tensor, i0: int, j0: int) -> Tensor:
        d2 = sq_distances(a, b, z_sq[i0 : i0 + a.shape[0]], z_sq[j0 : j0 + b.shape[0]])
        if single is not None and not d2.requires_grad:
            k = d2.mul_(single).exp_()
        else:
            k = gaussian_from_sq(d2, sigma2s)
        if i0 == j0 and a.shape[0] == b.shape[0]:
            k.diagonal().fill_(1.0)
        return k

    return block


def kernel_matrix(
    kernel: Kernel, z: Tensor, sigma2s: Tensor | None, block_size: int = 4096
) -> Tensor:
    """Full symmetric kernel matrix of z, built in row/column blocks (peak extra memory ~block²)."""
    n = z.shape[0]
    out = torch.empty(n, n, dtype=z.dtype, device=z.device)
    block = pooled_block_fn(kernel, z, sigma2s)
    for i in range(0, n, block_size):
        zi = z[i : i + block_size]
        for j in range(i, n, block_size):
            zj = z[j : j + block_size]
            blk = block(zi, zj, i, j)
            out[i : i + zi.shape[0], j : j + zj.shape[0]] = blk
            if j != i:
                out[j : j + zj.shape[0], i : i + zi.shape[0]] = blk.T
    return out
