"""`msae vocab`: write the default naming vocabulary (world attribute words + common English)."""

from __future__ import annotations

import sys

from msae.commands import Command, single
from msae.config.embed import VocabConfig


def run(config: VocabConfig) -> int:
    from msae.vocab import write_vocabulary

    terms, counts = write_vocabulary(config)
    print(
        f"msae vocab: wrote {len(terms)} terms to {config.out} ({counts['world']} world words, "
        f"{counts['common']} common words; {counts['blocklist']} blocked entries)",
        file=sys.stderr,
    )
    return 0


COMMANDS = (
    Command(
        "vocab",
        help="write a term file for naming latents: the world's attribute words plus common English words",
        description=(
            "Write a vocabulary (one term per line) for `msae embed --source terms`: the offline world's "
            "attribute words, then the most frequent English words of the wordfreq package that are "
            "alphabetic, long enough and not on a profanity block list. Any other term file works too."
        ),
        spec=single(VocabConfig),
        run=run,
        order=55,
    ),
)
