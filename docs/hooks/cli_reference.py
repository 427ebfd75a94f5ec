"""mkdocs hook: write the CLI reference and the default configuration from the parsers themselves at build time.

Every command's page section is what ``fusionseg COMMAND --help`` prints, captured in-process through the
``fusionseg`` entry point (`fusionseg.cli.main`), so the pages follow the code: the commands are listed by
`fusionseg.cli.command_lines` (core commands and the domains' `COMMANDS` registry), never by module path, so a
command's parser may move (``fusionseg.sem.segment`` becoming a package) without touching this file.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

from mkdocs.structure.files import File

LIGHTNING = ("fit", "validate", "test", "predict")
ROOT = Path(__file__).resolve().parents[2]


def _capture(argv: list[str]) -> str:
    """stdout of ``fusionseg ARGV`` (argparse and jsonargparse print help and exit)."""
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)  # torch/PyG import-time chatter is not the docs' business
        from fusionseg.cli import main

        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
    if code not in (0, None):
        raise RuntimeError(f"`fusionseg {' '.join(argv)}` exited {code}: the CLI reference cannot be generated")
    return out.getvalue().rstrip() + "\n"


def _block(text: str, indent: str = "", lang: str = "text") -> str:
    lines = [f"```{lang}", *text.rstrip("\n").splitlines(), "```"]
    return "\n".join(indent + line if line else line for line in lines) + "\n"


def cli_page() -> str:
    from fusionseg.cli import command_lines

    commands = command_lines()
    parts = [
        "# Command-line reference\n",
        "Generated when the site is built, from the parsers themselves: each section is what "
        "`fusionseg COMMAND --help` prints. `--debug` (any command) shows a traceback instead of the one-paragraph "
        "error.\n",
        _block(_capture(["--help"])),
    ]
    for name, line in commands.items():
        if name in LIGHTNING:
            continue
        parts += [f"## `fusionseg {name}`\n", f"{line[:1].upper()}{line[1:]}.\n", _block(_capture([name, "--help"]))]
    parts += [
        "## `fusionseg fit | validate | test | predict`\n",
        "LightningCLI subcommands: every key of a config can be given on the command line "
        "(`--model.backbone=gat`); see [Train, test and predict](../guide/training.md) and the "
        "[configuration reference](configuration.md). Their full help, as printed:\n",
    ]
    for name in LIGHTNING:
        parts += [f'??? note "`fusionseg {name} --help`"\n', _block(_capture([name, "--help"]), "    ")]
    return "\n".join(parts)


def config_page() -> str:
    parts = [
        "# Default configuration, resolved\n",
        "Generated when the site is built: `fusionseg fit --config configs/default.yaml --print_config`, every key "
        "with the value the shipped configuration gives it. The keys are explained in the "
        "[configuration reference](configuration.md).\n",
        _block(_capture(["fit", "--config", str(ROOT / "configs" / "default.yaml"), "--print_config"]), lang="yaml"),
        "## The shipped configurations\n",
        "| file | what it is |",
        "| --- | --- |",
    ]
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        comment = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("# ").strip())
        parts.append(f"| `configs/{path.name}` | {' '.join(comment).replace('|', '/')} |")
    return "\n".join(parts) + "\n"


def on_files(files, config):
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal; the same width on every machine
    os.environ.setdefault("WANDB_MODE", "offline")
    for uri, make in (("reference/cli.md", cli_page), ("reference/default-config.md", config_page)):
        files.append(File.generated(config, uri, content=make()))
    return files
