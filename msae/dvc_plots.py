"""An offline HTML template for `dvc plots show`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so plots stay blank without
internet. The same three libraries ship (MIT/BSD licensed) inside the Snakemake package, which
msae depends on; this module inlines them into a template DVC fills with its `{plot_divs}`.
"""

from __future__ import annotations

from pathlib import Path

from msae.errors import MsaeError
from msae.io import write_text_atomic

LIBRARIES = ("vega", "vega-lite", "vega-embed")
PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>msae: DVC plots</title>
{scripts}
  <style>body {{ font-family: sans-serif; }} table {{ border-spacing: 15px; }}</style>
</head>
<body>
  {{plot_divs}}
</body>
</html>
"""


def library_sources() -> dict[str, str]:
    """The JavaScript of each library, read from Snakemake's bundled report assets."""
    import snakemake

    assets = Path(snakemake.__file__).resolve().parent / "assets" / "data"
    sources = {}
    for name in LIBRARIES:
        path = assets / name / f"{name}.js"
        if not path.is_file():
            raise MsaeError(f"{path}: not found; this Snakemake version does not bundle {name}")
        sources[name] = path.read_text(encoding="utf-8")
    return sources


def offline_template() -> str:
    """The page with the three libraries inlined (a `</script` inside them is escaped)."""
    escaped = {name: source.replace("</script", "<\\/script") for name, source in library_sources().items()}
    scripts = "\n".join(f"  <script>/* {name} */\n{source}\n  </script>" for name, source in escaped.items())
    return PAGE.format(scripts=scripts)


def write_offline_template(path: str | Path) -> Path:
    """Write the template (about 2 MB) for `dvc plots show --html-template PATH`; an identical
    file is left as it is (same modification time)."""
    path, text = Path(path), offline_template()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return path
    return write_text_atomic(path, text)
