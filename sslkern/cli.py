"""The `sslkern` command line.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args)`;
COMMANDS maps the name to (module, one-line help). Modules are imported only when used.
"""
import argparse
import importlib
import sys

COMMANDS = {
    "info": ("sslkern.commands.info", "print versions, compiled modules, devices and backends"),
    "demo": ("sslkern.commands.demo", "train a small denoising + contractive autoencoder on random data"),
    "bench": ("sslkern.commands.bench", "time a training step: eager, torch.compile, sslkern backends, products-only floor"),
    "train": ("sslkern.commands.train", "train an autoencoder on real images; write filters, metrics, checkpoints"),
}


def main(argv=None):
    from . import __version__

    parser = argparse.ArgumentParser(prog="sslkern", description="Fused kernels for autoencoders.")
    parser.add_argument("--version", action="version", version=f"sslkern {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=module.__doc__))
    args = parser.parse_args(argv)
    return importlib.import_module(COMMANDS[args.command][0]).run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
