"""Print what this installation can do: versions, compiled modules, devices, backends."""
import json


def add_arguments(parser):
    pass


def run(args):
    from ..info import info

    print(json.dumps(info(), indent=2, default=str))
