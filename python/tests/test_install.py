"""`pip install ./python` into a fresh venv, then `import streamtrain` from
outside the tree finds the library installed inside the package. Offline
(no PyPI here): the venv sees the system's setuptools
(--system-site-packages) and pip runs with --no-build-isolation."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def test_pip_install_into_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"skipped: python3 -m venv failed: {r.stderr.strip()[-300:]}")
        pytest.skip("python3 -m venv (python3-venv) unavailable")
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, text=True)
    if r.returncode != 0:
        print("skipped: the venv has no pip")
        pytest.skip("no pip in the venv (python3-venv / ensurepip)")
    env = dict(os.environ)
    env.pop("STREAMTRAIN_LIB", None)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                        "--no-index", os.path.join(ROOT, "python")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    code = ("import streamtrain, numpy; print(streamtrain.library_path); "
            "print(streamtrain.__version__)")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path, version = r.stdout.split()
    assert path.startswith(str(venv)) and path.endswith("streamtrain/libstreamtrain.so")
    assert not os.path.islink(path) and version == "1.0.0"
