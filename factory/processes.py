"""Background processes owned by the stack: start detached, remember by pid file, stop without orphans.

A pid file records the pid *and* the process start time, so a recycled pid is never mistaken for our service.
Every service runs in its own session (process group); stopping signals the whole group plus any descendant that
escaped it, waits, escalates to SIGKILL, and only then reports the service stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


class PortInUseError(RuntimeError):
    """A port the stack needs is taken; the message names the port, its purpose and the owning process."""


@dataclass(frozen=True)
class PidRecord:
    pid: int
    create_time: float
    command: str

    def process(self) -> psutil.Process | None:
        """The live process this record describes, or None if it exited (or the pid was reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.NoSuchProcess:
            return None


def read_pid_record(pid_file: Path) -> PidRecord | None:
    try:
        return PidRecord(**json.loads(pid_file.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def running_process(pid_file: Path) -> psutil.Process | None:
    record = read_pid_record(pid_file)
    return record.process() if record else None


def start_detached(
    argv: Sequence[str], *, env: Mapping[str, str], log_file: Path, pid_file: Path, cwd: Path
) -> psutil.Process:
    """Start `argv` in a new session with output appended to `log_file`; record it in `pid_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = psutil.Process(popen.pid)
    record = PidRecord(pid=popen.pid, create_time=proc.create_time(), command=" ".join(argv))
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.__dict__))
    os.replace(tmp, pid_file)
    return proc


def stop_process(pid_file: Path, *, timeout: float = 15.0) -> bool:
    """Stop the service recorded in `pid_file` and all its descendants. Returns True if something was running."""
    record = read_pid_record(pid_file)
    proc = record.process() if record else None
    if proc is None:
        pid_file.unlink(missing_ok=True)
        return False
    family = _family(proc)
    _signal_all(proc.pid, family, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    if alive:
        _signal_all(proc.pid, alive, signal.SIGKILL)
        _, still_alive = psutil.wait_procs(alive, timeout=5.0)
        if still_alive:
            raise RuntimeError(f"could not stop pids {[p.pid for p in still_alive]} of {record.command!r}")
    pid_file.unlink(missing_ok=True)
    return True


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [proc]


def _signal_all(group_leader: int, procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group_leader, sig)
    for proc in procs:  # descendants that started their own session are not in the group
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """Describe the process listening on `port` (best effort: another user's process may be invisible)."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return "an unknown process"
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
            except psutil.NoSuchProcess:
                break
    return "an unknown process"


def require_free_ports(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    for purpose, port in ports.items():
        if not port_is_free(port, host):
            raise PortInUseError(
                f"port {port} (needed for {purpose}) is already in use by {port_owner(port)}; "
                f"stop that process or set FACTORY_PORT_{purpose.upper()} to another port"
            )


def free_ports(count: int) -> list[int]:
    """Ask the kernel for `count` distinct free ports (for test stacks that must not collide)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
