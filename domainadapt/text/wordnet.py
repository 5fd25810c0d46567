"""Read WordNet's glosses (definitions and examples) as a general-English corpus, offline.

Debian's wordnet-base installs the WordNet 3.0 database under /usr/share/wordnet: data.noun, data.verb, data.adj
and data.adv hold one synset per line (wndb(5WN)):

    synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [ptr ...] [frames ...] | gloss

w_cnt is two hexadecimal digits; words spell spaces as "_"; lines that start with two spaces are the licence
header. One document per synset: "word, word: gloss". With GCIDE, these glosses are the general text the base
model of `experiments/pretrain_base.py` learns English from (`text.general`).

Written by hand: nltk's WordNet reader would parse the same files, but it adds a dependency and a corpus
download step (nltk.download) for a 40-line format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path("/usr/share/wordnet")
DIR_ENV = "DOMAINADAPT_WORDNET_DIR"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
PACKAGE = "wordnet-base"


class WordNetError(Exception):
    """Base of the errors raised here; each message names the file."""


class WordNetNotFoundError(WordNetError, FileNotFoundError):
    """The WordNet database files are not there."""


class WordNetFormatError(WordNetError, ValueError):
    """A data line that does not follow wndb(5WN)."""


@dataclass(frozen=True)
class Synset:
    offset: str
    pos: str
    words: tuple[str, ...]
    gloss: str

    @property
    def text(self) -> str:
        """The synset as one document: its words, then its gloss."""
        return f"{', '.join(self.words)}: {self.gloss}"


def wordnet_dir() -> Path:
    """$DOMAINADAPT_WORDNET_DIR, else /usr/share/wordnet; raises WordNetNotFoundError naming the package."""
    folder = Path(os.environ.get(DIR_ENV) or DEFAULT_DIR).expanduser()
    missing = [f"data.{pos}" for pos in PARTS_OF_SPEECH if not (folder / f"data.{pos}").is_file()]
    if missing:
        raise WordNetNotFoundError(f"WordNet {', '.join(missing)} not found in {folder}; install the Debian package "
                                   f"{PACKAGE}: apt-get install {PACKAGE} (or set ${DIR_ENV})")
    return folder


def parse_line(line: str, pos: str, where: str = "") -> Synset:
    """One data-file line as a Synset (wndb(5WN)); raises WordNetFormatError naming `where`."""
    head, bar, gloss = line.partition(" | ")
    fields = head.split()
    try:
        if not bar or len(fields) < 4:
            raise ValueError("no ' | ' gloss separator" if not bar else "fewer than 4 fields")
        count = int(fields[3], 16)
        if count < 1 or len(fields) < 4 + 2 * count:
            raise ValueError(f"w_cnt {fields[3]} does not match the words on the line")
    except ValueError as err:
        raise WordNetFormatError(f"{where}: not a WordNet data line ({err}): {line[:80]!r}") from None
    words = tuple(fields[4 + 2 * k].replace("_", " ") for k in range(count))
    return Synset(offset=fields[0], pos=pos, words=words, gloss=" ".join(gloss.split()))


def read_synsets(folder: str | os.PathLike | None = None) -> list[Synset]:
    """Every synset with a non-empty gloss, noun, verb, adjective then adverb, in file order."""
    folder = Path(folder) if folder is not None else wordnet_dir()
    synsets = []
    for pos in PARTS_OF_SPEECH:
        path = folder / f"data.{pos}"
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if line.startswith("  ") or not line.strip():  # the licence header
                    continue
                synset = parse_line(line.rstrip("\n"), pos, where=f"{path}:{number}")
                if synset.gloss:
                    synsets.append(synset)
    return synsets


def read_glosses(folder: str | os.PathLike | None = None) -> list[str]:
    """The glosses as documents ("word, word: gloss"), one per synset."""
    return [s.text for s in read_synsets(folder)]
