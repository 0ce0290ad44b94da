"""Child processes that do not outlive the process that started them.

A service or ``sipmesh up`` killed hard (OOM, SIGKILL, a crash in C) runs no
clean-up, so whatever it started (an rtpengine, the services of ``up``) would
keep running with no one to stop it, holding its ports.
"""

from __future__ import annotations

import shutil
import sys

__all__ = ["dies_with_parent"]


def dies_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when its parent dies, SIGKILL included.

    util-linux's ``setpriv --pdeathsig`` (Essential on Debian) sets the Linux
    parent-death signal and execs the program, so its pid stays the child's.
    Linux ties that signal to the *thread* that forked: start such a child
    from a thread that lives as long as the parent (the event loop's), never
    from a worker thread. Elsewhere, or without setpriv, ``argv`` unchanged.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", *argv] if setpriv else argv
