"""Local servers run as child processes on 127.0.0.1, stopped by their process handle."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildServer:
    """A server started as a child process; ``start`` returns once ``probe_url`` answers."""

    name = "server"
    poll = 0.05  # seconds between probes while starting

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The command line that serves on ``self.port``."""
        raise NotImplementedError

    def probe_url(self) -> str:
        """A URL that answers once the server is up."""
        raise NotImplementedError

    def start(self, timeout: float = 15.0):
        self._process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self._process.returncode}")
            try:
                urllib.request.urlopen(self.probe_url(), timeout=1).close()
                return self
            except OSError:
                time.sleep(self.poll)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        """Terminate, then kill if it has not gone after 5 s (bqemulator can ignore SIGTERM
        after a failed stream)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
