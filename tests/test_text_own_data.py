"""text_classification on the user's own data: CSV / JSON Lines / Parquet files and Hugging Face datasets, any local
model folder, one-line errors for what cannot be read or downloaded. Tiny BERT, a few dozen rows, no download."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from domainadapt.cli import main
from domainadapt.runs import check_inputs, read_result
from domainadapt.train import TrainConfig

from text_fixtures import save_tiny_bert, tiny_texts

TOPICS = {
    "networking": ("network", "sends", "packets", "over", "protocol", "router", "socket"),
    "programming": ("compiler", "turns", "program", "into", "machine", "code", "loop"),
    "hardware": ("processor", "memory", "cache", "disk", "bus", "chip", "board"),
}


def _rows(per_topic: int = 12) -> list[dict[str, str]]:
    rows = []
    for k, (topic, words) in enumerate(TOPICS.items()):
        rows += [{"body": t, "topic": topic, "id": f"{topic}{i}"}
                 for i, t in enumerate(tiny_texts(per_topic, seed=k + 1, words=list(words) + ["the", "a"]))]
    return [rows[i] for i in sorted(range(len(rows)), key=lambda i: (i * 7) % len(rows))]  # classes mixed


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer BERT (hidden 32) and a BertTokenizerFast over a WordPiece vocab written here."""
    words = {w for ws in TOPICS.values() for w in ws} | {"the", "a"}
    return save_tiny_bert(tmp_path_factory.mktemp("own") / "bert", words)


def _train(args: list[str], backbone, out) -> int:
    return main(["train", "--task", "text_classification", "--backbone", str(backbone), "--steps", "20",
                 "--batch-size", "8", "--optimizer", "adamw", "--lr", "3e-3", "--weight-decay", "0", "--device", "cpu",
                 "--no-progress", "--test-fraction", "0.25", "--task-arg", "max_length=24", *args, "--out", str(out)])


def _config(source: str, backbone, **task_kwargs) -> TrainConfig:
    return TrainConfig(task="text_classification", method="source_only", source=source, backbone=str(backbone),
                       task_kwargs=task_kwargs, device="cpu", progress=False)


def test_fine_tunes_on_a_csv_file_through_the_cli_and_keeps_the_label_names(tiny_bert_dir, tmp_path, capsys):
    import pandas as pd

    pd.DataFrame(_rows()).to_csv(tmp_path / "topics.csv", index=False)
    rc = _train(["--source", f"csv:{tmp_path / 'topics.csv'}", "--task-arg", "text_column=body",
                 "--task-arg", "label_column=topic"], tiny_bert_dir, tmp_path / "run")
    assert rc == 0, capsys.readouterr().err
    result = read_result(tmp_path / "run")
    assert result["classes"] == ["hardware", "networking", "programming"]  # string labels: sorted names
    # 36 rows, 12 per topic; test_fraction 0.25 holds out floor(0.25·12 + 0.5) = 3 per topic (stratified_split)
    assert result["sizes"] == {"source_train": 27, "target_test": 9, "classes": 3}
    # disjoint vocabularies per topic: chance is 1/3; measured 1.0 after 20 steps
    assert result["metrics"]["target_test/acc"] > 2 / 3


def test_fine_tunes_on_a_saved_hugging_face_dataset_keeping_its_classlabel_names(tiny_bert_dir, tmp_path, capsys):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    names = ["programming", "networking", "hardware"]  # not sorted: a ClassLabel's order is kept
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    rows = _rows()

    def part(chunk):
        return Dataset.from_dict({"text": [r["body"] for r in chunk], "label": [names.index(r["topic"]) for r in chunk]},
                                 features=features)

    DatasetDict({"train": part(rows[:27]), "test": part(rows[27:])}).save_to_disk(str(tmp_path / "ds"))
    rc = _train(["--source", f"hf:{tmp_path / 'ds'}"], tiny_bert_dir, tmp_path / "run")
    assert rc == 0, capsys.readouterr().err
    result = read_result(tmp_path / "run")
    assert result["classes"] == names
    assert result["sizes"] == {"source_train": 27, "target_test": 9, "classes": 3}  # its own test split, not held out


def test_integer_labels_in_parquet_and_text_pairs_in_jsonl(tiny_bert_dir, tmp_path):
    import pandas as pd

    from domainadapt.tasks import get_task

    order = sorted(TOPICS)
    frame = pd.DataFrame([{"text": r["body"], "y": order.index(r["topic"])} for r in _rows()])
    frame.to_parquet(tmp_path / "t.parquet")
    task = get_task("text_classification")
    config = _config(f"parquet:{tmp_path / 't.parquet'}", tiny_bert_dir, label_column="y", max_length=24)
    setup = task.build(config, task.options(config), None)
    assert setup.class_names == ("0", "1", "2") and setup.sizes["classes"] == 3

    with open(tmp_path / "pairs.jsonl", "w") as f:
        for r in _rows(6):
            f.write(json.dumps({"a": r["body"], "b": r["id"], "label": r["topic"]}) + "\n")
    config = _config(f"jsonl:{tmp_path / 'pairs.jsonl'}", tiny_bert_dir, text_column="a", text_pair_column="b")
    setup = task.build(config, task.options(config), None)
    x, _ = setup.source_train.get_batch(__import__("torch").tensor([0]))
    assert int((x["input_ids"][0] == 3).sum()) == 2  # [CLS] a [SEP] b [SEP]: the pair is tokenized as one input


def test_a_second_labelled_domain_is_the_target_test_set(tiny_bert_dir, tmp_path):
    import pandas as pd

    from domainadapt.tasks import get_task

    rows = _rows()
    pd.DataFrame(rows).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows[:18]).to_csv(tmp_path / "b.csv", index=False)
    task = get_task("text_classification")
    config = _config(f"csv:{tmp_path / 'a.csv'}", tiny_bert_dir, text_column="body", label_column="topic")
    config.target = f"csv:{tmp_path / 'b.csv'}"
    setup = task.build(config, task.options(config), None)
    assert set(setup.eval_sets) == {"source_test", "target_test"}
    # stratified_split holds out floor(0.2 · n_c + 0.5) of each class's n_c rows (config.test_fraction's default)
    counts = Counter(r["topic"] for r in rows[:18])
    assert setup.sizes["source_test"] == 3 * 2 and setup.sizes["target_test"] == sum(int(0.2 * n + 0.5)
                                                                                      for n in counts.values())
    assert setup.class_names == ("hardware", "networking", "programming")
    (tmp_path / "c.csv").write_text("body,topic\na network,storage\nthe disk,hardware\n")
    config.target = f"csv:{tmp_path / 'c.csv'}"
    with pytest.raises(ValueError, match=r"target: .* label\(s\) \['storage'\] that are not among the classes"):
        task.build(config, task.options(config), None)


def _offline(monkeypatch):
    """HF_HUB_OFFLINE=1 as a user would set it before starting (the libraries read it at import: patch theirs too)."""
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_an_offline_hub_model_name_is_one_error_line(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    _offline(monkeypatch)
    (tmp_path / "t.csv").write_text("text,label\na network,x\nthe disk,y\n")
    rc = _train(["--source", f"csv:{tmp_path / 't.csv'}"], "nobody-here/no-such-model", tmp_path / "run")
    line = _one_error_line(capsys)
    assert rc == 2
    assert "'nobody-here/no-such-model' could not be downloaded" in line and "--backbone FOLDER" in line
    assert not (tmp_path / "run" / "config.json").exists()  # failed in the check, before the run started


def test_an_offline_hub_dataset_name_is_one_error_line(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    _offline(monkeypatch)
    rc = _train(["--source", "hf:nobody-here/no-such-dataset"], tiny_bert_dir, tmp_path / "run")
    line = _one_error_line(capsys)
    assert rc == 2
    assert "'nobody-here/no-such-dataset' could not be downloaded (HF_HUB_OFFLINE is set)" in line
    assert "hf:FOLDER" in line and "csv:PATH" in line


def test_a_network_failure_on_a_hub_dataset_is_one_error_line(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'some/data' on the Hub (LocalEntryNotFoundError)\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset_builder", unreachable)
    rc = _train(["--source", "hf:some/data", "--task-arg", "hf_config=plain"], tiny_bert_dir, tmp_path / "run")
    line = _one_error_line(capsys)
    assert rc == 2 and "'some/data' (hf_config 'plain') could not be downloaded (offline?)" in line


def test_bad_input_fails_in_one_line_before_training(tiny_bert_dir, tmp_path, capsys):
    from domainadapt.text.labelled import LabelledTextError, load_labelled
    from domainadapt.text.mlm import TextModelError

    with pytest.raises(LabelledTextError, match="does not exist"):
        check_inputs(_config(f"csv:{tmp_path / 'missing.csv'}", tiny_bert_dir))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LabelledTextError, match="is empty"):
        check_inputs(_config(f"csv:{tmp_path / 'empty.csv'}", tiny_bert_dir))
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(LabelledTextError, match="has no rows"):
        load_labelled(f"csv:{tmp_path / 'header.csv'}")
    (tmp_path / "t.csv").write_text("body,label\na network,x\nthe disk,y\n")
    with pytest.raises(LabelledTextError, match=r"no column 'text' \(its columns: \['body', 'label'\]\); "
                                                r"pass --task-arg text_column=NAME"):
        load_labelled(f"csv:{tmp_path / 't.csv'}")
    (tmp_path / "one.csv").write_text("text,label\na network,x\nthe disk,x\n")
    with pytest.raises(LabelledTextError, match="has one class \\('x'\\)"):
        load_labelled(f"csv:{tmp_path / 'one.csv'}")
    with pytest.raises(TextModelError, match="holds no config.json"):
        check_inputs(_config(f"csv:{tmp_path / 't.csv'}", tmp_path))
    with pytest.raises(TextModelError, match="does not exist"):
        check_inputs(_config(f"csv:{tmp_path / 't.csv'}", tmp_path / "no" / "model"))
    with pytest.raises(ValueError, match="neither 'foldoc_subjects' nor labelled text"):
        check_inputs(_config("tsv:x.tsv", tiny_bert_dir))
    # through the CLI: the missing column is found when the data is read, before any step
    capsys.readouterr()
    rc = _train(["--source", f"csv:{tmp_path / 't.csv'}"], tiny_bert_dir, tmp_path / "run")
    assert rc == 2 and "--task-arg text_column=NAME" in _one_error_line(capsys)
    assert read_result(tmp_path / "run") is None


def test_dapt_takes_its_corpus_in_the_same_file_and_folder_forms(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    from datasets import Dataset

    from domainadapt.runs import run
    from domainadapt.text.corpora import load_text
    from domainadapt.text.sources import check_corpus_spec

    texts = [r["body"] for r in _rows(70)]  # 210 documents: about 10 held out (one in 20, by a hash of the text)
    with open(tmp_path / "c.jsonl", "w") as f:
        f.writelines(json.dumps({"text": t, "id": k}) + "\n" for k, t in enumerate(texts))
    Dataset.from_dict({"text": texts[:50]}).save_to_disk(str(tmp_path / "saved"))
    assert list(load_text(f"jsonl:{tmp_path / 'c.jsonl'}")["text"]) == texts
    assert list(load_text(f"hf:{tmp_path / 'saved'}")["text"]) == texts[:50]
    with pytest.raises(ValueError, match="does not exist"):
        check_corpus_spec(f"parquet:{tmp_path / 'none.parquet'}", "target")
    config = TrainConfig(task="masked_lm", method="masked_lm", backbone=str(tiny_bert_dir), source="none",
                         target=f"jsonl:{tmp_path / 'c.jsonl'}+hf:{tmp_path / 'saved'}",
                         task_kwargs={"block_size": 16, "heldout_blocks": 8}, steps=3, batch_size=4, optimizer="adamw",
                         lr=1e-3, device="cpu", progress=False, eval_batch_size=8)
    result = run(config, tmp_path / "dapt")
    assert result["steps"] == 3 and result["metrics"]["domain_heldout/mlm_loss"] > 0
    assert result["input"]["kind"] == "masked_lm" and result["input"]["block_size"] == 16
    from transformers import AutoModelForMaskedLM

    from domainadapt.deploy import ExportError, export_run

    card = export_run(tmp_path / "dapt", "hf", tmp_path / "dapt_hf")  # the adapted encoder, to publish or reuse
    assert card["check"]["max_abs_logit_diff"] <= 1e-4 and card["outputs"] == "token logits over the vocabulary"
    assert AutoModelForMaskedLM.from_pretrained(tmp_path / "dapt_hf").config.hidden_size == 32
    with pytest.raises(ExportError, match=r"language-model run \(masked_lm\) exports as --format hf"):
        export_run(tmp_path / "dapt", "onnx", tmp_path / "dapt_onnx")
    _offline(monkeypatch)
    capsys.readouterr()
    rc = main(["train", "--task", "masked_lm", "--method", "masked_lm", "--backbone", str(tiny_bert_dir),
               "--source", "none", "--target", "hf:nobody-here/no-corpus", "--out", str(tmp_path / "x")])
    assert rc == 2 and "'nobody-here/no-corpus' could not be downloaded" in _one_error_line(capsys)


def test_a_folder_of_train_and_test_files_gives_its_splits(tmp_path):
    import pandas as pd

    from domainadapt.text.labelled import LabelledTextError, LabelledTextOptions, load_labelled

    rows = _rows()
    (tmp_path / "data").mkdir()
    pd.DataFrame(rows[:30]).to_csv(tmp_path / "data" / "train.csv", index=False)
    pd.DataFrame(rows[30:]).to_csv(tmp_path / "data" / "test.csv", index=False)
    columns = LabelledTextOptions(text_column="body", label_column="topic")
    data = load_labelled(f"hf:{tmp_path / 'data'}", columns, progress=False)
    assert (len(data.train), len(data.test)) == (30, 6)  # datasets names the splits after the files
    assert data.class_names == ("hardware", "networking", "programming")
    with pytest.raises(LabelledTextError, match=r"no split 'validation' \(splits: \['train', 'test'\]\); "
                                                "pass --task-arg hf_split_test=NAME"):
        load_labelled(f"hf:{tmp_path / 'data'}", LabelledTextOptions(text_column="body", label_column="topic",
                                                                   hf_split_test="validation"), progress=False)


def test_the_bert_preset_counts_three_epochs_in_steps_and_yields_to_the_flags(tiny_bert_dir, tmp_path):
    import pandas as pd

    from domainadapt.cli import build_parser, train_config

    pd.DataFrame(_rows()).to_csv(tmp_path / "topics.csv", index=False)
    common = ["train", "--preset", "bert_finetune", "--source", f"csv:{tmp_path / 'topics.csv'}", "--backbone",
              str(tiny_bert_dir), "--task-arg", "text_column=body", "--task-arg", "label_column=topic",
              "--test-fraction", "0.25", "--out", str(tmp_path / "run")]
    config = train_config(build_parser().parse_args(common))
    # 27 training rows (36, 3 per topic held out): 3 epochs of batch 16 = ceil(81 / 16) = 6 steps, warm-up 10% → 1
    assert (config.task, config.optimizer, config.lr, config.weight_decay, config.batch_size, config.schedule) == (
        "text_classification", "adamw", 2e-5, 0.01, 16, "linear")
    assert (config.steps, config.warmup_steps) == (6, 1)
    mine = train_config(build_parser().parse_args([*common, "--lr", "3e-5", "--steps", "40"]))
    assert (mine.lr, mine.steps, mine.warmup_steps) == (3e-5, 40, 4)  # flags win; the warm-up ratio follows
