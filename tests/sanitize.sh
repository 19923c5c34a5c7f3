#!/usr/bin/env bash
# AddressSanitizer + UBSan run of the C++ CPU kernels (issue 7).
#
# Builds sslkern._native_cpu with SSLKERN_SANITIZE=ON (CMakeLists.txt: -fsanitize=address,
# undefined) from a copy of this checkout in a throwaway directory, never touching the
# editable install, then runs the native fuzz tests and the op tests against that copy with
# libasan preloaded (python itself is not instrumented, so ASan must be loaded first).
#
#   tests/sanitize.sh                    # fuzz + ops tests
#   tests/sanitize.sh tests/test_x.py    # other test files (paths relative to the checkout)
#   SANITIZE_DIR=/tmp/x tests/sanitize.sh
#
# Any ASan or UBSan report aborts the process (halt_on_error), so a clean pytest exit means
# no report. Leak detection is off: CPython and torch keep allocations alive at exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${SANITIZE_DIR:-/tmp/sslkern-sanitize}"
SRC="$WORK/src"
PYTHON="${PYTHON:-python}"
if [ "$#" -gt 0 ]; then TESTS=("$@"); else
  TESTS=(tests/test_native_fuzz.py tests/test_large_index.py tests/test_numerics.py tests/test_concurrency.py)
  [ -f "$ROOT/tests/test_ops.py" ] && TESTS+=(tests/test_ops.py)
  TESTS+=(tests/test_cpu_step.py tests/test_value_and_grad.py)  # the one-call step and its SGD update
  TESTS+=(tests/test_op_guards.py)  # the registered ops called directly with bad inputs
fi

rm -rf "$SRC"
mkdir -p "$SRC"
# The sources, package and tests only: no compiled modules from the editable build.
(cd "$ROOT" && tar cf - --exclude='*.so' --exclude='__pycache__' --exclude='_build.json' \
  CMakeLists.txt csrc sslkern tests pyproject.toml) | (cd "$SRC" && tar xf -)

PYBIND11_DIR="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())')"
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$SRC/sslkern" \
  -DPython_EXECUTABLE="$(command -v "$PYTHON")" -Dpybind11_DIR="$PYBIND11_DIR" \
  -DSSLKERN_CUDA=OFF -DSSLKERN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$WORK/build" -j "$(nproc)"

LIBASAN="$(${CXX:-c++} -print-file-name=libasan.so)"
[ -f "$LIBASAN" ] || { echo "sanitize.sh: libasan.so not found (got '$LIBASAN')" >&2; exit 1; }
# libstdc++ preloaded too: python does not link it, and without it ASan's __cxa_throw
# interceptor finds no real __cxa_throw and aborts on the first C++ exception.
PRELOAD="$LIBASAN $(${CXX:-c++} -print-file-name=libstdc++.so)"

# Triton is hidden (an `import triton` that fails): its interpreter is not what is under test,
# and it would only multiply the test cases by a slow backend.
mkdir -p "$WORK/no_triton/triton"
echo 'raise ImportError("triton is hidden in the sanitizer run (tests/sanitize.sh)")' \
  > "$WORK/no_triton/triton/__init__.py"

cd "$SRC"
export PYTHONPATH="$SRC:$WORK/no_triton${PYTHONPATH:+:$PYTHONPATH}"
export SSLKERN_BACKEND=native
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
# The copy, not the editable install, must be the one imported:
LD_PRELOAD="$PRELOAD" "$PYTHON" -c \
  "import sslkern._native_cpu as m; assert m.__file__.startswith('$SRC'), m.__file__"
LD_PRELOAD="$PRELOAD" "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
echo "sanitize.sh: no AddressSanitizer/UBSan reports in ${TESTS[*]}"
