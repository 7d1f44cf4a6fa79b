"""Every code block of README.md and docs/*.md runs as written (issue 11).

Each document runs in a fresh temporary folder (with the repository on ``PYTHONPATH``
after it, for pages that import ``examples.school``), in its own interpreter, its blocks in
page order:

- a ```python block whose first line names a file (``# school/models.py``) is written to
  that path; once the page is done, every module so written is imported;
- any other ```python block is executed, all of a page's blocks sharing one namespace
  (as a reader's interpreter session would);
- a shell block runs only when marked for it: ```bash test (run with ``bash -euo pipefail``,
  with this interpreter's ``fluxon`` and ``python3`` first on PATH);
- ``<!-- skip: REASON -->`` on the line before a block skips it; the reason is required
  (blocks that start long-running servers on fixed ports, or need one).

Other fences (text, console transcripts, SQL) are not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from support import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*skip:\s*(.*?)\s*-->\s*$")
_FILE_LINE = re.compile(r"^#\s*([\w./-]+\.py)\s*$")
_PYTHON = {"python", "py", "python3"}
_SHELL = {"bash", "sh", "shell"}


@dataclass
class Block:
    """One fenced block: how it runs (file, python, shell) or why it does not."""

    doc: str
    line: int
    kind: str           # "file", "python", "shell", "text"
    code: str
    path: str = ""      # for "file"
    skip: str = ""      # the stated reason, for a skipped block


def extract_blocks(path: Path) -> list[Block]:
    """The page's fenced blocks, classified."""
    text = path.read_text(encoding="utf-8")
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        info = match.group(1).split()
        language = info[0].lower() if info else ""
        code = match.group(2)
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        name = path.relative_to(REPO_ROOT).as_posix()
        first = code.split("\n", 1)[0]
        if language in _PYTHON and _FILE_LINE.match(first):
            block = Block(name, line, "file", code, path=_FILE_LINE.match(first).group(1))
        elif language in _PYTHON:
            block = Block(name, line, "python", code)
        elif language in _SHELL and "test" in info[1:]:
            block = Block(name, line, "shell", code)
        else:
            block = Block(name, line, "text", code)
        if skip is not None:
            block.skip = skip.group(1) or "<no reason given>"
        blocks.append(block)
    return blocks


def run_blocks(plan_path: str) -> int:
    """Run a page's blocks in the current folder (the child process's entry point)."""
    import importlib

    blocks = [Block(**item) for item in json.loads(Path(plan_path).read_text())]
    namespace: dict = {"__name__": "__main__"}
    written: list[str] = []
    sys.path.insert(0, os.getcwd())
    for block in blocks:
        where = f"{block.doc}:{block.line}"
        try:
            if block.kind == "file":
                target = Path(block.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code)
                written.append(block.path)
            elif block.kind == "python":
                exec(compile(block.code, where, "exec"), namespace)
            elif block.kind == "shell":
                result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], timeout=90)
                if result.returncode != 0:
                    print(f"{where}: the shell block exited {result.returncode}", file=sys.stderr)
                    return 1
        except BaseException:
            print(f"{where}: the {block.kind} block failed:\n{traceback.format_exc()}", file=sys.stderr)
            return 1
    for path in written:
        module = path[:-3].replace("/", ".").removesuffix(".__init__")
        try:
            importlib.import_module(module)
        except BaseException:
            print(f"{module} (written from the page) does not import:\n{traceback.format_exc()}", file=sys.stderr)
            return 1
    return 0


def test_block_extraction_reads_files_skips_and_shell_markers(tmp_path) -> None:
    page = REPO_ROOT / "docs" / "_probe_test_docs.md"
    page.write_text("```python\n# pkg/mod.py\nX = 1\n```\n\n<!-- skip: needs a broker -->\n```python\n"
                    "boom()\n```\n\n```bash test\necho hi\n```\n\n```bash\nfluxon run app\n```\n")
    try:
        kinds = [(b.kind, b.path, b.skip) for b in extract_blocks(page)]
    finally:
        page.unlink()
    assert kinds == [("file", "pkg/mod.py", ""), ("python", "", "needs a broker"), ("shell", "", ""),
                     ("text", "", "")]


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(REPO_ROOT).as_posix() for d in DOCS])
def test_every_code_block_runs_as_written_gh11(doc: Path, tmp_path: Path) -> None:
    blocks = extract_blocks(doc)
    unexplained = [f"{b.doc}:{b.line}" for b in blocks if b.skip == "<no reason given>"]
    assert unexplained == [], "a skip marker must say why"
    runnable = [b for b in blocks if b.kind != "text" and not b.skip]
    if not runnable:
        return
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([asdict(b) for b in runnable]))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("FLUXON_PRIVATE_KEY", "PYTHONPATH")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join([str(work), str(REPO_ROOT)])   # pages may use examples.school
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_docs import run_blocks; sys.exit(run_blocks({str(plan)!r}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                            text=True, timeout=150)
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-2000:]
