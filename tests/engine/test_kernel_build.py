"""The compiled kernel's build: cached by source, compiler and CPU flags; concurrent builds wait on
one another; a fresh cache builds once."""

import subprocess
import sys

from dlstudies.engine import kernel

BUILD = "from dlstudies.engine import kernel; assert kernel.library() is not None"


def test_two_processes_building_into_a_fresh_cache_share_one_build(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = kernel.build_key(kernel.compiler())
    procs = [subprocess.Popen([sys.executable, "-c", BUILD], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    builds = list((tmp_path / "dlstudies" / "kernel").glob("*/*.so"))
    assert len(builds) == 1 and builds[0].parent.name == key


def test_the_key_changes_with_the_cpu_flags_and_the_source(monkeypatch, tmp_path):
    key = kernel.build_key(kernel.compiler())
    monkeypatch.setattr(kernel, "_cpu_flags", lambda: "flags: sse2")
    assert kernel.build_key(kernel.compiler()) != key
    source = tmp_path / "k.cpp"
    source.write_text(kernel.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.undo()
    monkeypatch.setattr(kernel, "SOURCE", source)
    assert kernel.build_key(kernel.compiler()) != key
