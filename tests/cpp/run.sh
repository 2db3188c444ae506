#!/usr/bin/env bash
# The C++ part of the test command of README.md ("Run the tests"; .ci/run runs the same),
# run from the repository root inside the activated virtual environment:
#   1. the library and its C++ tests under ctest (build/);
#   2. the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer, any finding
#      fatal (build-sanitize/; the installed-example test is left out there, see
#      tests/cpp/CMakeLists.txt);
#   3. when nvcc is present, the CUDA build exactly as README's CUDA section tells users to
#      build it: the pip route (into this environment, then the Python tests of the device
#      path and the binding against it) and the CMake route (build/ reconfigured with the
#      CUDA option: only what the option changes is compiled again; ctest once more). No GPU
#      is needed: GPU tests skip without one.
set -euo pipefail
cd "$(dirname "$0")/../.."

cmake -S . -B build -DLSTMCORE_BUILD_TESTS=ON
cmake --build build -j2
ctest --test-dir build --output-on-failure

cmake -S . -B build-sanitize -DLSTMCORE_BUILD_TESTS=ON -DLSTMCORE_SANITIZE=ON
cmake --build build-sanitize -j2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-sanitize --output-on-failure

if command -v nvcc >/dev/null; then
  # cuBLAS where the toolkit lacks it (a toolkit assembled from NVIDIA's pip wheels).
  pip install "nvidia-cublas==13.*"
  pip install . -C cmake.define.LSTMCORE_CUDA=ON
  python -c "import lstmcore, sys; info = lstmcore.build_info(); print(info); sys.exit('cuda: yes' not in info)"
  python -m pytest tests/python/test_cuda_binding.py tests/python/test_cuda_api.py tests/python/test_cuda.py -q
  cmake -S . -B build -DLSTMCORE_CUDA=ON && cmake --build build -j
  ctest --test-dir build --output-on-failure
fi
