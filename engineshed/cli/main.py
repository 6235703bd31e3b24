"""The ``engineshed`` program: the client commands (import, train, recognize, models list|show, jobs list|cancel|
retry) and the server commands (dev, serve, worker, migrate, token, engines, models pull).

The client commands talk to the server only through :mod:`engineshed.client`, so they work against any
engineshed, local or remote, and need nothing of the server's packages. The server commands are
``gateway.cli``'s, imported only when the command line is not a client command (a server command, the program's
help, or a mistake whose message lists every command).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engineshed.cli import engine as engine_cli
from engineshed.cli import media as media_cli
from engineshed.cli.commands import dispatch
from engineshed.cli.output import MISSING

CLIENT_COMMANDS = ("import", "train", "recognize", "jobs", "engine")
CLIENT_MODEL_COMMANDS = ("list", "show")


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--url", help="the gateway (default: ENGINESHED_URL, else the local `make run`)")
    group.add_argument("--token", help="API token (default: ENGINESHED_TOKEN, else the local admin token file)")
    group.add_argument("--data-dir", type=Path, help="the `make run` data dir holding admin-token (default: .engineshed)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")


def add_commands(sub: argparse._SubParsersAction, models_sub: argparse._SubParsersAction) -> None:
    """Add the client commands to the program's subcommands (and ``list``/``show`` under ``models``)."""
    p = sub.add_parser("import", help="upload a folder of files into a library (resumable, concurrent)",
                       description="Upload a folder into a library. Files already in the library (same content in the same "
                                   "entity) are skipped, so running it again resumes an interrupted import.")
    p.add_argument("directory", type=Path, metavar="DIR")
    p.add_argument("--library", required=True, help="library name (created when missing) or id")
    p.add_argument("--type", dest="identifier_type", default="face", help="identifier type of the files (default: face)")
    p.add_argument("--library-type", help="library type when it is created (default: from --type: face→people, image→objects)")
    p.add_argument("--entity-per-folder", action="store_true",
                   help="each subfolder of DIR is one entity named after it (default: each file is its own entity)")
    p.add_argument("--concurrency", type=int, default=8, help="uploads at once (default: 8)")
    p.add_argument("--multipart", action="store_true",
                   help="send each file through the gateway as a multipart upload instead of straight to storage through "
                        "writable URLs (for a storage the client cannot reach)")
    _common(p)

    p = sub.add_parser("train", help="train a library's model; --wait follows it live")
    p.add_argument("library", metavar="LIBRARY", help="library name or id")
    p.add_argument("--engine", help="engine id (default: the library type's preferred engine)")
    p.add_argument("--config", help="engine options as a JSON object")
    p.add_argument("--wait", action="store_true",
                   help="follow the job with a live progress bar until it ends, then print what it used and skipped; "
                        f"exits {MISSING} when an entity was left with no usable identifier")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --wait: exit 0 even when entities were left with no usable identifier (still listed)")
    _common(p)

    p = sub.add_parser("recognize", help="recognize a file with a library's model (its default engine's default model); "
                                          "a video or long recording is recognized over time, as a job, with a progress "
                                          "bar and a table of who appears and speaks when")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--library", help="library name or id: the API answers with the library's model, the default model of "
                                     "its default engine (README, \"The library's model\")")
    p.add_argument("--model", dest="library_engine_model_id", help="a trained model's id instead of --library")
    p.add_argument("--model-id", help="a registered auto_tagging model (name, name@3, name@alias) instead")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float)
    media_cli.add_arguments(p)
    _common(p)

    p = models_sub.add_parser("list", help="registered models (the organization's and the system's), or with --library "
                                           "a library's trained models with accuracy, coverage and default")
    p.add_argument("--library", help="library name or id: list its trained models instead")
    p.add_argument("--application", choices=["embedding", "auto_tagging", "auto_annotation"])
    p.add_argument("--name")
    p.add_argument("--limit", type=int, default=100)
    _common(p)
    p = models_sub.add_parser("show", help="one registered model version: NAME, NAME@VERSION or NAME@ALIAS")
    p.add_argument("ref", metavar="NAME[@VERSION|@ALIAS]")
    _common(p)

    p_jobs = sub.add_parser("jobs", help="list, cancel and retry jobs")
    jobs_sub = p_jobs.add_subparsers(dest="jobs_command", required=True)
    p = jobs_sub.add_parser("list", help="the organization's jobs, newest first")
    p.add_argument("--status", action="append", choices=["pending", "queued", "running", "complete", "failed", "cancelled"])
    p.add_argument("--library", help="library name or id")
    p.add_argument("--limit", type=int, default=30)
    _common(p)
    for name, text in (("cancel", "cancel a queued or running job"), ("retry", "run a failed or cancelled job again")):
        p = jobs_sub.add_parser(name, help=text)
        p.add_argument("job_id", metavar="JOB_ID")
        _common(p)
    engine_cli.add_parser(sub)


def _program() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="engineshed", description="GraphQL gateway that trains recognition engines")
    return parser, parser.add_subparsers(dest="command", required=True)


def names_client_command(argv: list[str]) -> bool:
    """Whether the command line names one of the client commands (the program has no options before them)."""
    if not argv:
        return False
    return argv[0] in CLIENT_COMMANDS or (argv[0] == "models" and len(argv) > 1 and argv[1] in CLIENT_MODEL_COMMANDS)


def run_client(argv: list[str]) -> int:
    """A client command line, parsed with the client commands alone."""
    parser, sub = _program()
    models_sub = sub.add_parser("models").add_subparsers(dest="models_command", required=True)
    add_commands(sub, models_sub)
    args = parser.parse_args(argv)
    return engine_cli.run(args) if args.command == "engine" else dispatch(args)


def run_server(argv: list[str]) -> int:
    """Any other command line, parsed with every command so that help and errors name them all."""
    from gateway import cli as server

    parser, sub = _program()
    add_commands(sub, server.add_commands(sub))
    return server.run(parser.parse_args(argv), parser)


def main(argv: list[str] | None = None) -> None:
    """The program: exits with the command's status."""
    arguments = sys.argv[1:] if argv is None else argv
    sys.exit(run_client(arguments) if names_client_command(arguments) else run_server(arguments))


if __name__ == "__main__":
    main()
