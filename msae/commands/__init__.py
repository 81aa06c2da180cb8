"""Subcommands of `msae`, one module per stage (discovered by msae.cli)."""
