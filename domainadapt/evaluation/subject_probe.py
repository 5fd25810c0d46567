"""A linear probe of the frozen encoder a `text_classification` config would fine-tune: a read of the encoder
free of fine-tuning noise (DAPT vs base, compared with `paired_bootstrap_difference`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..inference import Collect, run_loop
from ..runs import check_inputs, checkpoint_file
from ..tasks import get_task
from ..text.sources import TextTaskError
from ..train.checkpoint import load_checkpoint
from ..train.config import TrainConfig
from .linear_probe import ProbeResult, linear_probe


def pooled_features(model: nn.Module, data: Any, batch_size: int = 32) -> torch.Tensor:
    """`model.features` (a TextClassifier's pooled encoder output) of every row of `data`, in order."""
    return run_loop(model, data, Collect(lambda m, x: m.features(x)), batch_size=batch_size)


def subject_probe(config: TrainConfig, *, C: float = 1.0, batch_size: int = 32) -> ProbeResult:
    """Linear probe of the encoder a `text_classification` config would fine-tune (its backbone, or the encoder
    of its init_from run): pooled features of the task's train and test entries, frozen, then
    `evaluation.linear_probe` → ProbeResult (acc, macro_f1, test predictions). Deterministic: no seed, no
    fine-tuning noise; compare two with `evaluation.paired_bootstrap_difference`."""
    if config.task != "text_classification":
        raise TextTaskError(f"subject_probe needs a text_classification config, got task '{config.task}'")
    check_inputs(config)
    state = load_checkpoint(checkpoint_file(config.init_from)) if config.init_from is not None else None
    task = get_task(config.task)
    setup = task.build(config, task.options(config), state)
    train, test = setup.source_train, setup.eval_sets["target_test"]
    return linear_probe(pooled_features(setup.model, train, batch_size), train.labels,
                        pooled_features(setup.model, test, batch_size), test.labels, C=C)
