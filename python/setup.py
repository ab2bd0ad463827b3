"""python/setup.py — the build step setuptools' standard backend runs
(pyproject.toml): build_py first runs `make build/libstreamtrain.so` in
the repository (the parent of this folder) and copies the library into the
package. The wheel carries a platform library but no Python extension:
tagged py3-none-<platform>."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class BuildWithMake(build_py):
    def run(self):
        so = os.path.join(ROOT, "build", "libstreamtrain.so")
        if not os.path.exists(os.path.join(ROOT, "Makefile")):
            raise SystemExit(f"streamtrain: no Makefile in {ROOT}: build from the "
                             "repository (pip install ./python)")
        subprocess.run(["make", "-C", ROOT, "--no-print-directory",
                        "-j%d" % min(4, os.cpu_count() or 1), "build/libstreamtrain.so"],
                       check=True)
        super().run()
        dst = os.path.join(self.build_lib, "streamtrain", "libstreamtrain.so")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            os.remove(dst)
        shutil.copyfile(os.path.realpath(so), dst)  # the file, not the symlinks


class PlatformDist(Distribution):
    def has_ext_modules(self):  # the wheel holds a native library
        return True


cmdclass = {"build_py": BuildWithMake}
try:
    from wheel.bdist_wheel import bdist_wheel

    class Py3Wheel(bdist_wheel):
        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = Py3Wheel
except ImportError:
    pass

setup(cmdclass=cmdclass, distclass=PlatformDist)
