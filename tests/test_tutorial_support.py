"""Helpers for the console and tutorial tests: a copy of the school app, real brokers and workers.

Every process is started through the ``procs`` fixture (killed by PID whatever happens) and
through the real ``fluxon`` CLI, the way a user starts them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support import REPO_ROOT, ProcessGroup, fluxon_argv, free_tcp_endpoint, pid_alive, wait_for

SCHOOL_SOURCE = REPO_ROOT / "examples" / "school"
APP = "school.router:router"


def copy_school_app(folder: Path, package: str = "school") -> Path:
    """Copy examples/school into ``folder/package`` as a new user's own package."""
    target = folder / package
    shutil.copytree(SCHOOL_SOURCE, target,
                    ignore=shutil.ignore_patterns("__pycache__", "var", "fluxon.key", "demo.py"))
    return target


def app_env(folder: Path, **extra: str) -> dict[str, str]:
    """Environment for processes running the copied app from ``folder``."""
    env = {"SCHOOL_DATA_DIR": str(folder / "var"), "PYTHONPATH": os.pathsep.join(
        [str(folder), str(REPO_ROOT)]), "HOME": str(folder)}
    env.pop("FLUXON_PRIVATE_KEY", None)
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout_s: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run one ``fluxon`` command to completion and return its result."""
    full_env = {k: v for k, v in os.environ.items() if k != "FLUXON_PRIVATE_KEY"}
    full_env.update(env or {})
    result = subprocess.run(fluxon_argv(*args), cwd=cwd, env=full_env, capture_output=True,
                            text=True, timeout=timeout_s)
    if check and result.returncode != 0:
        raise AssertionError(f"fluxon {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Deployment:
    """A broker (and optional workers) started for one test."""

    procs: ProcessGroup
    folder: Path
    key_file: Path | None
    frontend: str
    backend: str
    control: str
    broker: "subprocess.Popen | None" = None

    @property
    def port(self) -> int:
        return int(self.frontend.rsplit(":", 1)[1])

    def security_args(self) -> list[str]:
        return ["--key-file", str(self.key_file)] if self.key_file else ["--insecure"]

    def broker_argv(self, *extra: str) -> list[str]:
        return fluxon_argv("broker", "--bind", self.frontend, "--backend", self.backend,
                           "--control", self.control, "--heartbeat-interval-s", "0.2",
                           *self.security_args(), *extra)

    def start_broker(self, *extra: str) -> "subprocess.Popen":
        self.broker = self.procs.start(self.broker_argv(*extra), cwd=self.folder,
                                       env=app_env(self.folder), name="broker")
        self.procs.wait_log(self.broker, "broker ready")
        return self.broker

    def start_worker(self, app: str = APP, *extra: str, name: str = "worker") -> "subprocess.Popen":
        proc = self.procs.start(fluxon_argv("worker", app, "--connect", self.backend,
                                            "--heartbeat-interval-s", "0.2",
                                            *self.security_args(), *extra),
                                cwd=self.folder, env=app_env(self.folder), name=name)
        self.procs.wait_log(proc, "worker ready")
        return proc

    def ctl(self, *args: str, check: bool = True, key_file: Path | None = None) -> subprocess.CompletedProcess:
        key = key_file or self.key_file
        security = ["--key-file", str(key)] if key else ["--insecure"]
        return run_cli("ctl", "--control", self.control, "--timeout-s", "5", *security, *args,
                       cwd=self.folder, env=app_env(self.folder), check=check)

    def ctl_json(self, *args: str) -> object:
        return json.loads(self.ctl(*args, "--json").stdout)

    def server_key(self) -> str:
        return run_cli("pubkey", "--key-file", str(self.key_file), cwd=self.folder).stdout.strip()


def new_deployment(procs: ProcessGroup, folder: Path, *, secure: bool = True,
                   key_name: str = "deploy.key") -> Deployment:
    """Free endpoints and (in secure mode) a fresh private key made with ``fluxon keygen``."""
    key_file = None
    if secure:
        key_file = folder / key_name
        run_cli("keygen", "--out", str(key_file), cwd=folder)
    return Deployment(procs, folder, key_file, free_tcp_endpoint(), free_tcp_endpoint(),
                      free_tcp_endpoint())


def wait_gone(*pids: int, timeout_s: float = 15.0) -> None:
    """Wait until every pid has exited (zombies count as gone)."""
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout_s,
             message=f"processes {pids} to exit")


def test_copied_app_is_a_new_package_without_local_state(tmp_path):
    target = copy_school_app(tmp_path)
    assert sorted(p.name for p in target.glob("*.py")) == [
        "__init__.py", "client.py", "models.py", "router.py", "views.py"]
    assert not (target / "var").exists() and not (target / "fluxon.key").exists()
