"""dictd reader: a dictionary written by the test (index + dict.dz) is parsed back, and bad files fail clearly."""

from __future__ import annotations

import gzip

import pytest
from text_fixtures import FOLDOC_LIKE, b64_number, write_dictd

from domainadapt.text.dictd import (
    DictdFormatError,
    DictdNotFoundError,
    decode_number,
    dictd_path,
    read_dictd,
    read_index,
)


def by_headword(entries):
    return {e.headword: e for e in entries}


def test_numbers_use_dictd_base64_digits():
    assert [decode_number(s) for s in ("A", "B", "/", "BA", "Gb9L")] == [0, 1, 63, 64, 1687371]  # 6·64³ + 27·64² + 61·64 + 11
    assert all(decode_number(b64_number(n)) == n for n in (0, 5, 64, 4095, 4096, 10**7))
    with pytest.raises(ValueError):
        decode_number("A=")


def test_entries_are_parsed_back_with_headwords_bodies_and_subjects(tmp_path):
    entries = read_dictd(write_dictd(tmp_path))
    found = by_headword(entries)
    assert list(found) == ["packet", "compiler", "Language for Tiny Investigation of Abstractions", "kernel", "foo",
                           "Diluent"]  # .dict order, metadata skipped, one entry per definition
    assert found["packet"].body == "A unit of data sent over a {network}.\n(1996-06-25)"
    assert found["packet"].subjects == ("networking",)
    assert found["packet"].aliases == ("packet", "packets")
    assert found["compiler"].subjects == ("programming", "language")
    assert found["compiler"].body == "A program that turns {source code} into machine code."
    wrapped = found["Language for Tiny Investigation of Abstractions"]  # header wrapped over two lines + an alias
    assert wrapped.subjects == ("language",) and wrapped.body.startswith("A wrapped headword")
    assert "<jo@example.org>" in wrapped.body  # an e-mail address is no subject tag
    assert found["kernel"].subjects == ("operating system", "mathematics")
    assert found["kernel"].body == "1. The core of an OS.\n2. The null space."
    assert found["foo"].subjects == ()
    assert found["Diluent"].body.startswith('Diluent \\Dil"u*ent\\, a.')  # GCIDE: the first line is content


def test_metadata_and_ranges_shared_with_it_are_skipped(tmp_path):
    headwords = {h for e in read_dictd(write_dictd(tmp_path)) for h in e.aliases}
    assert not any(h.startswith("00") for h in headwords)


def test_plain_dict_and_dictzip_read_alike(tmp_path):
    assert read_dictd(write_dictd(tmp_path / "dz")) == read_dictd(write_dictd(tmp_path / "plain", compress=False))


def test_dictd_path_resolves_a_name_in_the_directory_from_the_environment(tmp_path, monkeypatch):
    write_dictd(tmp_path, "foldoc")
    monkeypatch.setenv("DOMAINADAPT_DICTD_DIR", str(tmp_path))
    files = dictd_path("foldoc")
    assert files.index == tmp_path / "foldoc.index" and files.data == tmp_path / "foldoc.dict.dz"
    assert len(read_dictd("foldoc")) == len(FOLDOC_LIKE) - 2
    assert dictd_path(tmp_path / "foldoc.index") == files  # a path is taken as is


def test_missing_files_name_the_file_and_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINADAPT_DICTD_DIR", str(tmp_path))
    with pytest.raises(DictdNotFoundError, match=r"foldoc\.index.*apt-get install dict-foldoc") as err:
        read_dictd("foldoc")
    assert isinstance(err.value, FileNotFoundError)
    (tmp_path / "jargon.index").write_text("x\tA\tB\n")
    with pytest.raises(FileNotFoundError, match=r"jargon\.dict\.dz.*apt-get install dict-jargon"):
        read_dictd("jargon")


@pytest.mark.parametrize("line", ["no tabs here", "word\tA", "word\tA!\tB", "word\t\tB"])
def test_a_malformed_index_line_is_reported_with_file_and_line(tmp_path, line):
    good_lines = sum(len(headwords) for headwords, _ in FOLDOC_LIKE)
    index = write_dictd(tmp_path, index_lines=[line])
    with pytest.raises(DictdFormatError, match=rf"tiny\.index:{good_lines + 1}: malformed") as err:
        read_index(index)
    assert isinstance(err.value, ValueError)


def test_an_index_pointing_past_the_data_fails_clearly(tmp_path):
    index = write_dictd(tmp_path, index_lines=[f"ghost\t{b64_number(10**6)}\tBA"])
    with pytest.raises(DictdFormatError, match="past the end"):
        read_dictd(index)


def test_a_truncated_data_file_fails_clearly(tmp_path):
    index = write_dictd(tmp_path)
    data = tmp_path / "tiny.dict.dz"
    raw = gzip.decompress(data.read_bytes())
    data.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(DictdFormatError, match="do not match"):
        read_dictd(index)


def test_package_exports_resolve_lazily():
    from domainadapt import text

    assert text.read_dictd is read_dictd
    assert all(hasattr(text, name) for name in text.__all__)
