// fma_peak — measures this machine's float32 fused-multiply-add peak and, where the CPU has
// AVX512_BF16, its bfloat16 dot-product peak, in GFLOP/s.
//
// A register-only loop: every thread runs NACC independent accumulator vectors through
// acc = acc * m + a (float32) or acc += a0·b0 + a1·b1 per lane (vdpbf16ps), so the units
// never wait on a dependency and no load or store happens inside the loop. The instruction
// set is picked at run time with __builtin_cpu_supports (AVX-512F: 512-bit vfmadd on zmm
// registers; else AVX2+FMA: 256-bit; else a scalar loop); each kernel carries its own target
// attribute, so the file compiles with plain
//     g++ -O2 -fopenmp fma_peak.cpp -o fma_peak
// and no -march flag. One FMA lane counts as 2 FLOPs; one vdpbf16ps lane as 4 (two products,
// two additions), 64 per 512-bit instruction.
//
// Usage: fma_peak [threads [isa]]   threads default OMP_NUM_THREADS / omp_get_max_threads();
//        isa (avx512f, avx2+fma, scalar) forces a float32 kernel, e.g. the AVX2 peak of an
//        AVX-512 machine (a kernel the CPU lacks is refused).
// Output (one key=value per line; bench.py reads them):
//     isa=avx512f
//     threads=2
//     gflops=455.3
//     bf16_isa=avx512_bf16      (only where the CPU has it)
//     bf16_gflops=910.6
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
constexpr int NACC_BF16 = 24;

// acc = acc * m + a converges to a / (1 - m); with these values it stays a normal float,
// so no overflow and no denormal slow path. The loop cannot be folded: float FMA chains
// are not reassociated at -O2.
constexpr float kMul = 0.9999999f;
constexpr float kAdd = 1e-7f;

// The sum of every lane of n vectors (keeps the accumulators live: the loops cannot be dropped).
__attribute__((target("avx512f"))) inline float sum_lanes(const __m512* acc, int n) {
    __m512 s = acc[0];
    for (int k = 1; k < n; ++k) s = _mm512_add_ps(s, acc[k]);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, s);
    float r = 0.f;
    for (float v : lanes) r += v;
    return r;
}

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
    return sum_lanes(acc, NACC);
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

// acc += a0·b0 + a1·b1 with a = 1 and b = 2^-20 (both exact in bf16, normal numbers: the
// instruction treats bf16 denormals as zero): the accumulators grow slowly and stay normal.
__attribute__((target("avx512f,avx512bf16"), noinline)) float kernel_bf16(long iters) {
    constexpr int NACC = NACC_BF16;
    __m512 acc[NACC];
    for (int k = 0; k < NACC; ++k) acc[k] = _mm512_set1_ps(0.001f * static_cast<float>(k + 1));
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3580);  // 2^-20
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 32
        for (int k = 0; k < NACC; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
    }
    return sum_lanes(acc, NACC);
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

const Isa kAvx512{"avx512f", 2 * 16 * NACC_AVX512, kernel_avx512};
const Isa kAvx2{"avx2+fma", 2 * 8 * NACC_AVX2, kernel_avx2};
const Isa kScalar{"scalar", 2 * NACC_SCALAR, kernel_scalar};
const Isa kBf16{"avx512_bf16", 4 * 16 * NACC_BF16, kernel_bf16};

bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// The best float32 kernel, or the one named (nullptr when the CPU lacks it or the name is unknown).
const Isa* pick_isa(const char* name) {
    __builtin_cpu_init();
    if (name == nullptr) return has_avx512() ? &kAvx512 : has_avx2() ? &kAvx2 : &kScalar;
    if (std::strcmp(name, kAvx512.name) == 0) return has_avx512() ? &kAvx512 : nullptr;
    if (std::strcmp(name, kAvx2.name) == 0) return has_avx2() ? &kAvx2 : nullptr;
    if (std::strcmp(name, kScalar.name) == 0) return &kScalar;
    return nullptr;
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

// Calibrates so one measurement lasts about 0.1 s, then keeps the best of 12 (on a shared
// machine the best sample is the one least disturbed; a peak is a ceiling). GFLOP/s.
double peak_gflops(const Isa& isa, int threads, volatile float* sink) {
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
    return flops / best * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
    int threads = omp_get_max_threads();
    if (argc > 1) threads = std::max(1, std::atoi(argv[1]));
    if (threads > 1024) threads = 1024;
    const Isa* isa = pick_isa(argc > 2 ? argv[2] : nullptr);
    if (isa == nullptr) {
        std::fprintf(stderr, "fma_peak: instruction set %s unknown or not supported by this CPU\n", argv[2]);
        return 2;
    }
    volatile float sink[1024] = {};
    std::printf("isa=%s\nthreads=%d\ngflops=%.1f\n", isa->name, threads, peak_gflops(*isa, threads, sink));
    if (argc <= 2 && has_avx512() && __builtin_cpu_supports("avx512bf16"))
        std::printf("bf16_isa=%s\nbf16_gflops=%.1f\n", kBf16.name, peak_gflops(kBf16, threads, sink));
    return 0;
}
