"""``seawall hash``: one JSON object per line per file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from seawall.signals.hashing import expand_paths, hash_file_or_error, parse_signal_names


def register(app: typer.Typer) -> None:
    """Add the ``hash`` command to the root app."""
    app.command("hash")(hash_command)


def hash_command(
    paths: Annotated[list[Path], typer.Argument(help="Files (or folders with --recursive).")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Hash every file below folders.")] = False,
    signals: Annotated[
        str,
        typer.Option(help="Comma-separated signal types (plugins too)."),
    ] = "md5,sha1,sha256,pdq,vpdq",
    dihedral: Annotated[bool, typer.Option("--dihedral", help="Add the 8 PDQ rotation/flip hashes.")] = False,
    fast: Annotated[
        bool,
        typer.Option("--fast", help="Reduced-size JPEG decoding: faster, PDQ not bit-exact."),
    ] = False,
    every_n_frames: Annotated[
        int | None,
        typer.Option("--every-n-frames", min=1, help="vPDQ: hash every Nth frame (default all)."),
    ] = None,
) -> None:
    """Hash media files: md5/sha1/sha256 of the bytes, PDQ of images, vPDQ of videos.

    Prints one JSON object per line per file; a file that fails prints {"path", "error"} and
    the exit status is then 1.
    """
    try:
        names = parse_signal_names(signals)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--signals") from None
    files = list(expand_paths(paths, recursive=recursive))
    failed = 0
    progress = None
    task = None
    if sys.stderr.isatty() and len(files) > 1:
        from rich.console import Console
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        task = progress.add_task("hashing", total=len(files))
        progress.start()
    try:
        for path in files:
            result = hash_file_or_error(
                path, signals=names, dihedral=dihedral, fast=fast, every_n_frames=every_n_frames
            )
            failed += "error" in result
            typer.echo(json.dumps(result))
            if progress is not None and task is not None:
                progress.advance(task)
    finally:
        if progress is not None:
            progress.stop()
    if failed:
        raise typer.Exit(1)
