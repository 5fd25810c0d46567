"""DAPT / TAPT and text fine-tuning through the shared trainer, on a dictd dictionary and a tiny BERT written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domainadapt.runs import check_inputs, run
from domainadapt.train import TrainConfig

from text_fixtures import tiny_bert, tiny_texts, tiny_tokenizer, write_dictd, write_wordnet

SUBJECT_WORDS = {
    "networking": ("network", "sends", "packets", "over", "protocol", "router", "socket"),
    "programming": ("compiler", "turns", "program", "into", "machine", "code", "loop"),
    "hardware": ("processor", "memory", "cache", "disk", "bus", "chip", "board"),
}
SUBJECT = {"num_classes": 3, "train_per_class": 4, "test_per_class": 4, "seed": 0}


def _entries():
    entries = []
    for subject, words in SUBJECT_WORDS.items():
        for k, text in enumerate(tiny_texts(14, seed=len(entries) + 1, words=list(words) + ["the", "a"])):
            head = f"{subject[:4]}{k}"
            entries.append(([head], f"{head}\n\n   <{subject}> {text}\n"))
    return entries


@pytest.fixture(scope="module")
def text_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    write_dictd(root / "dictd", "foldoc", _entries())
    general = [([f"w{k}"], f"w{k}\n\n   {t}\n") for k, t in enumerate(tiny_texts(200, seed=9))]
    write_dictd(root / "dictd", "gcide", general)
    jargon = [([f"j{k}"], f"j{k}\n\n   {t}\n") for k, t in enumerate(tiny_texts(30, seed=11))]
    write_dictd(root / "dictd", "jargon", jargon)
    write_wordnet(root / "wordnet", {"noun": [([f"n{k}"], t) for k, t in enumerate(tiny_texts(150, seed=13))]})
    corpus = [t for _, body in _entries() for t in [body]] + tiny_texts(100, seed=3)
    tokenizer = tiny_tokenizer(corpus, vocab_size=150)
    model = tiny_bert(len(tokenizer))
    model.config.max_position_embeddings = 64
    model.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                      bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                      pad_token_id=tokenizer.pad_token_id))
    gpt2.save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    return root


@pytest.fixture()
def world(text_world, monkeypatch):
    monkeypatch.setenv("DOMAINADAPT_DICTD_DIR", str(text_world / "dictd"))
    monkeypatch.setenv("DOMAINADAPT_WORDNET_DIR", str(text_world / "wordnet"))
    from domainadapt.text import sources

    sources.clear_caches()
    yield text_world
    sources.clear_caches()


def build_setup(config: TrainConfig, init_state):
    """What runs.run builds for a config: the task's TaskSetup (model, data, eval sets)."""
    from domainadapt.tasks import get_task

    task = get_task(config.task)
    return task.build(config, task.options(config), init_state)


def mlm_config(world, **kw) -> TrainConfig:
    base = dict(task="masked_lm", method="masked_lm", backbone=str(world / "bert"), source="none",
                target="dictd:foldoc", task_kwargs={"block_size": 16, "general": "dictd:gcide", "subject_task": SUBJECT,
                                                    "heldout_blocks": 16},
                steps=30, batch_size=8, optimizer="adamw", lr=2e-3, weight_decay=0.0, progress=False,
                eval_batch_size=8, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def cls_config(world, **kw) -> TrainConfig:
    base = dict(task="text_classification", method="source_only", backbone=str(world / "bert"), source="foldoc_subjects",
                target="foldoc_subjects", task_kwargs={"subject_task": SUBJECT, "max_length": 32},
                steps=40, batch_size=6, optimizer="adamw", lr=3e-3, weight_decay=0.0, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_dapt_lowers_the_held_out_domain_mlm_loss_and_reports_general_text(world, tmp_path):
    from domainadapt.tasks.masked_lm import evaluate_masked_lm

    config = mlm_config(world)
    setup = build_setup(config, None)
    assert set(setup.eval_sets) == {"domain_heldout", "general_heldout"}
    before = evaluate_masked_lm(setup.model, setup.eval_sets["domain_heldout"], device=torch.device("cpu"))
    again = evaluate_masked_lm(setup.model, setup.eval_sets["domain_heldout"], device=torch.device("cpu"))
    assert before == again  # the held-out masking is fixed
    result = run(config, tmp_path / "dapt")
    m = result["metrics"]
    assert m["domain_heldout/mlm_loss"] < 0.9 * before["mlm_loss"]
    assert m["general_heldout/mlm_loss"] > 0 and m["train/mlm"] > 0
    assert result["sizes"]["target_train_blocks"] >= 8


def test_whole_word_masking_trains_through_the_trainer(world, tmp_path):
    kwargs = {**mlm_config(world).task_kwargs, "whole_word_mask": True}
    result = run(mlm_config(world, steps=3, task_kwargs=kwargs), tmp_path / "wwm")
    assert result["steps"] == 3 and result["metrics"]["train/mlm"] > 0


def test_dapt_never_trains_on_the_task_test_entries(world):
    from domainadapt.text.sources import corpus_texts, subject_task

    task = subject_task(SUBJECT)
    texts = corpus_texts("dictd:foldoc", exclude=task.test_headwords)
    assert not set(task.test["text"]) & set(texts)
    tapt = corpus_texts("task:foldoc", subject=SUBJECT)
    assert set(task.train["text"]) <= set(tapt) and not set(task.test["text"]) & set(tapt)


def test_fine_tuning_from_a_dapt_run_starts_from_its_encoder_and_learns_the_task(world, tmp_path):
    dapt = run(mlm_config(world, steps=5), tmp_path / "dapt")
    assert dapt["steps"] == 5
    from domainadapt.train.checkpoint import load_checkpoint

    state = load_checkpoint(tmp_path / "dapt" / "checkpoints" / "last.pt")
    setup = build_setup(cls_config(world, init_from=str(tmp_path / "dapt")), state)
    word = state["modules"]["model.bert.embeddings.word_embeddings.weight"]
    assert torch.equal(setup.model.encoder.embeddings.word_embeddings.weight, word)

    result = run(cls_config(world, init_from=str(tmp_path / "dapt")), tmp_path / "ft")
    m = result["metrics"]
    # 3 subjects with disjoint vocabularies: chance accuracy is 1/3, and always answering one subject scores a
    # macro-F1 of 1/6; measured 1.0 and 1.0 after 40 steps
    assert m["target_test/acc"] > 0.6
    assert m["target_test/macro_f1"] > 0.6
    assert result["sizes"] == {"source_train": 12, "target_test": 12, "classes": 3}


def test_subject_probe_reads_the_frozen_encoder_deterministically(world, tmp_path):
    from domainadapt.evaluation.subject_probe import subject_probe
    from domainadapt.text.sources import TextTaskError

    base = subject_probe(cls_config(world))
    again = subject_probe(cls_config(world, seed=5))  # no seed dependence: the encoder is frozen
    assert np.array_equal(base.predictions, again.predictions) and base.macro_f1 == again.macro_f1
    # 3 subjects with disjoint words: even the random encoder's mean-pooled features separate them. Chance is an
    # accuracy of 1/3 (macro-F1 1/6 for a constant answer), which `acc >= 1/3` let through; measured 1.0 and 1.0
    assert base.acc > 2 / 3 and base.macro_f1 > 2 / 3
    run(mlm_config(world, steps=20), tmp_path / "dapt")
    from domainadapt.evaluation import linear_probe
    from domainadapt.evaluation.subject_probe import pooled_features as _pooled_features
    from domainadapt.train.checkpoint import load_checkpoint

    dapt_config = cls_config(world, init_from=str(tmp_path / "dapt"))
    setup = build_setup(dapt_config, load_checkpoint(tmp_path / "dapt" / "checkpoints" / "last.pt"))
    base_setup = build_setup(cls_config(world), None)
    f_train, f_test = (_pooled_features(setup.model, d, 8) for d in (setup.source_train, setup.eval_sets["target_test"]))
    assert not torch.allclose(f_train, _pooled_features(base_setup.model, base_setup.source_train, 8))  # DAPT moved it
    expected = linear_probe(f_train, setup.source_train.labels, f_test, setup.eval_sets["target_test"].labels)
    got = subject_probe(dapt_config)  # the probe reads the DAPT encoder, not the backbone's
    assert np.array_equal(got.predictions, expected.predictions) and got.macro_f1 == expected.macro_f1
    assert got.acc > 2 / 3  # still far above chance after DAPT (measured 1.0)
    with pytest.raises(TextTaskError, match="text_classification"):
        subject_probe(mlm_config(world))


def test_dapt_with_ewc_adds_the_penalty_from_general_text(world, tmp_path):
    result = run(mlm_config(world, steps=6, regularizers={"ewc": {"lam": 10.0, "samples": 4}}), tmp_path / "ewc")
    assert result["metrics"]["train/ewc"] > 0


def test_text_tasks_fail_early_on_bad_input(world, tmp_path):
    from domainadapt.text.dictd import DictdNotFoundError
    from domainadapt.text.sources import TextTaskError

    with pytest.raises(TextTaskError, match="text backbone"):
        check_inputs(mlm_config(world, backbone="digits_cnn"))
    with pytest.raises(TextTaskError, match="unknown corpus"):
        check_inputs(mlm_config(world, target="nonsense"))
    with pytest.raises(DictdNotFoundError, match="dict-vera"):
        check_inputs(mlm_config(world, target="dictd:foldoc+dictd:vera"))
    with pytest.raises(TextTaskError, match="does not take task_kwargs"):
        check_inputs(mlm_config(world, task_kwargs={"blocksize": 8}))
    with pytest.raises(TextTaskError, match="method 'masked_lm'"):
        check_inputs(mlm_config(world, method="dann"))
    with pytest.raises(TextTaskError, match="foldoc_subjects"):
        check_inputs(cls_config(world, source="mnist"))
    with pytest.raises(ValueError, match="unknown task"):
        check_inputs(cls_config(world, task="speech"))


def _dapt_script(args: list[str], dictd_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DOMAINADAPT_DICTD_DIR": str(dictd_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "DOMAINADAPT_WORDNET_DIR": str(Path(dictd_dir).parent / "wordnet")}
    return subprocess.run([sys.executable, str(repo / "experiments" / "dapt.py"), *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_dapt_script_writes_its_tables(world, tmp_path):
    import pandas as pd

    out = tmp_path / "dapt"
    done = _dapt_script(["--quick", "--backbone", str(world / "bert"), "--seeds", "0", "1",
                         "--pre-steps", "2", "--ft-steps", "2", "--head-warmup", "2", "--pre-batch", "4", "--classes", "3",
                         "--train-per-class", "4", "--test-per-class", "4", "--out", str(out)], world / "dictd", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = ["base", "DAPT", "TAPT", "DAPT+TAPT", "¬DAPT", "DAPT+EWC", "DAPT+L2-SP"]
    frame = pd.read_csv(out / "finetune.csv")
    assert set(frame.row) == set(rows) and len(frame) == 2 * len(rows)
    mlm = pd.read_csv(out / "mlm.csv", index_col=0)
    assert list(mlm.index) == rows and (mlm.domain_mlm > 0).all()
    assert mlm.tokens_seen.iloc[1:].nunique() == 1  # compute-matched: every row trains the same tokens
    overlap = pd.read_csv(out / "vocab_overlap.csv", index_col=0)
    assert overlap.loc["FOLDOC", "FOLDOC"] == 100
    table = (out / "table.md").read_text()
    assert "Δ vs base" in table and "Δ vs ¬DAPT" in table and "probe macro-F1" in table and "paired bootstrap" in table
    assert "DAPT+EWC: keeps" in table and "DAPT+L2-SP: keeps" in table and "trains on general:control" in table
    # the probe of every row (random tiny encoder, +2 pretraining steps) is far above chance (accuracy 1/3, macro-F1 1/6
    # for a constant answer); measured 1.0 for all rows. Not asserted here: that DAPT lowers the domain MLM loss.
    # Two pretraining steps move it by ~0.1% (5.020 → 5.016), the size of the base row's own run-to-run variation;
    # test_dapt_lowers_the_held_out_domain_mlm_loss_and_reports_general_text checks it on 30 steps (a >10% drop).
    assert (mlm.probe_acc > 2 / 3).all() and (mlm.probe_macro_f1 > 2 / 3).all()
    # DAPT+TAPT continues the DAPT run
    import json

    starts = sorted(str(json.loads(p.read_text())["config"]["init_from"]) for p in
                    (out / "runs").glob("masked_lm__none__task-foldoc__*/result.json"))
    assert len(starts) == 2 and "dictd-foldoc-dictd-jargon" in starts[0] and "general-all" in starts[1]  # warm-up


def test_dapt_script_runs_the_rows_on_a_causal_lm(world, tmp_path):
    import pandas as pd

    out = tmp_path / "dapt"
    done = _dapt_script(["--quick", "--lm", "causal", "--backbone", str(world / "gpt2"), "--rows", "DAPT", "¬DAPT",
                         "DAPT+EWC", "--seeds", "0", "--pre-steps", "2", "--ft-steps", "2", "--pre-batch", "4",
                         "--classes", "3", "--train-per-class", "4", "--test-per-class", "4", "--out", str(out)],
                        world / "dictd", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    mlm = pd.read_csv(out / "mlm.csv", index_col=0)
    assert list(mlm.index) == ["base", "DAPT", "¬DAPT", "DAPT+EWC"]
    # a random 150-token model starts near ln 150 = 5.01 on both held-out sets
    assert 4.0 < mlm.loc["base", "domain_mlm"] < 6.0 and 4.0 < mlm.loc["base", "general_mlm"] < 6.0
    assert "next-token loss" in (out / "table.md").read_text()
    assert len(list((out / "runs").glob("causal_lm__*"))) == 3
    assert (mlm.probe_acc > 2 / 3).all()  # three subjects with disjoint words, the mean-pooled decoder states


def test_dapt_script_says_what_is_missing(tmp_path):
    done = _dapt_script(["--quick", "--out", str(tmp_path / "x")], tmp_path / "empty", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    for package in ("dict-foldoc", "dict-jargon", "dict-gcide", "wordnet-base"):
        assert f"apt-get install {package}" in done.stderr


def test_the_text_task_fisher_equals_a_per_example_loop_through_the_shared_diagonal_fisher(world):
    """DAPT+EWC's Fisher: the masked-LM task supplies held-out general blocks and their NLL; the ONE diagonal_fisher
    (through the ewc regularizer, as a run builds it) equals squared per-block gradients averaged by hand."""
    from domainadapt.regularizers import RegularizerContext, build_regularizers
    from domainadapt.regularizers.fisher import sample_indices
    from domainadapt.text.mlm import masked_lm_loss

    setup = build_setup(mlm_config(world), None)
    model, data = setup.model, setup.fisher.data
    penalty = build_regularizers({"ewc": {"lam": 1.0, "samples": 5}}, model,
                                 RegularizerContext(previous=None, fisher=setup.fisher))["ewc"]
    fisher = penalty.fisher()
    index = sample_indices(len(data), 5, torch.Generator().manual_seed(0))  # the Fisher's own seeded choice
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    by_hand = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    model.eval()
    for i in index:
        x, labels = data.get_batch(i.view(1))
        loss = masked_lm_loss(model, x["input_ids"], x["attention_mask"], labels)
        for (n, p), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                by_hand[n] += g.double().square()
    assert set(fisher) == set(params) and len(index) == 5
    for n in params:
        torch.testing.assert_close(fisher[n], (by_hand[n] / 5).float(), atol=1e-6, rtol=1e-5)
    assert sum(float(f.sum()) for f in fisher.values()) > 0
    with pytest.raises(ValueError, match="supports kind \\['empirical'\\], not 'true'"):
        build_regularizers({"ewc": {"kind": "true"}}, model, RegularizerContext(previous=None, fisher=setup.fisher))
