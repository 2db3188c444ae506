// fma_peak — measures this machine's float32 fused-multiply-add peak, in GFLOP/s.
//
// A register-only loop: every thread runs NACC independent accumulator vectors through
// acc = acc * m + a, so the FMA units never wait on a dependency and no load or store
// happens inside the loop. The instruction set is picked at run time with
// __builtin_cpu_supports (AVX-512F, else AVX2+FMA, else a scalar loop); each kernel
// carries its own target attribute, so the file compiles with plain
//     g++ -O2 -fopenmp fma_peak.cpp -o fma_peak
// and no -march flag. One FMA counts as 2 FLOPs. The scalar fallback is the compiler's
// plain a*b+c (it may or may not contract to an FMA); it only keeps the program useful.
//
// Usage: fma_peak [threads]   (default: OMP_NUM_THREADS / omp_get_max_threads())
// Output (one key=value per line; bench.py reads them):
//     isa=avx512f
//     threads=2
//     gflops=455.3
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// Independent chains per thread: at least FMA latency x FMA ports on current cores (4-5 x 2),
// and few enough that they, plus the two constants, stay in registers (16 ymm with AVX2,
// 32 zmm with AVX-512) — a spilled accumulator would turn the loop into a load/store test.
constexpr int NACC_AVX512 = 24;
constexpr int NACC_AVX2 = 12;
constexpr int NACC_SCALAR = 12;

// acc = acc * m + a converges to a / (1 - m); with these values it stays a normal float,
// so no overflow and no denormal slow path. The loop cannot be folded: float FMA chains
// are not reassociated at -O2.
constexpr float kMul = 0.9999999f;
constexpr float kAdd = 1e-7f;

__attribute__((target("avx512f"), noinline)) float kernel_avx512(long iters) {
    constexpr int NACC = NACC_AVX512;
    __m512 acc[NACC];
    for (int k = 0; k < NACC; ++k) acc[k] = _mm512_set1_ps(0.001f * static_cast<float>(k + 1));
    const __m512 m = _mm512_set1_ps(kMul);
    const __m512 a = _mm512_set1_ps(kAdd);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 32
        for (int k = 0; k < NACC; ++k) acc[k] = _mm512_fmadd_ps(acc[k], m, a);
    }
    __m512 s = acc[0];
    for (int k = 1; k < NACC; ++k) s = _mm512_add_ps(s, acc[k]);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, s);
    float r = 0.f;
    for (float v : lanes) r += v;
    return r;
}

__attribute__((target("avx2,fma"), noinline)) float kernel_avx2(long iters) {
    constexpr int NACC = NACC_AVX2;
    __m256 acc[NACC];
    for (int k = 0; k < NACC; ++k) acc[k] = _mm256_set1_ps(0.001f * static_cast<float>(k + 1));
    const __m256 m = _mm256_set1_ps(kMul);
    const __m256 a = _mm256_set1_ps(kAdd);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 32
        for (int k = 0; k < NACC; ++k) acc[k] = _mm256_fmadd_ps(acc[k], m, a);
    }
    __m256 s = acc[0];
    for (int k = 1; k < NACC; ++k) s = _mm256_add_ps(s, acc[k]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    float r = 0.f;
    for (float v : lanes) r += v;
    return r;
}

__attribute__((noinline)) float kernel_scalar(long iters) {
    constexpr int NACC = NACC_SCALAR;
    float acc[NACC];
    for (int k = 0; k < NACC; ++k) acc[k] = 0.001f * static_cast<float>(k + 1);
    for (long it = 0; it < iters; ++it) {
        for (int k = 0; k < NACC; ++k) acc[k] = acc[k] * kMul + kAdd;
    }
    float r = 0.f;
    for (float v : acc) r += v;
    return r;
}

struct Isa {
    const char* name;
    int flops_per_iter;  // 2 x lanes x chains
    float (*fn)(long);
};

Isa pick_isa() {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return {"avx512f", 2 * 16 * NACC_AVX512, kernel_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"avx2+fma", 2 * 8 * NACC_AVX2, kernel_avx2};
    return {"scalar", 2 * NACC_SCALAR, kernel_scalar};
}

// Runs `iters` iterations on every thread at once; returns wall seconds of the slowest.
double timed_run(const Isa& isa, int threads, long iters, volatile float* sink) {
    double elapsed = 0.0;
#pragma omp parallel num_threads(threads)
    {
#pragma omp barrier
        const double t0 = omp_get_wtime();
        const float r = isa.fn(iters);
#pragma omp barrier
        const double t1 = omp_get_wtime();
        sink[omp_get_thread_num()] = r;
#pragma omp master
        elapsed = t1 - t0;
    }
    return elapsed;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = omp_get_max_threads();
    if (argc > 1) threads = std::max(1, std::atoi(argv[1]));
    const Isa isa = pick_isa();
    volatile float sink[1024] = {};
    if (threads > 1024) threads = 1024;

    // Calibrate so one measurement lasts about 0.1 s, then keep the best of 12 (on a shared
    // machine the best sample is the one least disturbed; a peak is a ceiling).
    long iters = 1 << 16;
    for (;;) {
        const double t = timed_run(isa, threads, iters, sink);
        if (t > 0.05 || iters > (1L << 40)) {
            iters = static_cast<long>(static_cast<double>(iters) * 0.1 / std::max(t, 1e-9)) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 1e300;
    for (int rep = 0; rep < 12; ++rep) best = std::min(best, timed_run(isa, threads, iters, sink));

    const double flops = static_cast<double>(isa.flops_per_iter) * static_cast<double>(iters) * threads;
    std::printf("isa=%s\nthreads=%d\ngflops=%.1f\n", isa.name, threads, flops / best * 1e-9);
    return 0;
}
