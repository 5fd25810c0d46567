"""The way out of a run: class names and the input contract in result.json, export (ONNX checked in onnxruntime,
TorchScript, safetensors) with a model card, and predict → CSV; bad input as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from domainadapt.cli import main
from domainadapt.data import load_domain
from domainadapt.deploy import ExportError, export_run, predict_run
from domainadapt.deploy.loaded import DeployError
from domainadapt.runs import load_trained_model, run
from domainadapt.train import TrainConfig

from image_tree import write_image_folder

CLASSES = ("cat", "dog", "emu")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one thread each (the machine is shared)."""


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy")
    write_image_folder(root / "src", CLASSES, per_class=4)
    write_image_folder(root / "tgt", CLASSES, per_class=4, seed=3)
    config = TrainConfig(source=f"lazy_folder:{root / 'src'}", target=f"lazy_folder:{root / 'tgt'}",
                         backbone="resnet18", backbone_kwargs={"weights": None}, image_size=32, steps=3, batch_size=4,
                         device="cpu", progress=False, test_fraction=0.25, lr=0.001)
    run(config, root / "run")
    return root


def test_every_run_stores_its_class_names_and_input_contract(image_run):
    result = json.loads((image_run / "run" / "result.json").read_text())
    assert result["classes"] == list(CLASSES)
    assert result["input"] == {"kind": "image", "image_size": 32, "channels": 3, "dtype": "float32",
                               "value_range": [0.0, 1.0], "normalisation": "inside the model", "layout": "N×3×H×W",
                               "transform": "da_eval"}


def test_onnx_export_agrees_with_pytorch_in_onnxruntime_with_a_dynamic_batch(image_run, tmp_path):
    import onnxruntime

    card = export_run(image_run / "run", "onnx", tmp_path / "onnx")
    assert card["check"]["inputs"] == 50 and card["check"]["max_abs_logit_diff"] <= 1e-4
    assert card["classes"] == list(CLASSES) and card["input"]["image_size"] == 32
    model, _ = load_trained_model(image_run / "run")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 7):  # batch sizes the export never saw
        x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            expected = model(x)
        got = session.run(["logits"], {"images": x.numpy()})[0]
        assert got.shape == (n, 3) and float((expected - torch.from_numpy(got)).abs().max()) <= 1e-4
    text = (tmp_path / "onnx" / "MODEL_CARD.md").read_text()
    assert "cat, dog, emu" in text and "inside the model" in text


def test_torchscript_and_safetensors_exports_reload_to_the_same_model(image_run, tmp_path):
    from safetensors.torch import load_file

    model, _ = load_trained_model(image_run / "run")
    x = torch.rand(4, 3, 32, 32)
    export_run(image_run / "run", "torchscript", tmp_path / "ts")
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(tmp_path / "ts" / "model.pt"))(x), model(x))
    export_run(image_run / "run", "safetensors", tmp_path / "st")
    state = load_file(str(tmp_path / "st" / "model.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert json.loads((tmp_path / "st" / "model_card.json").read_text())["format"] == "safetensors"


def test_predict_writes_the_models_probabilities_with_class_names(image_run, tmp_path, capsys):
    assert main(["predict", str(image_run / "run"), "--input", str(image_run / "tgt"), "--out",
                 str(tmp_path / "p.csv"), "--batch-size", "5", "--no-progress"]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame.columns) == ["input", "prediction", "probability", "p[cat]", "p[dog]", "p[emu]"]
    assert len(frame) == 12 and set(frame["prediction"]) <= set(CLASSES)
    model, _ = load_trained_model(image_run / "run")
    domain = load_domain(f"lazy_folder:{image_run / 'tgt'}", image_size=32).with_transform("da_eval")
    with torch.no_grad():
        expected = torch.softmax(model(torch.stack([domain[i][0] for i in range(len(domain))])), 1)
    assert frame["input"].tolist() == list(domain.paths)
    assert torch.allclose(torch.tensor(frame[["p[cat]", "p[dog]", "p[emu]"]].values, dtype=torch.float32), expected,
                          atol=1e-6)
    one = predict_run(image_run / "run", domain.paths[5], tmp_path / "one.csv", progress=False)
    assert len(one) == 1 and one["prediction"][0] == frame["prediction"][5]


def test_bad_export_and_predict_requests_are_one_line_errors(image_run, tmp_path, capsys):
    assert main(["export", str(image_run / "run"), "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    assert "--format hf is for text runs" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    assert main(["export", str(tmp_path / "nowhere"), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "no run directory at" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(DeployError, match="is not a finished run"):
        predict_run(unfinished, image_run / "tgt", tmp_path / "p.csv")
    with pytest.raises(DeployError, match="no image files under"):
        predict_run(image_run / "run", tmp_path, tmp_path / "p.csv")
    export_run(image_run / "run", "safetensors", tmp_path / "once")
    with pytest.raises(ExportError, match="already exists"):
        export_run(image_run / "run", "onnx", tmp_path / "once")
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_run(image_run / "run", "onnx", tmp_path / "strict", atol=-1.0)
    assert not (tmp_path / "strict").exists() and not (tmp_path / "strict.partial").exists()


# ------------------------------------------------------------------------------------------- text runs

TOPICS = {"networking": ("network", "sends", "packets", "protocol"), "hardware": ("processor", "memory", "cache", "disk")}


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory) -> Path:
    """Two finished text runs on a CSV: mean pooling + our head, and Hugging Face's own head (pooling=hf)."""
    from text_fixtures import save_tiny_bert, tiny_texts

    root = tmp_path_factory.mktemp("text")
    bert = save_tiny_bert(root / "bert", {w for ws in TOPICS.values() for w in ws} | {"the", "a"})
    rows = [{"body": t, "topic": topic} for k, (topic, words) in enumerate(TOPICS.items())
            for t in tiny_texts(12, seed=k, words=list(words) + ["the", "a"])]
    pd.DataFrame(rows).to_csv(root / "topics.csv", index=False)
    for pooling in ("mean", "hf"):
        assert main(["train", "--task", "text_classification", "--source", f"csv:{root / 'topics.csv'}",
                     "--backbone", str(bert), "--task-arg", "text_column=body", "--task-arg", "label_column=topic",
                     "--task-arg", f"pooling={pooling}", "--task-arg", "max_length=16", "--steps", "4",
                     "--batch-size", "8", "--optimizer", "adamw", "--lr", "3e-3", "--device", "cpu", "--no-progress",
                     "--out", str(root / pooling)]) == 0
    (root / "new.txt").write_text("the network sends packets\nthe processor cache\n\nmemory disk disk\n")
    return root


def test_a_text_run_exports_to_onnx_with_dynamic_batch_and_length(text_runs, tmp_path):
    import onnxruntime

    card = export_run(text_runs / "mean", "onnx", tmp_path / "onnx")
    assert card["check"]["inputs"] == 50 and card["check"]["max_abs_logit_diff"] <= 1e-4
    assert card["input"]["kind"] == "text" and card["input"]["max_length"] == 16
    assert card["classes"] == ["hardware", "networking"]
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    model, _ = load_trained_model(text_runs / "mean")
    ids, mask = torch.randint(0, model.encoder.config.vocab_size, (3, 11)), torch.ones(3, 11, dtype=torch.int64)
    with torch.no_grad():
        expected = model({"input_ids": ids, "attention_mask": mask})
    got = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert float((expected - torch.from_numpy(got)).abs().max()) <= 1e-4


def test_the_hf_export_reloads_with_automodel_and_gives_the_same_logits(text_runs, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    card = export_run(text_runs / "hf", "hf", tmp_path / "hf")
    assert card["check"]["max_abs_logit_diff"] <= 1e-4
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert reloaded.config.id2label == {0: "hardware", 1: "networking"}
    model, _ = load_trained_model(text_runs / "hf")
    enc = tokenizer(["the network sends packets", "memory cache disk"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        theirs = reloaded(**enc).logits
    assert float((ours - theirs).abs().max()) <= 1e-5
    with pytest.raises(ExportError, match="needs a run trained with Hugging Face's own head"):
        export_run(text_runs / "mean", "hf", tmp_path / "no")


def test_predict_on_texts_writes_one_row_per_line(text_runs, tmp_path):
    frame = predict_run(text_runs / "mean", text_runs / "new.txt", tmp_path / "p.csv", progress=False)
    assert frame["input"].tolist() == ["the network sends packets", "the processor cache", "memory disk disk"]
    assert list(frame.columns)[3:] == ["p[hardware]", "p[networking]"]
    assert torch.allclose(torch.tensor(frame[["p[hardware]", "p[networking]"]].sum(axis=1).values, dtype=torch.float64),
                          torch.ones(3,
                          dtype=torch.float64), atol=1e-5)
    model, _ = load_trained_model(text_runs / "mean")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text_runs / "bert")
    enc = tokenizer(["memory disk disk"], truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        p = torch.softmax(model({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}), 1)[0]
    assert abs(float(p[0]) - frame["p[hardware]"][2]) < 1e-5
