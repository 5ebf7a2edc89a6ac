"""A wrapped command under a pseudo-terminal, its output copied to stdout.log by a
process that outlives the cockpit.

    python cockpit/wrap/ptyrelay.py --cols 120 --rows 40 RUN_DIR/stdout.log -- CMD...

tqdm and Rich draw their bars only for a terminal (Lightning's RichProgressBar
draws nothing until the end under a pipe), so a wrapped command gets one. The
supervisor starts this file with Popen as it would start CMD (own session, stdin
/dev/null, stdout to the log); it opens a pty, forks a copier, and then *execs
CMD in its own process*: the pid, process group and start time the supervisor
records are CMD's, so signals, kill_group and the exit code are exactly those of
a command started without a pty. The copier leaves the session (a hang-up when
CMD exits is not for it) and copies the pty's master side to the log until every
holder of the terminal is gone; it needs nothing from the cockpit, so a cockpit
killed with -9 loses nothing.

The terminal: sized like the cockpit's, CMD's controlling terminal on stdout and
stderr, stdin left at /dev/null (a command that reads it gets EOF, it never waits
for a person who is not there), and no \\n -> \\r\\n translation (stdout.log reads
as it does without a pty; bars still rewrite their line with \\r).

While it copies, the copier holds a flock on its descriptor of the log:
`wait_drained()` lets a cockpit that saw CMD exit wait for the last bytes before
it reads the log to its end. Standard library only: it runs as a file, without
importing the cockpit.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time

LINGER_S = 1.0  # after CMD is gone, how long a quiet terminal is waited on (its children)


def wait_drained(log: str | os.PathLike, timeout_s: float = 5.0) -> bool:
    """Wait until no copier holds the log (it has copied everything); True when none does."""
    try:
        fd = os.open(log, os.O_RDONLY)
    except OSError:
        return True
    try:
        end = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except OSError:
                if time.monotonic() >= end:
                    return False
                time.sleep(0.02)
    finally:
        os.close(fd)  # releases the shared lock


def _copy(master: int, log: int, parent: int) -> None:
    """master -> log until every slave descriptor is closed (EIO), or CMD is gone and
    the terminal has been quiet for LINGER_S (a daemonised grandchild holds it)."""
    quiet_since: float | None = None
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: nobody holds the terminal any more
                return
            if not data:
                return
            quiet_since = None
            while data:
                data = data[os.write(log, data) :]
        elif os.getppid() != parent:  # CMD exited; we were re-parented
            now = time.monotonic()
            quiet_since = quiet_since or now
            if now - quiet_since >= LINGER_S:
                return


def main(argv: list[str]) -> None:
    cols, rows = 120, 40
    args = list(argv)
    while args and args[0] in ("--cols", "--rows"):
        if args[0] == "--cols":
            cols = int(args[1])
        else:
            rows = int(args[1])
        args = args[2:]
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: ptyrelay.py [--cols N] [--rows N] LOG -- CMD...\n")
        sys.exit(2)
    log_path, cmd = args[0], args[2:]

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # oflag: keep \n as \n in the log
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(log, fcntl.LOCK_EX)  # shared with the copier across fork; exec drops ours
    me = os.getpid()

    if os.fork() == 0:  # the copier
        try:
            os.setsid()  # not in CMD's session: its hang-up and its group's signals miss us
            os.close(slave)
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)
            _copy(master, log, me)
        finally:
            os._exit(0)

    # CMD, in this process: the supervisor's pid, group and start time are its own
    os.close(master)
    os.dup2(slave, 1)
    os.dup2(slave, 2)
    try:
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)  # the session leader's controlling terminal
    except OSError:
        pass  # not a session leader (run by hand): still a terminal, without job control
    if slave > 2:
        os.close(slave)
    env = dict(os.environ)
    if env.get("TERM", "dumb") == "dumb":
        env["TERM"] = "xterm-256color"
    try:
        os.execvpe(cmd[0], cmd, env)
    except OSError as e:
        os.write(2, f"cockpit: cannot run {cmd[0]!r}: {e}\n".encode())
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
