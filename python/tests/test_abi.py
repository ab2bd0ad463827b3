"""The ctypes mirrors of the C structs (streamtrain/_lib.py) against the C
compiler: every struct's size and every field's offset, from a program
built against the headers at test time."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from streamtrain import _lib


def test_struct_layouts(tmp_path):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) to check the layouts against")
    headers = sorted({h for _, _, h in _lib.STRUCTS})
    lines = ["#include <stddef.h>", "#include <stdio.h>"]
    lines += [f'#include "{h}"' for h in headers]
    lines.append("int main(void) {")
    want = {}
    for name, cls, _ in _lib.STRUCTS:
        lines.append(f'printf("{name} %zu\\n", sizeof({name}));')
        want[name] = __import__("ctypes").sizeof(cls)
        for f in cls._fields_:
            key = f"{name}.{f[0]}"
            lines.append(f'printf("{key} %zu\\n", offsetof({name}, {f[0]}));')
            want[key] = getattr(cls, f[0]).offset
    lines += ["return 0;", "}"]
    src = tmp_path / "abi.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "abi"
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-I", ROOT, str(src), "-o", str(exe)],
                   check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    got = dict(line.split() for line in out.splitlines())
    bad = {k: (int(got[k]), v) for k, v in want.items() if int(got[k]) != v}
    assert not bad, f"C vs ctypes (size or offset): {bad}"
    assert len(got) == len(want)
