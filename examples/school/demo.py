"""The whole school tutorial in one command: ``python3 -m examples.school.demo`` (from the repo root).

What it does, each step with the real ``fluxon`` CLI in a temporary folder:

1. ``fluxon keygen`` makes a fresh deployment key;
2. ``fluxon schema save`` / ``fluxon schema apply 1`` create the database from the models;
3. ``fluxon broker`` and two ``fluxon worker examples.school.router:router`` start as separate
   processes on free ports;
4. the scripted client session of ``client.py`` runs (signup -> login -> enroll -> list);
5. the console's ``status`` and ``workers`` show the traffic, ``stop`` ends the broker, and the
   workers are stopped: no process is left behind, whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fluxon.connect import ConnectionHandler
from fluxon.console import Console, SocketTransport, execute_line
from fluxon.keys import derive_keys, load_private_key

from .client import run_session

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "examples.school.router:router"
_START_TIMEOUT_S = 30.0


def _free_endpoint() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


class _Processes:
    """The demo's child processes, each logging to a file; all are killed on exit."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.children: list[tuple[str, subprocess.Popen, Path]] = []

    def run(self, *args: str) -> str:
        """Run one ``fluxon`` command to completion; its standard output (SystemExit when it fails)."""
        result = subprocess.run([sys.executable, "-m", "fluxon.cli", *args], cwd=REPO_ROOT,
                                env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise SystemExit(f"fluxon {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self, name: str, *args: str, ready: str) -> subprocess.Popen:
        """Start ``fluxon ARGS`` and wait until its log shows ``ready``."""
        log_path = self.folder / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "fluxon.cli", *args], cwd=REPO_ROOT,
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.children.append((name, proc, log_path))
        deadline = time.monotonic() + _START_TIMEOUT_S
        while ready not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        return proc

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """SIGTERM whatever still runs, then SIGKILL after ``timeout_s``; wait for every child."""
        for _, proc, _ in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, proc, _ in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def main() -> int:
    """Run the demo; 0 when the scripted session went through."""
    with tempfile.TemporaryDirectory(prefix="fluxon-school-") as tmp:
        folder = Path(tmp)
        key_file = folder / "fluxon.key"
        env = dict(os.environ, SCHOOL_DATA_DIR=str(folder / "var"), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("FLUXON_PRIVATE_KEY", None)
        procs = _Processes(folder, env)
        print(f"working in {folder}")
        try:
            procs.run("keygen", "--out", str(key_file))
            env["FLUXON_PRIVATE_KEY"] = load_private_key(str(key_file))  # what the router reads
            print(procs.run("schema", "save", APP).strip())
            print(procs.run("schema", "apply", "1", APP).strip())
            frontend, backend, control = _free_endpoint(), _free_endpoint(), _free_endpoint()
            broker = procs.start("broker", "broker", "--bind", frontend, "--backend", backend,
                                 "--control", control, "--key-file", str(key_file), ready="broker ready")
            for number in (1, 2):
                procs.start(f"worker{number}", "worker", APP, "--connect", backend,
                            "--key-file", str(key_file), ready="worker ready")
            print(f"broker on {frontend}, two workers on {backend}\n")
            keys = derive_keys(env["FLUXON_PRIVATE_KEY"])
            port = int(frontend.rsplit(":", 1)[1])
            with ConnectionHandler(host="127.0.0.1", port=port, server_key=keys.broker.public,
                                   timeout_s=10.0) as conn:
                run_session(conn)
            console = Console(SocketTransport(control, keys=keys))
            for line in ("status", "workers", "stop"):
                print(f"\nfluxon> {line}")
                execute_line(console, line)
            broker.wait(15)
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
