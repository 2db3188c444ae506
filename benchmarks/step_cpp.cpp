// step_cpp — time per step of lstmcore's C++ API driven one time step at a time (B = 1 or more).
//
// It times lstmcore::Stepper (lstmcore/stepper.h): the weights packed once when it is
// built, then one step() per time step on the state in place (no allocation in the loop).
// bench.py --step compiles it against build/liblstmcore.a:
//     g++ -O2 -std=c++17 -Icpp/include benchmarks/step_cpp.cpp build/liblstmcore.a -fopenmp
//
// Usage: step_cpp CELL T B I H DIR THREADS
//   CELL lstm | gru; reads DIR/{x,w_x,w_h,b,b_h}.f32 (raw float32, row-major: x (T, B, I),
//   w_x (I, G·H), w_h (H, G·H), b and b_h (G·H)); checks by walking the T steps once from a
//   zero state and writing the final state to DIR/h_n.f32 (and c_n.f32); then times steps
//   (cycling through x's T steps, the state carried along): median of 15 samples of >= 20 ms.
// Output: key=value lines: us_per_step, min_us_per_step, samples, steps_per_sample, isa, threads.
#include <lstmcore/lstmcore.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

std::vector<float> read_f32(const std::string& path, std::size_t count) {
    std::vector<float> v(count);
    std::ifstream f(path, std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)))) {
        std::fprintf(stderr, "step_cpp: cannot read %zu floats from %s\n", count, path.c_str());
        std::exit(2);
    }
    return v;
}

void write_f32(const std::string& path, const std::vector<float>& v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: step_cpp CELL T B I H DIR THREADS\n");
        return 2;
    }
    const std::string cell = argv[1], dir = argv[6];
    const long T = std::atol(argv[2]), B = std::atol(argv[3]), I = std::atol(argv[4]), H = std::atol(argv[5]);
    lstmcore::set_num_threads(std::max(1, std::atoi(argv[7])));
    lstmcore::CellSpec spec;
    spec.cell = lstmcore::parse_cell(cell);
    const bool has_c = spec.cell == lstmcore::Cell::lstm;
    const long GH = lstmcore::gate_count(spec.cell) * H;
    const auto x = read_f32(dir + "/x.f32", static_cast<std::size_t>(T * B * I));
    const auto w_x = read_f32(dir + "/w_x.f32", static_cast<std::size_t>(I * GH));
    const auto w_h = read_f32(dir + "/w_h.f32", static_cast<std::size_t>(H * GH));
    const auto b = read_f32(dir + "/b.f32", static_cast<std::size_t>(GH));
    const auto b_h = read_f32(dir + "/b_h.f32", static_cast<std::size_t>(GH));
    lstmcore::Stepper<float> s(spec, B, I, H, w_x.data(), w_h.data(), b.data(), b_h.data());
    std::vector<float> h(static_cast<std::size_t>(B * H), 0.f), c(h);
    float* cp = has_c ? c.data() : nullptr;

    // The check: the whole sequence once from zeros.
    for (long t = 0; t < T; ++t) s.step(x.data() + t * B * I, h.data(), cp);
    write_f32(dir + "/h_n.f32", h);
    if (has_c) write_f32(dir + "/c_n.f32", c);

    using clock = std::chrono::steady_clock;
    long t = 0;
    auto run = [&](long n) {
        const auto t0 = clock::now();
        for (long k = 0; k < n; ++k) {
            s.step(x.data() + t * B * I, h.data(), cp);
            t = (t + 1) % T;
        }
        return std::chrono::duration<double>(clock::now() - t0).count();
    };
    long n = 16;
    run(n);  // warm-up
    double dt = 0.0;
    while ((dt = run(n)) < 0.02) n *= 2;
    std::vector<double> per_step;
    for (int k = 0; k < 15; ++k) per_step.push_back(run(n) / static_cast<double>(n));
    std::sort(per_step.begin(), per_step.end());
    std::printf("us_per_step=%.3f\nmin_us_per_step=%.3f\nsamples=%zu\nsteps_per_sample=%ld\nisa=%s\nthreads=%d\n",
                per_step[per_step.size() / 2] * 1e6, per_step.front() * 1e6, per_step.size(), n,
                lstmcore::get_isa().c_str(), lstmcore::get_num_threads());
    return 0;
}
