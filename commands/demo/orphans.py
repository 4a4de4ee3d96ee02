"""Children of the demo die with it, even when it is killed with SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent (the thread
    that forked it) ends; exit at once if `parent_pid` is already gone.
    Call first thing in a child process."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        sys.exit(1)


def main(argv: list[str]) -> None:
    """`python -m commands.demo.orphans PARENT_PID PROGRAM [ARGS...]`: run
    PROGRAM (an absolute path) so that it dies with PARENT_PID's thread
    (the setting survives the exec)."""
    die_with_parent(int(argv[0]))
    os.execv(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
