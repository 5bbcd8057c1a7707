"""Stop at the next safe point when the controller goes away.

The controller keeps the agent's stdin open for the whole run and never writes to it after the
handshake; when it goes away (Ctrl-C, kill, a dead laptop, a lost connection) sshd closes the
session and the agent's stdin reads end-of-file. `StopSignal.watch_fd(0)` notices that in a
daemon thread at once; SIGHUP and SIGTERM, and a broken pipe on the progress stream, count too.

Nothing is cut short: a stop request only sets a flag. The run checks it before it starts the
next file (`check()`, called before every backup, which precedes every change) and between
agents, so the file in hand is finished (its atomic swap done, or not begun) and no other is
started. `RunInterrupted` is a BaseException so that the per-file `except Exception` guards of
the operations let it through instead of recording it as that file's error. Stdlib only.
"""
import os
import signal
import threading
import time


class RunInterrupted(BaseException):
    """The run stops here at a safe point; `args[0]` says why."""


class StopSignal(object):
    """A stop request: `reason` is None until something asks the run to stop."""

    def __init__(self):
        self.reason = None
        self.requested_at = None     # time.monotonic() of the request (to measure the bound)
        self.requested_wall = None   # time.time() of the request (the journal says when)
        self.watching = False        # True under a controller: a broken output pipe means it is gone
        self._lock = threading.Lock()

    def request(self, reason):
        with self._lock:
            if self.reason is None:
                self.reason = reason
                self.requested_at = time.monotonic()
                self.requested_wall = time.time()

    def check(self):
        """Raise RunInterrupted when a stop was requested (call only between files)."""
        if self.reason is not None:
            raise RunInterrupted(self.reason)

    def output_broken(self):
        """The progress stream broke (EPIPE): under a controller, it is gone."""
        if self.watching:
            self.request("the controller went away (its output pipe broke)")

    def watch_fd(self, fd):
        """Request a stop when `fd` (the controller's channel) reads end-of-file or fails."""
        self.watching = True
        def watch():
            while True:
                try:
                    data = os.read(fd, 65536)
                except InterruptedError:
                    continue
                except OSError as exc:
                    self.request("the controller's channel failed (%s)" % (exc.strerror or exc))
                    return
                if not data:
                    self.request("the controller went away (its channel closed)")
                    return

        thread = threading.Thread(target=watch, name="fleet-controller-watch")
        thread.daemon = True
        thread.start()
        return thread

    def install_signals(self):
        """SIGHUP, SIGTERM and SIGINT (a local run shares the terminal's Ctrl-C) request a stop instead
        of killing mid-step (main thread only)."""
        def handler(signum, frame):
            self.request("stopped by signal %d" % signum)

        for name in ("SIGHUP", "SIGTERM", "SIGINT"):
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, handler)
