"""The plug-in point of what a run trains: a task turns a config into a model, its streams and its eval sets.

The trainer, checkpoints, resume and result files are the same for every task; only this part differs.

    @register_task
    class MyTask(Task):
        name = "my_task"
        Options = MyOptions                       # a dataclass; config.task_kwargs is parsed into it
        def check(self, config, options): ...     # cheap, no data: fails before any long work
        def build(self, config, options, init_state) -> TaskSetup: ...
        def build_model(self, config, options, info) -> nn.Module: ...   # for loading a trained run

`TaskSetup` is what the trainer needs: the model, the training sets of the two streams, the named eval sets and
the measure each is scored with (classifier metrics by default), and the data + likelihood of the task the
starting weights were trained on (`FisherData`, for EWC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn
from torch.utils.data import Dataset

from ..inference import ClassifierMetrics, Measure
from ..options import OptionsError, parse_options
from ..regularizers.fisher import FisherData
from ..train.config import TrainConfig


class TaskError(OptionsError):
    """A task configured in a way that cannot work; the message names the field."""


@dataclass(frozen=True)
class NoOptions:
    pass


@dataclass
class TaskSetup:
    model: nn.Module
    source_train: Dataset | None
    target_train: Dataset | None
    eval_sets: dict[str, Dataset]
    fisher: FisherData | None = None  # the previous task's data + per-example NLL (EWC); None: no Fisher
    no_fisher_reason: str = "this task supplies no data for a Fisher"
    measure: Callable[[], Measure] = ClassifierMetrics  # a fresh measure per eval set and evaluation
    sizes: dict[str, int] = field(default_factory=dict)
    feature_dim: int = 0
    num_classes: int = 0
    class_names: tuple[str, ...] = ()  # label i's name, stored in result.json (predict and export read it)
    input_contract: dict[str, Any] = field(default_factory=dict)  # what the model takes (size, range, tokenizer)
    # label-free selection (train/selection.py): source rows held out of source_train (labelled), and the target
    # training rows under the evaluation transform; None: the task holds none out / validators read target_train
    source_val: Dataset | None = None
    target_train_eval: Dataset | None = None

    @property
    def model_info(self) -> dict[str, int]:
        """What `Task.build_model` needs besides the config; stored in every checkpoint."""
        return {"num_classes": self.num_classes, "feature_dim": self.feature_dim}


class Task:
    """Subclass, set `name` (and `Options`), implement `check`, `build` and `build_model`; `@register_task`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    error: ClassVar[type[Exception]] = TaskError  # the exception its checks raise
    classifies: ClassVar[bool] = True  # its model has features_and_logits (what validators score); False: an LM
    holds_out_source: ClassVar[bool] = False  # builds TaskSetup.source_val when validators read source rows

    def options(self, config: TrainConfig) -> Any:
        """config.task_kwargs parsed into this task's typed options (fails naming the field)."""
        return parse_options(self.Options, config.task_kwargs, where=f"task '{self.name}'", error=self.error,
                             noun="task_kwargs")

    def check(self, config: TrainConfig, options: Any) -> None:
        """Every check that needs no data."""

    def build(self, config: TrainConfig, options: Any, init_state: dict[str, Any] | None) -> TaskSetup:
        raise NotImplementedError

    def train_size(self, config: TrainConfig, options: Any) -> int | None:
        """Examples in the source training split, read without building the model (presets that count epochs
        use it), or None where the task cannot tell cheaply."""
        return None

    def build_model(self, config: TrainConfig, options: Any, info: dict[str, int]) -> nn.Module:
        """The model of a finished run of this config, untrained (the caller loads the weights)."""
        raise NotImplementedError
