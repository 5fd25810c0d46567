"""Evaluation: seed statistics, forgetting, negative transfer, linear probes, diagnostics of a transferred model."""

from .forgetting import average_accuracy, backward_transfer, forgetting
from .stats import mean_std, t_interval

__all__ = ["average_accuracy", "backward_transfer", "forgetting", "mean_std", "t_interval"]

from .forgetting import AccuracyMatrix, AccuracyMatrixError, average_forgetting

__all__ += ["AccuracyMatrix", "AccuracyMatrixError", "average_forgetting"]

from .negative_transfer import (
    TransferGap,
    negative_transfer_gap,
    negative_transfer_table,
)

__all__ += ["TransferGap", "negative_transfer_gap", "negative_transfer_table"]

from .linear_probe import LinearProbeError, ProbeResult, linear_probe, paired_bootstrap_difference

__all__ += ["LinearProbeError", "ProbeResult", "linear_probe", "paired_bootstrap_difference"]

from .subject_probe import pooled_features, subject_probe

__all__ += ["pooled_features", "subject_probe"]
