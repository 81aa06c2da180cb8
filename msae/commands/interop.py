"""`msae import official|saelens|sparsify`, `msae export`, `msae push`: share SAEs with other code."""

from __future__ import annotations

from msae.commands import Command, Group, action, single
from msae.config.interop import ExportConfig, ImportConfig, OfficialImportConfig, PushConfig


@action("official", OfficialImportConfig, "an official MSAE checkpoint (.pth, loaded weights-only)")
def run_official(config: OfficialImportConfig) -> int:
    from msae.interop.official import import_official

    out = import_official(
        config.path,
        config.out,
        threshold=config.threshold,
        model=config.model,
        pretrained=config.pretrained,
        modality=config.modality,
    )
    print(f"msae import: wrote {out}")
    return 0


def _import(kind: str, help: str) -> Command:
    @action(kind, ImportConfig, help)
    def run(config: ImportConfig) -> int:
        if kind == "saelens":
            from msae.interop.saelens import import_saelens as convert
        else:
            from msae.interop.sparsify import import_sparsify as convert
        out = convert(
            config.path, config.out, model=config.model, pretrained=config.pretrained, modality=config.modality
        )
        print(f"msae import: wrote {out}")
        return 0

    return run


def run_export(config: ExportConfig) -> int:
    if config.format == "saelens":
        from msae.interop.saelens import export_saelens as convert
    else:
        from msae.interop.sparsify import export_sparsify as convert
    out = convert(config.sae, config.out, dtype=config.dtype)
    print(f"msae export: wrote {out} ({config.format})")
    return 0


def run_push(config: PushConfig) -> int:
    from msae.interop.hub import push

    url = push(
        config.sae,
        config.repo,
        config.eval,
        private=config.private,
        base_model=config.base_model,
        commit_message=config.message,
    )
    print(f"msae push: {url}")
    return 0


COMMANDS = (
    Group(
        "import",
        help="write an SAE of the official MSAE code, SAELens or sparsify as an msae run",
        order=96,
        commands=(
            run_official,
            _import("saelens", "a SAELens SAE folder (cfg.json, sae_weights.safetensors)"),
            _import("sparsify", "a sparsify SAE folder (cfg.json, sae.safetensors)"),
        ),
    ),
    Command(
        "export",
        help="write an msae run in the SAELens or sparsify layout",
        spec=single(ExportConfig),
        run=run_export,
        order=97,
    ),
    Command(
        "push",
        help="upload an msae run to the Hugging Face Hub with a model card",
        spec=single(PushConfig),
        run=run_push,
        order=98,
    ),
)
