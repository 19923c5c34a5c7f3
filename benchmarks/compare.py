"""Training-step comparison, the same as `sslkern bench` (see its --help):

    python benchmarks/compare.py --shapes 32x784x512 256x784x512 1024x784x512 \
        --json benchmarks/results_cpu.json --plot benchmarks/step_cpu.png
"""
import sys

from sslkern.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
