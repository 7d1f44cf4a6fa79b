"""Issue 17: `fluxon run --reload` swaps the workers when the application's code changes."""

from __future__ import annotations

import threading

from fluxon.connect import ConnectionHandler
from support import fluxon_argv, free_port, wait_for

VIEW = '''
from fluxon.routing import Router

router = Router()


@router.route("version")
def version(request):
    return {version!r}
'''


def _write(folder, text: str) -> None:
    path = folder / "reloadapp" / "router.py"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # one event for the watcher, never a half-written file


def test_reload_serves_new_code_keeps_serving_during_the_swap_and_survives_a_syntax_error(procs, tmp_path):
    (tmp_path / "reloadapp").mkdir()
    (tmp_path / "reloadapp" / "__init__.py").write_text("")
    _write(tmp_path, VIEW.format(version="v1"))
    port = free_port()
    run = procs.start(fluxon_argv("run", "reloadapp.router:router", "--reload", "--insecure", "--workers", "1",
                                  "--port", str(port), "--backend-port", str(free_port()),
                                  "--control-port", str(free_port()), "--no-console",
                                  "--heartbeat-interval-s", "0.2"), cwd=tmp_path, name="run")
    procs.wait_log(run, "watching", timeout_s=60)
    results: list[object] = []
    stop = threading.Event()

    def keep_calling() -> None:  # requests all through the restart: each must succeed
        with ConnectionHandler("127.0.0.1", port, timeout_s=20.0) as client:
            while not stop.is_set():
                try:
                    results.append(client.send_request("version"))
                except Exception as exc:  # recorded, and the test fails below
                    results.append(exc)

    with ConnectionHandler("127.0.0.1", port, timeout_s=20.0) as client:
        assert client.send_request("version") == "v1"
        caller = threading.Thread(target=keep_calling, daemon=True)
        caller.start()
        try:
            wait_for(lambda: results, 10)
            _write(tmp_path, VIEW.format(version="v2"))
            wait_for(lambda: client.send_request("version") == "v2", 45, message="the new code")
            wait_for(lambda: results[-1] == "v2", 10)
        finally:
            stop.set()
            caller.join(30)
        assert "v1" in results and "v2" in results
        assert [r for r in results if r not in ("v1", "v2")] == []
        assert results.index("v2") > results.index("v1")

        _write(tmp_path, VIEW.format(version="v3").replace("def version", "def version(:"))
        procs.wait_log(run, "SyntaxError", timeout_s=45)
        assert "previous workers keep serving" in procs.log(run)
        assert client.send_request("version") == "v2"
        _write(tmp_path, VIEW.format(version="v4"))
        wait_for(lambda: client.send_request("version") == "v4", 45, message="the fixed code")
    assert procs.stop(run) == 0
