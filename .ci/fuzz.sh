#!/usr/bin/env bash
# The engine-file fuzzer (tests/fuzz/engine_file_fuzz.py) for a fixed budget, by default 60 s
# (TRTFAST_FUZZ_SECONDS). It fuzzes a build of trtfast instrumented with AddressSanitizer and
# libFuzzer's coverage of the C++ reader (TRTFAST_FUZZ_COVERAGE, clang), so the fuzzer steers by
# the branches of the C++ code as well as the Python ones. clang is installed with apt where it is
# missing and can be; without it, the fuzzer runs against the installed trtfast, guided by the
# Python code alone, and says so. Run by .ci/run in its venv; runs the same locally.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${TRTFAST_FUZZ_SECONDS:-60}"
work="$PWD/build/fuzz"
mkdir -p "$work"

have_clang() {
  command -v clang++ > /dev/null &&
    [ -e "$(clang++ -print-file-name=libclang_rt.asan_static-x86_64.a)" ]
}
if ! have_clang && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "fuzz: installing clang"
  apt-get update -qq > /dev/null
  apt-get install -y -qq --no-install-recommends clang > /dev/null
  version=$(clang++ -dumpversion | cut -d. -f1)
  apt-get install -y -qq --no-install-recommends "libclang-rt-$version-dev" > /dev/null
fi

if have_clang; then
  rm -rf "$work/site"
  CC=clang CXX=clang++ python -m pip install --quiet --no-deps --target "$work/site" \
    -C cmake.define.TRTFAST_SANITIZE=address -C cmake.define.TRTFAST_FUZZ_COVERAGE=ON \
    -C build-dir="$work/cmake" .
  # libFuzzer's own ASan runtime, shipped with atheris, receives the coverage of the extension.
  export LD_PRELOAD="$(python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so"
  export PYTHONPATH="$work/site"
  export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1"
  echo "fuzz: C++ reader instrumented (clang $(clang++ -dumpversion), ASan + coverage)"
else
  echo "fuzz: no clang with compiler-rt: fuzzing the installed trtfast by its Python coverage only"
fi

rm -rf "$work/corpus" "$work/artifacts"
mkdir -p "$work/corpus" "$work/artifacts"
python tests/fuzz/engine_file_fuzz.py -max_total_time="$seconds" \
  -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1 |
  grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' || {
  status=$?
  echo "fuzz: finding(s) in $work/artifacts; add each to tests/fuzz/regressions/" >&2
  exit "$status"
}
