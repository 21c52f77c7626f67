"""Run the speed study: ``python main.py [flags]`` is ``specdec run [flags]``."""

import sys

from specdec import cli

if __name__ == "__main__":
    sys.exit(cli.main(["run", *sys.argv[1:]]))
