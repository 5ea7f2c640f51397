// y = x @ w.T + bias with x fp32 [M, K], w fp16 packed as [ceil(N / 8), K, 8] (see pack_f16w in __init__.py), y
// fp32 [M, N]. Decode reads every weight once per token, so its speed is how fast the weights stream from memory:
// fp16 is half fp32's bytes, and the packed layout makes each thread's share of the weight one sequential stream.
// Each group of 8 output rows is stored k-major, so one 16-byte load is one k of 8 rows: converted to fp32 in
// registers (F16C) and multiplied by x[k] broadcast, with no horizontal sums. Read as the checkpoint stores it
// (row-major, a dot product per row, four rows at a time), the same matvecs streamed at ~19 GB/s on a 2-core EPYC
// that reads ~25 GB/s; packed, at ~23.5 GB/s. Small M (decode) streams the weight once for all rows of x; large
// M (prefill) converts the weight to fp32 in blocks of up to 16 MiB and hands each to ATen's GEMM, where the
// arithmetic, not the bytes, sets the time.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "common.h"

namespace {

#ifdef INKSTONE_AVX2
using inkstone::load8;
#endif

constexpr int64_t kGroup = 8;     // output rows per packed group: one AVX2 register of fp32
// Up to this many rows of x take the streaming path: against converting the weight for ATen's GEMM it ran
// 2-3x faster at 16-48 rows and ~1.2x at 64-80, and lost from ~96 rows on (2-core EPYC, alternating).
constexpr int64_t kSmallM = 80;
constexpr int64_t kRowsX = 4;     // rows of x per pass over a group on the streaming path (its register tile)
constexpr int64_t kBlockBytes = 16 << 20;  // fp32 w.T converted per GEMM call on the large-M path, at most
// Software prefetch this far ahead: with the packed layout the hardware prefetcher does most of the work, and
// 2-16 KiB ahead all measured alike (within 3%), a little better than none.
constexpr int64_t kPrefetchBytes = 4096;

#ifdef INKSTONE_AVX2
inline void prefetch(const at::Half* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);  // never faults, even past the end
}

// The 8 outputs of group `g` (packed at p, K x 8) for one row of x: four accumulators over consecutive k hide
// the FMA latency, and one prefetch per 64-byte line keeps the stream ahead.
inline __m256 group_x1(const float* x, const at::Half* p, int64_t K) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) {
    const at::Half* w = p + k * kGroup;
    prefetch(w);
    a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k), load8(w), a0);
    a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + 1), load8(w + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + 2), load8(w + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k + 3), load8(w + 24), a3);
  }
  for (; k < K; ++k) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(x + k), load8(p + k * kGroup), a0);
  return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

// The same for R rows of x (stride K) at once: each converted weight vector feeds R FMAs, two k per step so
// 2R accumulators are in flight.
template <int R>
inline void group_xr(const float* x, int64_t K, const at::Half* p, __m256* out) {
  __m256 a[R], b[R];
  for (int r = 0; r < R; ++r) a[r] = b[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 2 <= K; k += 2) {
    const at::Half* w = p + k * kGroup;
    if ((k & 3) == 0) prefetch(w);
    const __m256 w0 = load8(w), w1 = load8(w + 8);
    for (int r = 0; r < R; ++r) {
      a[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + r * K + k), w0, a[r]);
      b[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + r * K + k + 1), w1, b[r]);
    }
  }
  if (k < K) {
    const __m256 w0 = load8(p + k * kGroup);
    for (int r = 0; r < R; ++r) a[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + r * K + k), w0, a[r]);
  }
  for (int r = 0; r < R; ++r) out[r] = _mm256_add_ps(a[r], b[r]);
}
#endif

// Portable fallback (no AVX2/F16C/FMA): the same layout, plain loops.
inline void group_scalar(const float* x, int64_t K, const at::Half* p, float* out) {
  float acc[kGroup] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t k = 0; k < K; ++k) {
    for (int j = 0; j < kGroup; ++j) acc[j] += x[k] * static_cast<float>(p[k * kGroup + j]);
  }
  std::copy(acc, acc + kGroup, out);
}

void streaming(const float* x, const at::Half* w, int64_t M, int64_t N, int64_t K, float* y) {
  const int64_t groups = (N + kGroup - 1) / kGroup;
  inkstone::guided_for(groups, 4, [&](int64_t begin, int64_t end) {
    alignas(32) float out[kRowsX * kGroup];
    for (int64_t g = begin; g < end; ++g) {
      const at::Half* p = w + g * K * kGroup;
      const int64_t n0 = g * kGroup, valid = std::min(kGroup, N - n0);
      for (int64_t m = 0; m < M; m += kRowsX) {  // the group's weights come from memory once, then from L1/L2
        const int64_t rows = std::min(kRowsX, M - m);
        const float* xm = x + m * K;
#ifdef INKSTONE_AVX2
        __m256 acc[kRowsX];
        switch (rows) {
          case 1: acc[0] = group_x1(xm, p, K); break;
          case 2: group_xr<2>(xm, K, p, acc); break;
          case 3: group_xr<3>(xm, K, p, acc); break;
          default: group_xr<4>(xm, K, p, acc); break;
        }
        for (int64_t r = 0; r < rows; ++r) _mm256_store_ps(out + r * kGroup, acc[r]);
#else
        for (int64_t r = 0; r < rows; ++r) group_scalar(xm + r * K, K, p, out + r * kGroup);
#endif
        for (int64_t r = 0; r < rows; ++r) {  // the last group may have fewer than 8 real rows
          std::copy(out + r * kGroup, out + r * kGroup + valid, y + (m + r) * N + n0);
        }
      }
    }
  });
}

// Groups [groups, K, 8] of the packed weight -> fp32 w.T [K, groups * 8] (row stride ld), in parallel over k.
void to_float_transposed(const at::Half* packed, int64_t groups, int64_t K, float* wt, int64_t ld) {
  at::parallel_for(0, K, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float* row = wt + k * ld;
      for (int64_t g = 0; g < groups; ++g) {
        const at::Half* p = packed + (g * K + k) * kGroup;
#ifdef INKSTONE_AVX2
        _mm256_storeu_ps(row + g * kGroup, load8(p));
#else
        for (int j = 0; j < kGroup; ++j) row[g * kGroup + j] = static_cast<float>(p[j]);
#endif
      }
    }
  });
}

}  // namespace

at::Tensor linear_f16w(const at::Tensor& x, const at::Tensor& packed, const c10::optional<at::Tensor>& bias,
                       int64_t out_features) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "linear_f16w: x must be float32");
  TORCH_CHECK(packed.scalar_type() == at::kHalf && packed.dim() == 3 && packed.size(2) == kGroup &&
                  packed.is_contiguous(),
              "linear_f16w: the weight must be a contiguous float16 [groups, in, 8] tensor from pack_f16w");
  const int64_t K = packed.size(1), N = out_features;
  TORCH_CHECK(N > (packed.size(0) - 1) * kGroup && N <= packed.size(0) * kGroup,
              "linear_f16w: ", N, " output features do not fit a packed weight of ", packed.size(0), " groups");
  TORCH_CHECK(x.size(-1) == K, "linear_f16w: x has ", x.size(-1), " features, the weight ", K);
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->scalar_type() == at::kFloat && bias->numel() == N),
              "linear_f16w: the bias must be float32 with one value per output feature");
  auto shape = x.sizes().vec();
  shape.back() = N;
  auto x2 = x.reshape({-1, K}).contiguous();
  const int64_t M = x2.size(0);
  auto y = at::empty({M, N}, x.options());
  if (M <= kSmallM) {
    streaming(x2.data_ptr<float>(), packed.data_ptr<at::Half>(), M, N, K, y.data_ptr<float>());
    if (has_bias) y.add_(*bias);
  } else {
    // Prefill: the weight goes to fp32 w.T one block of columns at a time, each block through ATen's own
    // (multithreaded) GEMM. Converting is ~1% of the multiply at these sizes; giving each thread its own
    // slices and a single-threaded GEMM instead ran 20-40% slower (M = 64..5250, 2-core EPYC).
    const int64_t groups = packed.size(0);
    const int64_t block_groups = std::max<int64_t>(1, kBlockBytes / (K * kGroup * sizeof(float)));
    auto wt = at::empty({K, std::min(groups, block_groups) * kGroup}, x.options());
    for (int64_t g0 = 0; g0 < groups; g0 += block_groups) {
      const int64_t g1 = std::min(groups, g0 + block_groups);
      const int64_t n0 = g0 * kGroup, cols = std::min(N, g1 * kGroup) - n0;
      auto block = wt.narrow(1, 0, (g1 - g0) * kGroup);
      to_float_transposed(packed.data_ptr<at::Half>() + g0 * K * kGroup, g1 - g0, K, block.data_ptr<float>(),
                          wt.size(1));
      auto w_block = block.narrow(1, 0, cols);
      auto out = y.narrow(1, n0, cols);
      if (has_bias) {
        at::addmm_out(out, bias->narrow(0, n0, cols), x2, w_block);
      } else {
        at::mm_out(out, x2, w_block);
      }
    }
  }
  return y.view(shape);
}

TORCH_LIBRARY_FRAGMENT(inkstone_cpu, m) {
  m.def("linear_f16w(Tensor x, Tensor packed, Tensor? bias, int out_features) -> Tensor");
}

TORCH_LIBRARY_IMPL(inkstone_cpu, CPU, m) { m.impl("linear_f16w", &linear_f16w); }
