"""Vocabularies for naming SAE latents: term lists, cleaned, written one term per line.

The default vocabulary is the offline world's attribute words (so its known concepts can be
named and scored) plus the most frequent English words from the `wordfreq` package, a maintained
frequency list that works offline. Frequent words include profanity and slurs; they are removed
with the word list shipped by the `better-profanity` package (or a user-given block list), so no
hand-typed word list is needed. A researcher's own vocabulary (SpLiCE, CLIP-Dissect, LAION) is any
text file with one term per line; `msae embed --source terms` embeds either kind.

Cleaning: whitespace is collapsed, empty lines dropped and repeated terms dropped case-insensitively
(CLIP's tokenizer lower-cases, so "Red" and "red" would get identical embeddings); the counts are
returned so the command can log them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from msae.config.embed import VocabConfig
from msae.errors import MsaeError
from msae.io import read_text, write_text_atomic

DEFAULT_MIN_LENGTH = 3
PROFANITY_PACKAGE = "better_profanity"
PROFANITY_FILE = "profanity_wordlist.txt"


@dataclass(frozen=True)
class CleanCounts:
    """What cleaning removed from a raw term list."""

    kept: int
    empty: int
    duplicate: int

    def describe(self) -> str:
        return f"{self.kept} term(s) kept, {self.empty} empty line(s) and {self.duplicate} duplicate(s) removed"


def clean_terms(lines: Iterable[str]) -> tuple[list[str], CleanCounts]:
    """Collapse whitespace, drop empty lines and case-insensitive repeats (first occurrence kept)."""
    seen: set[str] = set()
    kept: list[str] = []
    empty = duplicate = 0
    for line in lines:
        term = " ".join(str(line).split())
        if not term:
            empty += 1
            continue
        key = term.lower()
        if key in seen:
            duplicate += 1
            continue
        seen.add(key)
        kept.append(term)
    return kept, CleanCounts(kept=len(kept), empty=empty, duplicate=duplicate)


def read_term_file(path: str | os.PathLike[str]) -> tuple[list[str], CleanCounts]:
    """A term file (one term per line), cleaned; an error naming the file if it has no term."""
    p = Path(path)
    terms, counts = clean_terms(read_text(p, "term file").splitlines())
    if not terms:
        raise MsaeError(f"{p}: the term file has no terms (only empty lines)")
    return terms, counts


def world_terms() -> list[str]:
    """Every attribute value of the offline world, in attribute order (the words of its captions)."""
    from msae.world.attributes import ATTRIBUTES

    return [value for values in ATTRIBUTES.values() for value in values]


def profanity_blocklist() -> frozenset[str]:
    """The profanity/slur list shipped by `better-profanity` (one entry per line), lower-cased."""
    try:
        text = resources.files(PROFANITY_PACKAGE).joinpath(PROFANITY_FILE).read_text(encoding="utf-8")
    except ModuleNotFoundError as exc:
        raise MsaeError(
            "the default profanity filter needs the 'better-profanity' package (pip install better-profanity); "
            "or pass --blocklist FILE with your own list"
        ) from exc
    return read_blocklist_lines(text.splitlines())


def read_blocklist_lines(lines: Iterable[str]) -> frozenset[str]:
    return frozenset(" ".join(line.split()).lower() for line in lines if line.strip())


def is_blocked(word: str, blocklist: frozenset[str]) -> bool:
    """Blocked if the word or its singular (trailing 's'/'es' removed) is on the list."""
    w = word.lower()
    candidates = {w}
    if w.endswith("es"):
        candidates.add(w[:-2])
    if w.endswith("s"):
        candidates.add(w[:-1])
    return not candidates.isdisjoint(blocklist)


def common_words(
    n: int,
    blocklist: frozenset[str],
    min_length: int = DEFAULT_MIN_LENGTH,
    exclude: Iterable[str] = (),
    language: str = "en",
) -> list[str]:
    """The `n` most frequent words of `wordfreq` that are purely alphabetic ASCII, at least
    `min_length` letters, not blocked and not in `exclude` (case-insensitive), in frequency order."""
    if n < 0:
        raise MsaeError(f"--n-common {n}: must be >= 0")
    import wordfreq

    excluded = {e.lower() for e in exclude}
    words: list[str] = []
    for word in wordfreq.iter_wordlist(language):
        if len(words) >= n:
            break
        if not (word.isascii() and word.isalpha() and len(word) >= min_length):
            continue
        if word.lower() in excluded or is_blocked(word, blocklist):
            continue
        excluded.add(word.lower())
        words.append(word)
    if len(words) < n:
        raise MsaeError(f"--n-common {n}: wordfreq's {language!r} list has only {len(words)} usable words")
    return words


def build_vocabulary(
    n_common: int,
    include_world: bool = True,
    blocklist: frozenset[str] | None = None,
    min_length: int = DEFAULT_MIN_LENGTH,
) -> tuple[list[str], dict[str, int]]:
    """The default vocabulary: world attribute words first, then `n_common` common words.
    Returns the terms and counts for the log (world, common)."""
    world = world_terms() if include_world else []
    blocked = profanity_blocklist() if blocklist is None else blocklist
    common = common_words(n_common, blocked, min_length=min_length, exclude=world)
    terms, _ = clean_terms([*world, *common])
    if not terms:
        raise MsaeError("the vocabulary is empty: use --n-common > 0 or leave out --no-world")
    return terms, {"world": len(world), "common": len(common), "blocklist": len(blocked)}


def write_term_file(path: str | os.PathLike[str], terms: Iterable[str]) -> Path:
    """Write terms one per line, atomically."""
    return write_text_atomic(path, "".join(f"{t}\n" for t in terms))


def write_vocabulary(config: VocabConfig) -> tuple[list[str], dict[str, int]]:
    """`msae vocab`: build the vocabulary of `config` and write it to `config.out`."""
    blocklist = None
    if config.blocklist is not None:
        blocklist = read_blocklist_lines(read_text(config.blocklist, "--blocklist file").splitlines())
    terms, counts = build_vocabulary(
        config.n_common, include_world=not config.no_world, blocklist=blocklist, min_length=config.min_length
    )
    write_term_file(config.out, terms)
    return terms, counts
