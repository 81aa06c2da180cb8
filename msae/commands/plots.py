"""`msae plots template`: write the offline page template for `dvc plots show`."""

from __future__ import annotations

from msae.commands import action, single_action
from msae.config.project import PlotsTemplateConfig

HELP = "write an HTML template with vega inlined so `dvc plots show` renders without internet"


@action("template", PlotsTemplateConfig, HELP)
def run(config: PlotsTemplateConfig) -> int:
    from msae.dvc_plots import write_offline_template

    path = write_offline_template(config.out)
    print(f"msae plots: wrote {path}; render with `dvc plots show --html-template {path}`")
    return 0


COMMANDS = (single_action("plots", 95, run),)
