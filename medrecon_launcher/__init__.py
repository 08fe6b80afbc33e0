"""The `medrecon` command's entry point, kept outside the medrecon package.

Importing medrecon loads torch and MONAI (1-2 s before the command's own handlers exist). A Ctrl-C
in that time ends the command as a Ctrl-C does later, with one line and exit code 130, instead of a
traceback from inside torch's import machinery. The interrupt is handled by a signal handler that
ends the process at once rather than by a KeyboardInterrupt: one raised while torch's C++ code is
calling back into Python cannot unwind and aborts the process instead (exit -6, "terminate called").
"""

import os
import signal
import sys

EXIT_CANCELLED = 130  # as medrecon.apps.cli's


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"interrupted while starting; nothing was written\n")
    os._exit(EXIT_CANCELLED)


def main() -> None:
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:  # not where SIGINT is ignored (a background job)
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    try:
        from medrecon.apps.cli import main as command
    except KeyboardInterrupt:  # a handler other than ours raised it
        sys.stderr.write("interrupted while starting; nothing was written\n")
        sys.exit(EXIT_CANCELLED)
    finally:
        if previous is not None:  # None: a handler not set from Python, which stays as it was
            signal.signal(signal.SIGINT, previous)
    command()
