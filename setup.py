"""Builds sslkern's compiled modules with CMake (see CMakeLists.txt).

Each build configures its own CMake tree, keyed by the toolchain it uses (Python, cmake,
the generator's program, pybind11, the build options): pip's isolated builds come and go
with their own cmake and ninja, and a tree configured by one of them names programs that no
longer exist. Trees whose programs are gone are deleted; a tree is reused only by a build
with the same toolchain (`pip install -e . --no-build-isolation` after editing csrc/).

Environment:
  SSLKERN_CUDA=0|1   skip / require the CUDA module (default: build it when nvcc is found)
  SSLKERN_CUDA_ARCHS CUDA architectures, default "75;90"
  SSLKERN_SANITIZE=1 AddressSanitizer + UBSan build of the CPU module (tests only)
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
# Shipped inside the package as sslkern/csrc/...: the run-time NVRTC path compiles them
# (sslkern/_cuda_runtime.py). Editable installs read csrc/ of the checkout instead.
SHIPPED_SOURCES = ("csrc/include/sslkern/*.h", "csrc/cuda/*.cu", "csrc/cuda/*.cuh")
CUDA_SWITCH = {"0": "OFF", "off": "OFF", "1": "ON", "on": "ON", "auto": "AUTO", "": "AUTO"}
TOOLCHAIN_FILE = "sslkern-toolchain.json"  # in each CMake tree: the programs it was configured with


class BuildPy(build_py):
    """Copies the CUDA sources into the built package (wheels; `pip install .`)."""

    def run(self):
        if not getattr(self, "editable_mode", False):
            # build/lib persists between builds in the checkout: start the package afresh, so a
            # module deleted from the source (or an old compiled module) never ships again.
            shutil.rmtree(Path(self.build_lib) / "sslkern", ignore_errors=True)
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for pattern in SHIPPED_SOURCES:
            for source in sorted(ROOT.glob(pattern)):
                dest = Path(self.build_lib) / "sslkern" / source.relative_to(ROOT)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Runs CMake; the CUDA module and _build.json come out beside the CPU module."""

    def _extra_outputs(self):
        """(built file, its place in the source tree) for what CMake made besides the CPU module."""
        out_dir = Path(self.build_lib) / "sslkern"
        extras = [p for p in out_dir.glob("_native_cuda*") if p.is_file()] + [out_dir / "_build.json"]
        return [(str(p), str(ROOT / "sslkern" / p.name)) for p in extras if p.exists()]

    def run(self):
        super().run()
        # Wheels take everything under build_lib; editable installs copy only the declared
        # extension into the source tree, so the other outputs are copied here.
        if getattr(self, "editable_mode", False):  # (--inplace: CMake wrote into sslkern/ already)
            for built, dest in self._extra_outputs():
                shutil.copy2(built, dest)

    def build_extension(self, ext):
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in [*out_dir.glob("_native_cuda*"), out_dir / "_build.json"]:  # a CUDA module
            if stale.is_file():  # from an earlier build must not ship beside a CPU-only one
                stale.unlink()
        cuda = os.environ.get("SSLKERN_CUDA", "auto").strip().lower()
        if cuda not in CUDA_SWITCH:
            raise RuntimeError(f"SSLKERN_CUDA must be 0, 1 or auto, not {cuda!r}")
        toolchain = {
            "python": sys.executable,
            "cmake": shutil.which("cmake"),
            "ninja": shutil.which("ninja"),  # the generator: Ninja where found, else Makefiles
            "pybind11": pybind11.get_cmake_dir(),
            "options": [CUDA_SWITCH[cuda], os.environ.get("SSLKERN_SANITIZE") == "1",
                        os.environ.get("SSLKERN_CUDA_ARCHS", "")],
        }
        build_dir = self._cmake_tree(toolchain)
        configure = [
            toolchain["cmake"] or "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={toolchain['pybind11']}",
            f"-DSSLKERN_CUDA={CUDA_SWITCH[cuda]}",
            f"-DSSLKERN_SANITIZE={'ON' if os.environ.get('SSLKERN_SANITIZE') == '1' else 'OFF'}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        if os.environ.get("SSLKERN_CUDA_ARCHS"):
            configure.append(f"-DSSLKERN_CUDA_ARCHS={os.environ['SSLKERN_CUDA_ARCHS']}")
        if shutil.which("nvcc") is None and Path("/usr/local/cuda/bin/nvcc").exists():
            configure.append("-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc")
        if toolchain["ninja"]:
            configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={toolchain['ninja']}"]
        subprocess.run(configure, check=True)
        subprocess.run([configure[0], "--build", str(build_dir), "-j", str(os.cpu_count() or 2)], check=True)

    def _cmake_tree(self, toolchain):
        """The CMake tree for this toolchain under build_temp, after deleting the trees whose
        programs no longer exist (those of pip's earlier, deleted build environments)."""
        root = Path(self.build_temp).resolve()
        root.mkdir(parents=True, exist_ok=True)
        for tree in root.glob("cmake*"):
            if tree.is_dir() and not _programs_exist(tree / TOOLCHAIN_FILE):
                shutil.rmtree(tree, ignore_errors=True)
        key = hashlib.sha256(json.dumps(toolchain, sort_keys=True).encode()).hexdigest()[:12]
        tree = root / f"cmake-{key}"
        tree.mkdir(exist_ok=True)
        (tree / TOOLCHAIN_FILE).write_text(json.dumps(toolchain, indent=1))
        return tree


def _programs_exist(record):
    """Whether every program a CMake tree was configured with is still there."""
    try:
        toolchain = json.loads(record.read_text())
    except (OSError, ValueError):
        return False  # unreadable, or a tree of an older setup.py: configure afresh
    programs = [toolchain.get(name) for name in ("python", "cmake", "ninja")]
    return all(p is None or Path(p).exists() for p in programs) and Path(toolchain.get("pybind11", "")).is_dir()


setup(
    ext_modules=[CMakeExtension("sslkern._native_cpu")],
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPy},
)
