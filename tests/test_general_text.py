"""General English for a base model built here: WordNet glosses, the corpus without FOLDOC / Jargon text, its parts,
and experiments/pretrain_base.py (tokenizer, model folder, exact resume) on data written here."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from killing import Killed
from text_fixtures import tiny_texts, write_dictd, write_wordnet

REPO = Path(__file__).resolve().parents[1]
GENERAL_WORDS = ("a", "cat", "sat", "on", "the", "mat", "dog", "ran", "to", "house", "tree", "green", "river", "stone")
DOMAIN_WORDS = ("zorkprotocol", "packets", "kernel", "compiler", "router")


def test_wordnet_lines_parse_into_words_and_glosses(tmp_path):
    from domainadapt.text.wordnet import WordNetFormatError, parse_line, read_glosses, read_synsets

    line = ("00217499 04 n 02 disaster 0 natural_event 1 001 @ 00217014 n 0000 | an act that has disastrous "
            "consequences; \"a  disaster\"  ")
    synset = parse_line(line, "noun")
    assert synset.words == ("disaster", "natural event") and synset.offset == "00217499"
    assert synset.text == 'disaster, natural event: an act that has disastrous consequences; "a disaster"'
    with pytest.raises(WordNetFormatError, match="w_cnt"):
        parse_line("00217499 04 n 0a disaster 0 | gloss", "noun", where="data.noun:7")
    with pytest.raises(WordNetFormatError, match="data.noun:7"):
        parse_line("00217499 04 n 01 disaster 0", "noun", where="data.noun:7")
    folder = write_wordnet(tmp_path / "wn", {"noun": [(["cat"], "a small animal")], "adv": [(["fast"], "quickly")]})
    assert [s.pos for s in read_synsets(folder)] == ["noun", "adv"]  # the licence header is skipped
    assert read_glosses(folder) == ["cat: a small animal", "fast: quickly"]


def test_a_missing_wordnet_names_the_package(tmp_path, monkeypatch):
    from domainadapt.text.sources import TextTaskError, check_corpus_spec
    from domainadapt.text.wordnet import WordNetNotFoundError, wordnet_dir

    monkeypatch.setenv("DOMAINADAPT_WORDNET_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(WordNetNotFoundError, match="apt-get install wordnet-base"):
        wordnet_dir()
    with pytest.raises(WordNetNotFoundError, match="wordnet-base"):
        check_corpus_spec("wordnet:glosses", "target")
    with pytest.raises(TextTaskError, match="general:base"):
        check_corpus_spec("general:everything", "target")


def test_general_documents_sharing_domain_text_are_dropped_and_parts_are_disjoint():
    from domainadapt.text.general import SHINGLE, build_general_corpus
    from domainadapt.text.parts import document_part

    domain = ["the router forwards every packet to the next hop on the network path quickly",
              "kernel panic"]
    copied = "As the dictionary says, the router forwards every packet to the next hop on its way."  # 8+ shared words
    short_copy = "Kernel  panic!"  # shorter than a window, equal word for word
    near = "the router forwards every packet to a stone"  # 6 shared words only: kept
    general = [copied, short_copy, near, *tiny_texts(300, seed=2, words=GENERAL_WORDS)]
    corpus = build_general_corpus({"g": general, "w": [general[5]]}, domain)  # general[5] again: kept once
    kept = [t for part in corpus.parts.values() for t in part]
    assert copied not in kept and short_copy not in kept and near in kept
    assert corpus.dropped == {"g": 2} and len(kept) == len(set(kept)) == corpus.kept["g"]
    assert SHINGLE == 8
    for part, texts in corpus.parts.items():
        assert all(document_part(t) == part for t in texts)
    base, control, heldout = (set(corpus.parts[p]) for p in ("base", "control", "heldout"))
    assert len(control) > 30 and len(heldout) > 3 and len(base) > len(control)
    assert set(corpus.texts("base")) == base | heldout and set(corpus.texts("control")) == control | heldout
    assert set(corpus.texts("all")) == base | control | heldout


@pytest.fixture()
def general_world(tmp_path, monkeypatch):
    """gcide + WordNet (general), foldoc + jargon (the domain); some general entries copy domain text."""
    from domainadapt.text import sources

    subjects = {"networking": ("zorkprotocol", "packets", "router", "the", "a"),
                "programming": ("compiler", "kernel", "loop", "the", "a")}
    foldoc = []
    for subject, words in subjects.items():
        for k, text in enumerate(tiny_texts(30, seed=len(foldoc) + 1, words=list(words))):
            foldoc.append(([f"{subject[:4]}{k}"], f"{subject[:4]}{k}\n\n   <{subject}> {text}\n"))
    write_dictd(tmp_path / "dictd", "foldoc", foldoc)
    jargon = [([f"j{k}"], f"j{k}\n\n   {t}\n") for k, t in enumerate(tiny_texts(20, seed=11, words=DOMAIN_WORDS))]
    write_dictd(tmp_path / "dictd", "jargon", jargon)
    general = [([f"w{k}"], f"w{k}\n\n   {t}\n") for k, t in enumerate(tiny_texts(400, seed=9, words=GENERAL_WORDS))]
    copies = [([f"copy{k}"], f"copy{k}\n\n   {body.split(chr(10), 2)[2].strip()}\n") for k, (_, body) in
              enumerate(foldoc[:5] + jargon[:5])]
    write_dictd(tmp_path / "dictd", "gcide", general + copies)
    glosses = [([f"n{k}"], t) for k, t in enumerate(tiny_texts(200, seed=13, words=GENERAL_WORDS))]
    write_wordnet(tmp_path / "wordnet", {"noun": glosses})
    monkeypatch.setenv("DOMAINADAPT_DICTD_DIR", str(tmp_path / "dictd"))
    monkeypatch.setenv("DOMAINADAPT_WORDNET_DIR", str(tmp_path / "wordnet"))
    monkeypatch.setenv("DOMAINADAPT_THREADS", "1")
    sources.clear_caches()
    yield tmp_path
    sources.clear_caches()


def _pretrain_base():
    spec = importlib.util.spec_from_file_location("pretrain_base", REPO / "experiments" / "pretrain_base.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_base_corpus_and_tokenizer_hold_no_domain_text_and_no_task_test_entry(general_world):
    from domainadapt.text.general import words
    from domainadapt.text.sources import corpus_texts, subject_task

    pretrain = _pretrain_base()
    texts = pretrain.base_training_texts()
    domain = corpus_texts("dictd:foldoc+dictd:jargon")
    assert len(texts) > 200
    assert not set(texts) & set(domain)
    assert not any(set(words(t)) & {"zorkprotocol", "packets", "router", "compiler", "kernel"} for t in texts)
    task = subject_task({"num_classes": 2, "train_per_class": 4, "test_per_class": 4, "seed": 0})
    for spec in ("general:base", "general:control", "general:all"):
        assert not set(task.test["text"]) & set(corpus_texts(spec))
    control = set(corpus_texts("general:control")) - set(corpus_texts("general:base"))
    assert control and not control & set(texts)  # the ¬DAPT text is unseen by the base
    tokenizer_dir = pretrain.tokenizer_folder(general_world / "out", 80, texts)
    from transformers import AutoTokenizer

    vocab = set(AutoTokenizer.from_pretrained(tokenizer_dir).get_vocab())
    assert "cat" in vocab and "river" in vocab
    assert not {"zorkprotocol", "packets", "router", "compiler", "kernel"} & vocab


def _args(out: Path, *extra: str) -> list[str]:
    return ["--size", "tiny", "--steps", "6", "--batch", "4", "--block-size", "16", "--vocab", "80",
            "--checkpoint-every", "2", "--eval-every", "3", "--out", str(out), *extra]


def test_pretrain_base_writes_a_loadable_folder_and_a_killed_run_resumes_exactly(general_world, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    from domainadapt.train.trainer import Trainer

    pretrain = _pretrain_base()
    assert pretrain.main(_args(general_world / "reference")) == 0
    # the same tokenizer (tokenizers' WordPiece trainer breaks count ties in hash order: huggingface/tokenizers#1794)
    shutil.copytree(general_world / "reference" / "tokenizer-v80", general_world / "killed" / "tokenizer-v80")
    original = Trainer.train_step

    def dying(self):
        original(self)
        if self.step == 3:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", dying)
        with pytest.raises(Killed):
            pretrain.main(_args(general_world / "killed"))
    assert not (general_world / "killed" / "masked-tiny").exists()  # nothing half-written
    assert pretrain.main(_args(general_world / "killed")) == 0
    a = load_file(general_world / "killed" / "masked-tiny" / "model.safetensors")
    b = load_file(general_world / "reference" / "masked-tiny" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    model = AutoModelForMaskedLM.from_pretrained(general_world / "reference" / "masked-tiny")
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 128
    import json

    summary = json.loads((general_world / "reference" / "masked-tiny.json").read_text())
    assert summary["steps"] == 6 and summary["tokens_seen"] == 6 * 4 * 16 and summary["heldout_loss"] > 0


def test_pretrain_base_builds_a_causal_base_and_refuses_bad_input(general_world, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM

    pretrain = _pretrain_base()
    assert pretrain.main(_args(general_world / "out", "--kind", "causal")) == 0
    assert AutoModelForCausalLM.from_pretrained(general_world / "out" / "causal-tiny").config.n_layer == 2
    assert pretrain.main(_args(general_world / "out", "--steps", "0")) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    monkeypatch.setenv("DOMAINADAPT_WORDNET_DIR", str(general_world / "nowhere"))
    assert pretrain.main(_args(general_world / "other")) == 2
    assert "apt-get install wordnet-base" in capsys.readouterr().err


def test_a_written_vocabulary_reads_back_the_tokenizer_it_came_from(tmp_path):
    from domainadapt.text.base_model import BaseModelError, train_wordpiece, vocab_lines, wordpiece_from_vocab

    trained = train_wordpiece(tiny_texts(300, seed=3, words=GENERAL_WORDS), 60)
    (tmp_path / "v.txt").write_text(vocab_lines(trained), encoding="utf-8")
    pinned = wordpiece_from_vocab(tmp_path / "v.txt")
    assert pinned.get_vocab() == trained.get_vocab()
    probes = ["The cat sat on the mat.", "Ünïcödé CATS ran, to 東京!", "zorkprotocol\tpackets\n", "", "[MASK] tree"]
    assert pinned(probes)["input_ids"] == trained(probes)["input_ids"]
    assert pinned("a river", "the stone")["input_ids"] == trained("a river", "the stone")["input_ids"]
    assert pinned.mask_token_id == trained.mask_token_id and pinned.pad_token_id == trained.pad_token_id
    (tmp_path / "bad.txt").write_text("[PAD]\n[UNK]\ncat\n", encoding="utf-8")
    with pytest.raises(BaseModelError, match="bad.txt is not a WordPiece vocabulary"):
        wordpiece_from_vocab(tmp_path / "bad.txt")
    with pytest.raises(BaseModelError, match="cannot read the vocabulary"):
        wordpiece_from_vocab(tmp_path / "missing.txt")


def test_the_shipped_base_vocabulary_is_whole_and_is_the_default():
    from domainadapt.text.base_model import SPECIAL_TOKENS, wordpiece_from_vocab

    pretrain = _pretrain_base()
    path = pretrain.pinned_vocab(8192)
    assert path == REPO / "experiments" / "base_vocab" / "general-wordpiece-8192.txt"
    tokenizer = wordpiece_from_vocab(path)
    assert len(tokenizer) == 8192 and [tokenizer.convert_ids_to_tokens(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert tokenizer.tokenize("The river ran under the green tree.") == ["the", "river", "ran", "under", "the",
                                                                         "green", "tree", "."]
    assert pretrain.pinned_vocab(80) is None


def test_pretrain_base_reads_a_pinned_vocabulary_and_draws_another_base_per_seed(general_world, monkeypatch):
    import json

    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from domainadapt.text.base_model import train_wordpiece, vocab_lines

    pretrain = _pretrain_base()
    pinned_dir = general_world / "pinned"
    pinned_dir.mkdir()
    entries = vocab_lines(train_wordpiece(pretrain.base_training_texts(), 80)).splitlines()
    vocab = "".join(e + "\n" for e in entries[:5] + entries[:4:-1])  # reordered: no trainer run gives these ids
    (pinned_dir / "general-wordpiece-80.txt").write_text(vocab, encoding="utf-8")
    monkeypatch.setattr(pretrain, "PINNED_VOCABS", pinned_dir)
    out = general_world / "out"
    assert pretrain.main(_args(out, "--amp", "none")) == 0
    assert pretrain.main(_args(out, "--amp", "none", "--seed", "1")) == 0
    zero, one = (json.loads((out / f"{name}.json").read_text()) for name in ("masked-tiny", "masked-tiny-s1"))
    assert zero["tokenizer"] == one["tokenizer"] == str(pinned_dir / "general-wordpiece-80.txt")
    assert (zero["seed"], one["seed"], zero["amp"]) == (0, 1, "none")
    assert (out / "tokenizer-v80" / "tokenizer.json").is_file()
    assert vocab_lines(AutoTokenizer.from_pretrained(out / "masked-tiny-s1")) == vocab
    a, b = (load_file(out / name / "model.safetensors") for name in ("init-masked-tiny", "init-masked-tiny-s1"))
    assert not torch.equal(a["bert.encoder.layer.0.attention.self.query.weight"],
                           b["bert.encoder.layer.0.attention.self.query.weight"])
    assert zero["heldout_loss"] != one["heldout_loss"]
    assert pretrain.main(_args(out, "--amp", "none", "--seed", "2", "--train-tokenizer")) == 2  # would mix vocabularies
    assert pretrain.main(_args(general_world / "trained", "--amp", "none", "--train-tokenizer")) == 0
    trained = json.loads((general_world / "trained" / "masked-tiny.json").read_text())
    assert trained["tokenizer"] == "trained on the base text"
    (pinned_dir / "general-wordpiece-80.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncat\n", encoding="utf-8")
    assert pretrain.main(_args(general_world / "other", "--amp", "none")) == 2  # 6 entries, not 80


def test_pretrain_base_picks_bf16_only_where_the_device_computes_it():
    pretrain = _pretrain_base()
    assert pretrain.native_bf16("mps") is False
    if not torch.cuda.is_available():
        assert pretrain.native_bf16("cuda") is False
    assert isinstance(pretrain.native_bf16("cpu"), bool)
