"""Many quadratic forms wₛᵀ K wₛ of one kernel matrix, computed block by block without ever holding K.

The permutation test of MMD and KID both reduce to sums of kernel values over index subsets: the sum of
K over the rows and columns a 0/1 indicator w selects is the quadratic form wᵀKw (wᵀK'v for a cross-kernel).
With the indicators of all S subsets as the columns of an N×S matrix W,

    q = Σ_{blocks I, J} colsum( W[I] ⊙ (K[I, J] W[J]) )

is one GEMM per kernel block: each block K[I, J] is computed once, used for every subset, and dropped.
Memory is O(block² + N·S) instead of O(N²); the work is the same N²·S multiply-adds as the dense
product (half of it for a symmetric K, whose off-diagonal blocks are visited once and counted twice).
Sums are accumulated in the dtype of W (float64 by default), whatever the dtype the kernel blocks are
computed in.

This is a small loop of torch GEMMs rather than a library call because no maintained library offers
"quadratic forms of an implicit kernel matrix" (KeOps offers kernel-vector products, but it is a compiled
extension this project does not require; its reductions would do the same GEMM work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

# kernel_block(a_rows, b_rows, i0, j0) -> the kernel matrix between the two row blocks (i0, j0: their offsets)
BlockFn = Callable[[Tensor, Tensor, int, int], Tensor]


@dataclass
class QuadraticForms:
    """``q[s] = wₛᵀ K vₛ``; for a symmetric K also ``row_sums = K 1`` and ``diag = diag(K)``."""

    q: Tensor
    row_sums: Tensor | None = None
    diag: Tensor | None = None


def symmetric_quadratic_forms(kernel_block: BlockFn, z: Tensor, w: Tensor, block_size: int) -> QuadraticForms:
    """``q[s] = w[:, s]ᵀ K(z, z) w[:, s]`` for every column of w (N×S), plus K's row sums and diagonal.

    Blocks (I, J) with J > I are visited once and counted twice (K is symmetric); each block is computed
    in z's dtype and accumulated in w's dtype.
    """
    n = z.shape[0]
    q = torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)
    row_sums = torch.zeros(n, dtype=w.dtype, device=w.device)
    diag = torch.empty(n, dtype=w.dtype, device=w.device)
    for i in range(0, n, block_size):
        zi, wi = z[i : i + block_size], w[i : i + block_size]
        for j in range(i, n, block_size):
            blk = kernel_block(zi, z[j : j + block_size], i, j).to(w.dtype)
            contrib = (wi * (blk @ w[j : j + block_size])).sum(0)
            row_sums[i : i + blk.shape[0]] += blk.sum(1)
            if j == i:
                diag[i : i + blk.shape[0]] = blk.diagonal()
                q += contrib
            else:
                row_sums[j : j + blk.shape[1]] += blk.sum(0)
                q += 2.0 * contrib
    return QuadraticForms(q, row_sums, diag)


def cross_quadratic_forms(
    kernel_block: BlockFn, a: Tensor, b: Tensor, wa: Tensor, wb: Tensor, block_size: int
) -> QuadraticForms:
    """``q[s] = wa[:, s]ᵀ K(a, b) wb[:, s]`` for every column (wa: N_a×S, wb: N_b×S)."""
    q = torch.zeros(wa.shape[1], dtype=wa.dtype, device=wa.device)
    for i in range(0, a.shape[0], block_size):
        ai, wai = a[i : i + block_size], wa[i : i + block_size]
        for j in range(0, b.shape[0], block_size):
            blk = kernel_block(ai, b[j : j + block_size], i, j).to(wa.dtype)
            q += (wai * (blk @ wb[j : j + block_size])).sum(0)
    return QuadraticForms(q)


def indicator_columns(
    index_rows: Tensor, n: int, dtype: torch.dtype, device: torch.device | str, out: Tensor | None = None
) -> Tensor:
    """The n×S 0/1 matrix whose column s marks the indices in ``index_rows[s]`` (S×k, distinct per row).

    It is the transposed view of an S×n matrix filled row by row (a row scatter is 5× faster than a column
    scatter, and GEMMs take the view as it is). ``out`` (n×S, e.g. ``buffer[a:b].T`` of an S_total×n
    buffer) is filled in place: no intermediate, no transposed copy.
    """
    rows = torch.empty(index_rows.shape[0], n, dtype=dtype, device=device) if out is None else out.T
    rows.zero_()
    rows.scatter_(1, index_rows.to(rows.device), 1.0)
    return rows.T
