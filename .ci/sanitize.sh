#!/usr/bin/env bash
# The CPU test suite against a build of trtfast with AddressSanitizer, UndefinedBehaviorSanitizer
# and LeakSanitizer over its C++ code (CMake option TRTFAST_SANITIZE), built with gcc into
# build/sanitize and put ahead of the installed trtfast on PYTHONPATH. Run by .ci/run in its
# venv (test dependencies installed); runs the same locally. Any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

target="$PWD/build/sanitize"
rm -rf "$target/site"
# Without the GPU-only _testing module: this suite runs on the CPU, where its tests skip.
CC=gcc CXX=g++ python -m pip install --quiet --no-deps --target "$target/site" \
  -C cmake.define.TRTFAST_SANITIZE=address,undefined -C cmake.define.TRTFAST_BUILD_TESTING=OFF \
  -C build-dir="$target/cmake" .
module=$(echo "$target"/site/trtfast/_core.*.so)
# (grep without -q reads all of nm's output: an early exit would fail the pipe.)
if ! nm -D --undefined-only "$module" | grep __asan_report_load > /dev/null; then
  echo "sanitize: $module is not instrumented" >&2
  exit 1
fi

# A Python extension cannot bring its own ASan runtime: the interpreter must start with it.
# libstdc++ is preloaded too, so that ASan finds the __cxa_throw it intercepts (python itself
# does not link libstdc++, and ASan resolves it once, at start).
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export PYTHONPATH="$target/site"
# Every Python object from malloc, so that ASan sees overflows into them and LeakSanitizer
# scans them for pointers (pymalloc's arenas come from mmap, which it does not scan).
export PYTHONMALLOC=malloc
# allocator_may_return_null: a huge request returns null, as it does without ASan, so the
# tests of allocation failure see trtfast's own error.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

python - <<'PY'
import trtfast
assert "/build/sanitize/" in trtfast.__file__, trtfast.__file__
PY
# --capture=sys: pytest leaves file descriptor 2 alone, so that a sanitizer report, written there
# just before the process aborts, reaches the log.
# tests/test_leaks.py measures the Python heap with tracemalloc, whose accounting of raising
# calls drifts under ASan's allocator with PYTHONMALLOC=malloc, and the peak-memory test of model
# preparation measures resident memory, which ASan's quarantine of freed blocks inflates; the
# plain run checks both. tests/test_serve.py starts a Ray cluster, whose own native processes
# would inherit the preloaded sanitizer runtime; it runs no C++ of trtfast's beyond the plain run.
# tests/test_wheel.py checks what a release extension links, and this one links the sanitizers.
python -m pytest -q -p no:cacheprovider --capture=sys --ignore=tests/test_leaks.py \
  --ignore=tests/test_serve.py --ignore=tests/test_wheel.py \
  --deselect tests/test_preparation.py::test_peak_memory_does_not_grow_with_external_weights
