"""The shared process helpers really kill what they start."""

import sys

from support import pid_alive, wait_for


def test_procs_fixture_kills_started_process_by_pid(tmp_path):
    from support import process_group
    with process_group(tmp_path) as group:
        proc = group.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
        group.wait_log(proc, "up")
        pid = proc.pid
        assert pid_alive(pid)
    wait_for(lambda: not pid_alive(pid), 5, message="process killed")
