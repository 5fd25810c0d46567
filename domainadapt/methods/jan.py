"""JAN: joint adaptation networks (Long et al. 2017, ICML, "Deep Transfer Learning with Joint Adaptation
Networks", sec. 4: the joint MMD of eq. 3 over the activations of several layers, its estimate in eq. 9 and
the linear-time estimate of eq. 10; check the numbers).

Losses: source cross-entropy + λ · JMMD²(features, softmax outputs): the MMD² whose kernel is the product of one
kernel per layer, k((f, p), (f', p')) = k_f(f, f') · k_p(p, p'). k_f is DAN's multi-kernel Gaussian (dan.py /
`domainadapt.divergence`: 5 bandwidths σ²·{¼, ½, 1, 2, 4} around the median heuristic of the pooled batch), k_p one
Gaussian exp(−‖p − p'‖² / 1.68) on the softmax outputs (the bandwidth of the JAN code; TLlib's σ = 0.92 is the
same, 2σ² ≈ 1.69). Estimators as `divergence.mmd2` (what dan.py uses): "unbiased" (default, as dan), "biased",
"linear" (pairs (2i, 2i+1)). λ = 1 (the paper's setting). Anchor: REFERENCES.md: Office-31 ResNet-50 average,
JAN 84.3 (paper, via the CDAN paper's table); TLlib's runs 87.0, Office-Home 65.9.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..divergence.kernels import GaussianKernel, gaussian_from_sq, resolve_kernel, sq_distances
from ..divergence.mmd import ESTIMATORS
from .base import Method, MethodContext, StepOutput
from .registry import register_method


def joint_kernel(layers: list[tuple[Tensor, Tensor, GaussianKernel]]) -> Tensor:
    """Product over the layers of the Gaussian kernel matrices of the pooled (source; target) rows."""
    out = None
    for x, y, kern in layers:
        z = torch.cat([x, y])
        z = z - z.detach().mean(0)  # distances are translation invariant; centred rows lose less precision
        k = gaussian_from_sq(sq_distances(z, z), kern.sigma2s(x, y))
        out = k if out is None else out * k
    assert out is not None
    return out


def joint_mmd2(layers: list[tuple[Tensor, Tensor, GaussianKernel]], estimator: str = "unbiased") -> Tensor:
    """JMMD² between the source rows and the target rows of every layer (m source, n target rows each)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown MMD estimator {estimator!r}; use one of {ESTIMATORS}")
    m, n = layers[0][0].shape[0], layers[0][1].shape[0]
    k = joint_kernel(layers)
    kss, ktt, kst = k[:m, :m], k[m:, m:], k[:m, m:]
    if estimator == "biased":
        return kss.mean() + ktt.mean() - 2.0 * kst.mean()
    if estimator == "unbiased":
        return ((kss.sum() - kss.diagonal().sum()) / (m * (m - 1)) + (ktt.sum() - ktt.diagonal().sum()) / (n * (n - 1))
                - 2.0 * kst.mean())
    pairs = torch.arange(min(m, n) // 2, device=k.device) * 2  # linear time: h over disjoint pairs
    s1, s2, t1, t2 = pairs, pairs + 1, m + pairs, m + pairs + 1
    return (k[s1, s2] + k[t1, t2] - k[s1, t2] - k[s2, t1]).mean()


@register_method
class JAN(Method):
    name = "jan"

    def __init__(self, context: MethodContext, weight: float = 1.0, estimator: str = "unbiased",
                 feature_kernel: str = "dan", softmax_bandwidth: float = 1.68) -> None:
        super().__init__(context)
        if estimator not in ESTIMATORS:
            raise ValueError(f"jan: unknown estimator {estimator!r}; use one of {ESTIMATORS}")
        kern = resolve_kernel(feature_kernel)
        if not isinstance(kern, GaussianKernel):
            raise ValueError(f"jan: feature_kernel must be a Gaussian kernel family, got {feature_kernel!r}")
        if softmax_bandwidth <= 0:
            raise ValueError(f"jan: softmax_bandwidth must be > 0, got {softmax_bandwidth}")
        self.feature_kernel = kern
        self.softmax_kernel = GaussianKernel(sigma=math.sqrt(softmax_bandwidth / 2.0))  # exp(−d²/(2σ²)) = exp(−d²/bw)
        self.weight, self.estimator = weight, estimator

    def losses(self, out: StepOutput, model: nn.Module) -> dict[str, Tensor]:
        p_s, p_t = out.logits_s.float().softmax(1), out.logits_t.float().softmax(1)
        layers = [(out.f_s.float(), out.f_t.float(), self.feature_kernel), (p_s, p_t, self.softmax_kernel)]
        return {"cls": F.cross_entropy(out.logits_s, out.y_s), "jmmd": self.weight * joint_mmd2(layers, self.estimator)}
