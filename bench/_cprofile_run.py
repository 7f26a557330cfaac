"""Profile a server under load only: `_cprofile_run.py OUT SCRIPT|-m MODULE ARGS`, switched by signals.

Runs SCRIPT (or `-m MODULE`) as `__main__` with ARGS and cProfile off. SIGUSR1 turns the
profiler on, SIGUSR2 turns it off and writes the stats to OUT, so start-up, imports and
warm-up stay out of the figures and the profile covers exactly the measured requests.
The profiler's clock is `time.process_time` (this process's CPU time), not the wall
clock `python -m cProfile` uses: on a shared machine, time spent descheduled is not
charged to whatever function happened to be running.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time
from types import FrameType


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: _cprofile_run.py OUT SCRIPT|-m MODULE [ARGS...]")
    out, script = sys.argv[1], sys.argv[2]
    module = sys.argv[3] if script == "-m" and len(sys.argv) > 3 else None
    sys.argv = sys.argv[3:] if module else sys.argv[2:]
    profiler = cProfile.Profile(time.process_time)

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    try:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(script, run_name="__main__")
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
