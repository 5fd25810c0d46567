"""Penalties that compose with ANY method, one file each, registered by name: `ewc` (Kirkpatrick et al. 2017;
online EWC, Schwarz et al. 2018) and `l2sp` (Li et al. 2018). A run names them in `config.regularizers`, e.g.
{"ewc": {"lam": 100, "kind": "true", "samples": 1000}} or {"l2sp": {"alpha": 0.01, "beta": 0.0}}; they are
built at the start of a fine-tuning run (`init_from`), where the model holds the previous task's weights.
`fisher.diagonal_fisher` is the one Fisher of every task (the task supplies data + per-example NLL)."""

from .base import (
    Regularizer,
    RegularizerContext,
    RegularizerError,
    available_regularizers,
    build_regularizers,
    check_regularizers,
    get_regularizer,
    register_regularizer,
)
from .fisher import FisherData, diagonal_fisher, fisher_coverage

__all__ = ["FisherData", "Regularizer", "RegularizerContext", "RegularizerError", "available_regularizers",
           "build_regularizers", "check_regularizers", "diagonal_fisher", "fisher_coverage", "get_regularizer",
           "register_regularizer"]
