"""Read dictd dictionaries (FOLDOC, the Jargon File, GCIDE) as offline text corpora.

Debian's dict-foldoc, dict-jargon and dict-gcide install NAME.index and NAME.dict.dz under /usr/share/dictd.
The index has one line per headword, "headword<TAB>offset<TAB>length", the two numbers written in dictd's
base64 digits (A-Z a-z 0-9 + /, most significant first) as a byte range of the uncompressed .dict file;
the .dict.dz is dictzip, i.e. gzip with random-access chunks, which gzip reads as one stream. Several
headwords can share one byte range (FOLDOC's synonyms and expansions); we return one entry per range.

They give the domain-adaptive pretraining corpora of Gururangan et al. (2020), "Don't Stop Pretraining",
ACL: computing (FOLDOC), hacker slang (Jargon) and general English (GCIDE, Webster 1913).
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

DEFAULT_DIR = Path("/usr/share/dictd")
DIR_ENV = "DOMAINADAPT_DICTD_DIR"
B64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(B64_DIGITS)}
DEBIAN_PACKAGES = {"foldoc": "dict-foldoc", "jargon": "dict-jargon", "gcide": "dict-gcide", "wn": "dict-wn",
                   "vera": "dict-vera", "devil": "dict-devil", "elements": "dict-elements"}

# "<programming, language>" at the start of a paragraph, after an optional sense number "2. ".
_SUBJECT_TAG = re.compile(r"^(\d+\.\s*)?<([^<>]+)>\s*")
_SUBJECT_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,'&+/-]*")  # no "=", "@", "." or quotes: not HTML, not e-mail
# (and a tag followed by ":" is BNF, "<postal-address> ::= ...", not a subject)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_HEADER_LINES_MAX = 3  # a long headword wraps over at most this many header lines


class DictdError(Exception):
    """Base of the errors raised here; each message names the file."""


class DictdNotFoundError(DictdError, FileNotFoundError):
    """The dictionary's files are not there."""


class DictdFormatError(DictdError, ValueError):
    """An index line or a byte range that does not follow the dictd format."""


@dataclass(frozen=True)
class DictEntry:
    """One definition. `subjects`: FOLDOC's subject tags, lower-cased; `aliases`: every index headword of it."""

    headword: str
    body: str
    subjects: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


class DictdFiles(NamedTuple):
    index: Path
    data: Path


def _install_hint(name: str) -> str:
    package = DEBIAN_PACKAGES.get(name, f"dict-{name}")
    return f"install the Debian package {package}: apt-get install {package}"


def dictd_path(name: str | os.PathLike) -> DictdFiles:
    """Resolve "foldoc" to DIR/foldoc.index and DIR/foldoc.dict.dz (or foldoc.dict); DIR is /usr/share/dictd
    unless $DOMAINADAPT_DICTD_DIR says otherwise. A path ("some/dir/foldoc", "x.index") is taken as is.

    Raises DictdNotFoundError, naming the missing file and the Debian package to install.
    """
    text = os.fspath(name)
    if os.sep in text or text.endswith(".index") or (os.altsep and os.altsep in text):
        base = Path(text).expanduser()
        base = base.with_suffix("") if base.suffix == ".index" else base
    else:
        base = Path(os.environ.get(DIR_ENV) or DEFAULT_DIR) / text
    stem = base.name
    index = base.with_name(stem + ".index")
    candidates = [base.with_name(stem + ".dict.dz"), base.with_name(stem + ".dict")]
    if not index.is_file():
        raise DictdNotFoundError(f"dictd index {index} not found; {_install_hint(stem)} "
                                 f"(or set ${DIR_ENV} to the folder that holds {stem}.index)")
    data = next((p for p in candidates if p.is_file()), None)
    if data is None:
        raise DictdNotFoundError(f"dictd data file {candidates[0]} (or {candidates[1].name}) not found next to "
                                 f"{index}; {_install_hint(stem)}")
    return DictdFiles(index, data)


def decode_number(digits: str) -> int:
    """dictd's base64 number: "B" = 1, "BA" = 64. Raises ValueError on an empty string or a foreign character."""
    if not digits:
        raise ValueError("empty number")
    value = 0
    for c in digits:
        digit = _B64_VALUE.get(c)
        if digit is None:
            raise ValueError(f"{c!r} is not a dictd base64 digit")
        value = value * 64 + digit
    return value


def read_index(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """(headword, offset, length) per index line, in file order. Raises DictdFormatError on a malformed line."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            try:
                if len(parts) < 3:
                    raise ValueError
                rows.append((parts[0], decode_number(parts[1]), decode_number(parts[2])))
            except ValueError:
                raise DictdFormatError(
                    f"{path}:{lineno}: malformed dictd index line {line[:80]!r}; expected "
                    "'headword<TAB>offset<TAB>length' with numbers in dictd base64 (A-Z a-z 0-9 + /)") from None
    return rows


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _is_metadata(headword: str) -> bool:
    return headword.replace("-", "").lower().startswith("00database")


def parse_block(text: str, headwords: list[str]) -> DictEntry:
    """Turn one definition's raw text into a DictEntry.

    The leading unindented lines that repeat a headword (FOLDOC, Jargon; wrapped lines joined) are dropped and
    the first of them becomes `headword`; GCIDE's first line ("Diluent \\Dil"u*ent\\, a. ...") is content and
    stays. Whitespace is normalised: one space inside a paragraph, one newline between paragraphs. Subject tags
    at the start of a paragraph ("<networking, protocol> ...") move from the body into `subjects`, so a
    subject classifier cannot read its label in the text.
    """
    lines = text.split("\n")
    keys = {_norm(h) for h in headwords}
    names: list[str] = []
    i = 0
    while i < len(lines) and lines[i].strip() and not lines[i][0].isspace():
        group: list[str] = []
        end = None
        for j in range(i, min(i + _HEADER_LINES_MAX, len(lines))):
            if not lines[j].strip() or lines[j][0].isspace():
                break
            group.append(lines[j].strip())
            if _norm(" ".join(group)) in keys:
                end = j + 1
                break
        if end is None:
            break
        names.append(" ".join(" ".join(group).split()))
        i = end

    paragraphs, subjects = [], []
    for raw in _BLANK_LINE.split("\n".join(lines[i:])):
        paragraph = " ".join(raw.split())
        match = _SUBJECT_TAG.match(paragraph)
        if match and _SUBJECT_TEXT.fullmatch(match.group(2).strip()) and not paragraph[match.end():].startswith(":"):
            for subject in match.group(2).split(","):
                subject = " ".join(subject.split()).lower()
                if subject and subject not in subjects:
                    subjects.append(subject)
            paragraph = (match.group(1) or "") + paragraph[match.end():]
        if paragraph:
            paragraphs.append(paragraph)

    if names:
        headword = names[0]
    else:
        first = _norm(lines[0]) if lines else ""
        starts = [h for h in headwords if first.startswith(_norm(h))]
        headword = max(starts, key=len) if starts else headwords[0]
    return DictEntry(headword, "\n".join(paragraphs), tuple(subjects), tuple(dict.fromkeys(headwords)))


def _open_data(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".dz") or path.name.endswith(".gz") else open(path, "rb")


def iter_dictd(path_or_name: str | os.PathLike) -> Iterator[DictEntry]:
    """Stream the entries of a dictd dictionary in .dict order (one per byte range), skipping metadata.

    Metadata = the "00-database-*" / "00databaseshort" entries and any headword sharing their byte range
    (GCIDE's 00-gcide-long, 00-web1913-info). The data file is read once, front to back.
    """
    files = dictd_path(path_or_name)
    blocks: dict[tuple[int, int], list[str]] = {}
    metadata: set[tuple[int, int]] = set()
    for headword, offset, length in read_index(files.index):
        blocks.setdefault((offset, length), []).append(headword)
        if _is_metadata(headword):
            metadata.add((offset, length))
    if not blocks:
        raise DictdFormatError(f"dictd index {files.index} lists no entries")
    with _open_data(files.data) as f:
        position = 0
        for offset, length in sorted(blocks):
            if (offset, length) in metadata:
                continue
            if offset != position:
                f.seek(offset)  # forward: skips (decompressing); backward (overlapping ranges): rewinds
            raw = f.read(length)
            position = offset + len(raw)
            if len(raw) != length:
                raise DictdFormatError(f"{files.index}: entry {blocks[(offset, length)][0]!r} points to bytes "
                                       f"{offset}..{offset + length} past the end of {files.data} "
                                       f"({position} bytes); index and data file do not match")
            entry = parse_block(raw.decode("utf-8", errors="replace"), blocks[(offset, length)])
            if entry.body:
                yield entry


def read_dictd(path_or_name: str | os.PathLike) -> list[DictEntry]:
    """All entries of a dictd dictionary ("foldoc", "jargon", "gcide" or a path); see iter_dictd."""
    return list(iter_dictd(path_or_name))
