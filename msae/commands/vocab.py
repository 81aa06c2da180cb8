"""`msae vocab`: write the default naming vocabulary (world attribute words + common English)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ORDER = 55
HELP = "write a term file for naming latents: the world's attribute words plus common English words"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vocab",
        help=HELP,
        description=(
            "Write a vocabulary (one term per line) for `msae embed --source terms`: the offline world's "
            "attribute words, then the most frequent English words of the wordfreq package that are "
            "alphabetic, long enough and not on a profanity block list. Any other term file works too."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output term file (.txt)")
    parser.add_argument("--n-common", type=int, default=3000,
                        help="number of common English words added; default: %(default)s")
    parser.add_argument("--no-world", action="store_true", help="leave out the offline world's attribute words")
    parser.add_argument("--min-length", type=int, default=3,
                        help="shortest common word kept, in letters; default: %(default)s")
    parser.add_argument("--blocklist", type=Path, default=None,
                        help="file of words to leave out (one per line); default: the better-profanity package's list")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from msae.vocab import build_vocabulary, read_blocklist_lines, write_term_file
    from msae.errors import MsaeError

    blocklist = None
    if args.blocklist is not None:
        if not args.blocklist.is_file():
            raise MsaeError(f"--blocklist {args.blocklist}: file not found")
        blocklist = read_blocklist_lines(args.blocklist.read_text(encoding="utf-8").splitlines())
    terms, counts = build_vocabulary(args.n_common, include_world=not args.no_world, blocklist=blocklist,
                                     min_length=args.min_length)
    write_term_file(args.out, terms)
    print(
        f"msae vocab: wrote {len(terms)} terms to {args.out} ({counts['world']} world words, "
        f"{counts['common']} common words; {counts['blocklist']} blocked entries)",
        file=sys.stderr,
    )
    return 0
