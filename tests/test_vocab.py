"""Vocabulary building: cleaning, the world's words, filtered common English words, `msae vocab`."""

from __future__ import annotations

import pytest
import wordfreq

from msae.cli import main
from msae.errors import MsaeError
from msae.vocab import build_vocabulary, clean_terms, common_words, is_blocked, read_term_file, world_terms
from msae.world.attributes import ATTRIBUTES


def test_clean_terms_drops_empty_lines_and_case_insensitive_repeats():
    terms, counts = clean_terms(["red", "", "  ", "Red ", "top   left", "top left", "dog", "red"])
    assert terms == ["red", "top left", "dog"]
    assert (counts.kept, counts.empty, counts.duplicate) == (3, 2, 3)
    assert "2 empty" in counts.describe() and "3 duplicate" in counts.describe()


def test_read_term_file_errors_name_the_file(tmp_path):
    with pytest.raises(MsaeError, match="missing.txt"):
        read_term_file(tmp_path / "missing.txt")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(MsaeError, match="blank.txt: the term file has no terms"):
        read_term_file(blank)


def test_world_terms_are_every_attribute_value():
    assert world_terms() == [v for values in ATTRIBUTES.values() for v in values]


def test_common_words_are_filtered_in_frequency_order():
    blocked = frozenset({"time", "people"})
    got = common_words(300, blocked, min_length=4, exclude=["year"])
    expect = [
        w
        for w in wordfreq.iter_wordlist("en")
        if w.isascii() and w.isalpha() and len(w) >= 4 and w not in {"time", "times", "people", "year"}
    ][:300]
    assert got == expect
    assert "time" not in got and "times" not in got  # the plural of a blocked word is blocked too


def test_is_blocked_matches_word_and_plural_only():
    words = frozenset({"ass"})
    assert is_blocked("ass", words) and is_blocked("Asses", words)
    assert not is_blocked("class", words) and not is_blocked("assistant", words)


def test_build_vocabulary_puts_world_words_first_without_repeats():
    terms, counts = build_vocabulary(200, blocklist=frozenset())
    world = world_terms()
    assert terms[: len(world)] == world
    assert len(terms) == len({t.lower() for t in terms}) == len(world) + 200
    assert counts["common"] == 200
    with pytest.raises(MsaeError, match="empty"):
        build_vocabulary(0, include_world=False, blocklist=frozenset())


def test_default_blocklist_removes_profanity():
    pytest.importorskip("better_profanity")
    from msae.vocab import profanity_blocklist

    blocked = profanity_blocklist()
    words = common_words(3000, blocked)
    assert len(blocked) > 500
    assert not {"fuck", "shit", "bitch", "porn"} & set(words)


def test_vocab_command_writes_a_term_file(tmp_path, capsys):
    block = tmp_path / "block.txt"
    block.write_text("house\n")
    out = tmp_path / "v.txt"
    assert main(["vocab", "--out", str(out), "--n-common", "50", "--blocklist", str(block)]) == 0
    lines = out.read_text().splitlines()
    assert lines[: len(world_terms())] == world_terms() and "house" not in lines
    assert len(lines) == len(world_terms()) + 50
    assert main(["vocab", "--out", str(out), "--n-common", "5", "--no-world", "--blocklist", str(block)]) == 0
    assert len(out.read_text().splitlines()) == 5
    assert main(["vocab", "--out", str(out), "--blocklist", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err


def test_term_and_block_lists_that_are_not_utf8_name_the_file_and_byte(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_bytes("red\nbleu cl\xe9\n".encode("latin-1"))
    with pytest.raises(
        MsaeError, match=r"terms.txt: the term file is not UTF-8 text \(invalid continuation byte at byte 11"
    ):
        read_term_file(path)
    assert main(["vocab", "--out", str(tmp_path / "v.txt"), "--n-common", "0", "--blocklist", str(path)]) == 2
    assert not (tmp_path / "v.txt").exists()
