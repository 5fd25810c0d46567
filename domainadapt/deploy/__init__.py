"""The way out of a finished run: export the model (ONNX, TorchScript, safetensors, Hugging Face) with a model card,
and predict on new images or texts into a CSV. Both read what every run stores: its weights, its class names and
its input contract (result.json's "classes" and "input")."""

from .export import EXPORT_FORMATS, ExportError, export_run
from .predict import predict_run

__all__ = ["EXPORT_FORMATS", "ExportError", "export_run", "predict_run"]
