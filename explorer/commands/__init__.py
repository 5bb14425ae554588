"""CLI sub-commands, one module each; see `explorer.cli`."""
