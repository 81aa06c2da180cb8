"""`msae sync --after snakemake|dvc`: record what one orchestrator produced in the other."""

from __future__ import annotations

from msae.commands import Command, single
from msae.config.project import SyncConfig

HELP = "after `snakemake`: dvc commit; after `dvc repro`/`dvc pull`: snakemake --touch (checked before and after)"


def run(config: SyncConfig) -> int:
    from msae.sync import sync

    command = sync(config)
    done = "checks passed; would run" if config.check else "ran"
    print(f"msae sync: {done} `{' '.join(command[2:])}` in {config.root}")
    return 0


COMMANDS = (
    Command(
        "sync",
        help=HELP,
        description=(
            "Switch orchestrators without recomputing. --after snakemake records Snakemake's outputs in "
            "dvc.lock (`dvc commit --force --no-relink`: no result file is rewritten, so Snakemake stays "
            "up to date), refused while Snakemake has jobs left or a DVC output is missing. --after dvc "
            "marks DVC's outputs up to date for Snakemake (`snakemake --touch`), refused while `dvc status` "
            "is not clean or an output is missing. Afterwards neither tool may have anything to do "
            "(`dvc status` clean, no Snakemake job pending), else exit 2 naming what is left."
        ),
        spec=single(SyncConfig),
        run=run,
        order=90,
    ),
)
