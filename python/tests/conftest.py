"""Fixtures of the streamtrain Python tests: the build directory (env
STREAMTRAIN_BUILD, default ../../build) whose libstreamtrain.so and tools
are used, and small packs made at test time with build/synthpack."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("STREAMTRAIN_BUILD", os.path.join(ROOT, "build")))
if "STREAMTRAIN_LIB" not in os.environ and os.path.exists(os.path.join(BUILD, "libstreamtrain.so")):
    os.environ["STREAMTRAIN_LIB"] = os.path.join(BUILD, "libstreamtrain.so")
sys.path.insert(0, os.path.join(ROOT, "python"))


def tool(name):
    p = os.path.join(BUILD, name)
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} missing: build it first (make {os.path.relpath(p, ROOT)})")
    return p


def synthpack(out, samples, test=0, shape="8x8x3", shard="16K", extra=()):
    subprocess.run([tool("synthpack"), "-o", str(out), "--samples", str(samples),
                    "--test", str(test), "--shape", shape, "--shard-size", shard,
                    "--threads", "1", "-q", "-f", *extra], check=True)
    return str(out)


@pytest.fixture(scope="session")
def small_pack(tmp_path_factory):
    """1000 train + 100 test samples of 8x8x3 in 6 + 1 zstd shards."""
    return synthpack(tmp_path_factory.mktemp("packs") / "small", 1000, test=100)


@pytest.fixture
def fresh_pack(tmp_path):
    """A pack of its own, for tests that damage it."""
    return synthpack(tmp_path / "p", 300, shard="8K")
