"""The `sslkern` command line.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args)`;
COMMANDS maps the name to (module, one-line help). Modules are imported only when used.

User errors get one line on stderr and exit status 2, without a traceback: a bad argument
(argparse, with the types of sslkern/commands/_args.py), a `UsageError`, a ValueError or
TypeError that sslkern's own validation raised, a missing input file, a backend that cannot
run. Anything else is a bug and shows its traceback. SSLKERN_TRACEBACK=1 shows the traceback
of user errors too.
"""
import argparse
import importlib
import os
import sys

from .commands._args import EXIT_USAGE, UsageError

COMMANDS = {
    "info": ("sslkern.commands.info", "print versions, compiled modules, devices and backends"),
    "demo": ("sslkern.commands.demo", "train a small denoising + contractive autoencoder on random data"),
    "bench": ("sslkern.commands.bench", "time a training step: eager, torch.compile, sslkern backends, products-only floor"),
    "train": ("sslkern.commands.train", "train an autoencoder on real images; write filters, metrics, checkpoints"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, answering a bad command line in one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from . import __version__

    parser = ArgumentParser(prog="sslkern", description="Fused kernels for autoencoders.")
    parser.add_argument("--version", action="version", version=f"sslkern {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # subparsers take ArgumentParser above
    parser.commands = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        parser.commands[name] = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(parser.commands[name])
    return parser


def user_error(exc):
    """Whether `exc` is the user's mistake (answered in one line) rather than a bug."""
    from .backends import BackendError
    from .train.checkpoints import CheckpointError  # names the path and the OS error

    if isinstance(exc, (UsageError, FileNotFoundError, BackendError, CheckpointError)):
        return True
    if isinstance(exc, (ValueError, TypeError)):
        return _raised_by_sslkern(exc)
    return False


def _raised_by_sslkern(exc):
    """The exception was raised deliberately by sslkern's own code: the innermost sslkern frame
    (torch._check_* helpers it called aside) is a `raise` or `torch._check...` line. A
    ValueError from inside torch, numpy or a builtin (int("abc") in our code) is a bug."""
    import linecache

    tb, last = exc.__traceback__, None
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if name == "sslkern" or name.startswith("sslkern."):
            last = tb
        elif last is not None and name != "torch":  # left sslkern for another library
            last = None
        tb = tb.tb_next
    if last is None:
        return False
    line = linecache.getline(last.tb_frame.f_code.co_filename, last.tb_lineno).strip()
    return line.startswith(("raise ", "torch._check"))


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the subcommand's parser: "sslkern bench: error: ..."
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    prog = f"{parser.prog} {args.command}"
    try:
        return importlib.import_module(COMMANDS[args.command][0]).run(args) or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user errors answered, bugs re-raised
        if not user_error(exc) or os.environ.get("SSLKERN_TRACEBACK") == "1":
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
