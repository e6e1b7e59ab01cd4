"""An isolated, recycled worker process for measuring points, with a per-point timeout.

One child process measures point after point (torch is imported, and codecarbon probes the hardware, once),
and is replaced after any failure, so an out-of-memory kill, a crash or a hang costs only its own point.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import traceback
from dataclasses import asdict
from typing import Any

from bench.config import BenchConfig

STARTUP_TIMEOUT_S = 120.0


def _is_oom(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _serve(conn) -> None:
    """Child loop: receive a config dict, send back a row (ok) or a failure dict."""
    from bench.point import ModelCache, measure_point

    cache = ModelCache()
    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        cfg = BenchConfig(**message)
        try:
            conn.send(measure_point(cfg, cache))
        except BaseException as error:  # noqa: BLE001 - every failure becomes the point's row
            status = "oom" if _is_oom(error) else "error"
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            conn.send({"status": status, "error": last})


class Worker:
    """Measures points in a child process; `measure()` never raises for a failure of the point."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")  # fork would copy the parent's threads and torch state
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child,), daemon=True, name="bench-worker")
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(STARTUP_TIMEOUT_S) or parent.recv() != "ready":
            self.close()
            raise RuntimeError("the measurement worker did not start")

    def measure(self, cfg: BenchConfig, timeout_s: float) -> dict[str, Any]:
        """The point's row: measured figures with status ok, or status oom | error | timeout and the reason."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send(asdict(cfg))
        if not self._conn.poll(timeout_s):
            self.close()
            return {"status": "timeout", "error": f"no result within timeout_s={timeout_s:g}"}
        try:
            result = self._conn.recv()
        except (EOFError, ConnectionResetError):
            result = self._death_row()
        if result.get("status") != "ok":
            self.close()  # a fresh process for the next point: no state survives a failure
        return result

    def _death_row(self) -> dict[str, Any]:
        self._proc.join(5)
        code = self._proc.exitcode
        if code == -signal.SIGKILL:
            return {"status": "oom", "error": "worker killed by SIGKILL (most likely the kernel's out-of-memory killer)"}
        return {"status": "error", "error": f"worker exited with code {code}"}

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                try:
                    self._conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
                self._proc.join(1)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
            self._conn.close()
        self._proc = self._conn = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
