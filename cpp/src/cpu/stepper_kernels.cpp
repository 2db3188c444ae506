// One time step of lstmcore::Stepper on the packed micro-kernel (packed.h): x_t·w_x and
// h·w_h for the calling thread's unit blocks, then the cell on those units. The threads
// own disjoint units, and the product reads a copy of h taken before the step, so no
// barrier is needed inside a step.
#include "cpu/stepper_kernels.h"

#include "cpu/kernel_common.h"
#include "cpu/packed.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
void stepper_pack(const PackGeometry& g, const T* w, T* out) {
  pack_recurrent(w, false, g, out);  // input-major (K × G·H)
}

template <typename T>
void stepper_step(const StepperRun<T>& r, const T* x_t, T* h, T* c, T* y_t) {
  const i64 B = r.B, H = r.H, G = r.G, GH = G * H;
  const PackedWeights<T> px = packed_layout(r.gx, const_cast<T*>(r.px));
  const PackedWeights<T> ph = packed_layout(r.gh, const_cast<T*>(r.ph));
  std::memcpy(r.hcopy, h, sizeof(T) * B * H);
  const Cell cell = r.spec.cell;
  run_on_threads(r.threads, [&](int tid, int nth) {
    i64 b0, b1, u0, u1;
    thread_units(px.blocks, px.W, H, tid, nth, b0, b1, u0, u1);
    T* tile = r.tiles + tid * r.tile_stride;
    for (i64 blk = b0; blk < b1; ++blk) {
      recurrent_block(px, x_t, B, blk, tile, r.recx);
      recurrent_block(ph, static_cast<const T*>(r.hcopy), B, blk, tile, r.rech);
    }
    const T* bias = r.bias;
    for (i64 b = 0; b < B; ++b) {
      const T* gx = r.recx + b * GH;
      const T* gr = r.rech + b * GH;
      const T* hp = r.hcopy + b * H;
      T* hb = h + b * H;
      if (cell == Cell::lstm) {
        T* cb = c + b * H;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T ig = sigmoid(gx[j] + bias[j] + gr[j]);
          const T fg = sigmoid(gx[H + j] + bias[H + j] + gr[H + j]);
          const T gg = fast_tanh(gx[2 * H + j] + bias[2 * H + j] + gr[2 * H + j]);
          const T og = sigmoid(gx[3 * H + j] + bias[3 * H + j] + gr[3 * H + j]);
          const T cn = fg * cb[j] + ig * gg;
          cb[j] = cn;
          hb[j] = og * fast_tanh(cn);
        }
      } else if (cell == Cell::gru) {
        const T* bhn = r.bhn;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T rg = sigmoid(gx[j] + bias[j] + gr[j]);
          const T z = sigmoid(gx[H + j] + bias[H + j] + gr[H + j]);
          const T n = fast_tanh(gx[2 * H + j] + bias[2 * H + j] + rg * (gr[2 * H + j] + bhn[j]));
          hb[j] = (T(1) - z) * n + z * hp[j];
        }
      } else {
        const bool relu = cell == Cell::rnn_relu;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T v = gx[j] + bias[j] + gr[j];
          hb[j] = relu ? (v < T(0) ? T(0) : v) : fast_tanh(v);  // relu keeps NaN
        }
      }
      if (y_t) std::memcpy(y_t + b * H + u0, hb + u0, sizeof(T) * (u1 - u0));
    }
  });
}

template void stepper_pack<float>(const PackGeometry&, const float*, float*);
template void stepper_pack<double>(const PackGeometry&, const double*, double*);
template void stepper_step<float>(const StepperRun<float>&, const float*, float*, float*, float*);
template void stepper_step<double>(const StepperRun<double>&, const double*, double*, double*, double*);

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
