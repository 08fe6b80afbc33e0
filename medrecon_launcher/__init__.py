"""The `medrecon` command's entry point, kept outside the medrecon package.

Importing medrecon loads torch and MONAI (1-2 s before the command's own handlers exist). A Ctrl-C
in that time ends the command as a Ctrl-C does later, with one line and exit code 130, instead of a
traceback from inside torch's import machinery.
"""

import sys

EXIT_CANCELLED = 130  # as medrecon.cli's


def main() -> None:
    try:
        from medrecon.cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was written\n")
        sys.exit(EXIT_CANCELLED)
    command()
