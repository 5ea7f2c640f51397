// y = x @ w.T + bias with x fp32 [M, K], w fp16 [N, K] (row-major, as the checkpoint stores it), y fp32 [M, N].
// Decode reads every weight once per token, so its speed is how fast the weights stream from memory: fp16 is
// half fp32's bytes. Small M (decode) is a dot product per weight row, the row streamed once and converted to
// fp32 in registers (F16C) for every row of x; large M (prefill) converts a slice of rows that fits in L2 to
// fp32 and hands it to ATen's GEMM, where the arithmetic, not the bytes, sets the time.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#define INKSTONE_AVX2 1
#endif

namespace {

constexpr int64_t kSmallM = 24;   // up to this many rows of x take the streaming path
constexpr int64_t kRows = 4;      // weight rows per streaming step
constexpr int64_t kSlice = 128;   // weight rows converted per GEMM call on the large-M path
// Software prefetch this far ahead of the rows being read: the hardware prefetcher alone left the weights
// streaming at ~11 GB/s on a 2-core EPYC that reads ~20 GB/s; 4-16 KiB ahead gave 13-15 GB/s.
constexpr int64_t kPrefetchBytes = 8192;

#ifdef INKSTONE_AVX2
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

inline void prefetch(const at::Half* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);  // never faults, even past the end
}

inline __m256 load8(const at::Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#endif

// Rows [n0, n0 + 4) of y for two rows of x (x0/y0 and x1/y1); for the last of an odd M, two is false and
// x1/y1 alias x0/y0, only read.
inline void dot4x2(const float* x0, const float* x1, bool two, const at::Half* w, int64_t K, int64_t n0,
                   float* y0, float* y1) {
  const at::Half* r[kRows] = {w + n0 * K, w + (n0 + 1) * K, w + (n0 + 2) * K, w + (n0 + 3) * K};
  float s0[kRows] = {0, 0, 0, 0}, s1[kRows] = {0, 0, 0, 0};
  int64_t k = 0;
#ifdef INKSTONE_AVX2
  __m256 a[kRows] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 b[kRows] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (; k + 8 <= K; k += 8) {
    for (int i = 0; i < kRows; ++i) prefetch(r[i] + k);
    const __m256 xa = _mm256_loadu_ps(x0 + k);
    const __m256 xb = _mm256_loadu_ps(x1 + k);
    for (int i = 0; i < kRows; ++i) {
      const __m256 wv = load8(r[i] + k);
      a[i] = _mm256_fmadd_ps(xa, wv, a[i]);
      if (two) b[i] = _mm256_fmadd_ps(xb, wv, b[i]);
    }
  }
  for (int i = 0; i < kRows; ++i) {
    s0[i] = hsum(a[i]);
    s1[i] = hsum(b[i]);
  }
#endif
  for (; k < K; ++k) {
    for (int i = 0; i < kRows; ++i) {
      const float wv = static_cast<float>(r[i][k]);
      s0[i] += x0[k] * wv;
      s1[i] += x1[k] * wv;
    }
  }
  for (int i = 0; i < kRows; ++i) {
    y0[n0 + i] = s0[i];
    if (two) y1[n0 + i] = s1[i];
  }
}

// Rows [n0, n0 + 4) of y for a single row of x (batch-1 decode, the case that matters most): two accumulators a
// row, so eight independent FMA chains hide the conversion's latency.
inline void dot4x1(const float* x, const at::Half* w, int64_t K, int64_t n0, float* y) {
  const at::Half* r[kRows] = {w + n0 * K, w + (n0 + 1) * K, w + (n0 + 2) * K, w + (n0 + 3) * K};
  float s[kRows] = {0, 0, 0, 0};
  int64_t k = 0;
#ifdef INKSTONE_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (; k + 16 <= K; k += 16) {
    for (int i = 0; i < kRows; ++i) prefetch(r[i] + k);
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    a0 = _mm256_fmadd_ps(x0, load8(r[0] + k), a0);
    b0 = _mm256_fmadd_ps(x1, load8(r[0] + k + 8), b0);
    a1 = _mm256_fmadd_ps(x0, load8(r[1] + k), a1);
    b1 = _mm256_fmadd_ps(x1, load8(r[1] + k + 8), b1);
    a2 = _mm256_fmadd_ps(x0, load8(r[2] + k), a2);
    b2 = _mm256_fmadd_ps(x1, load8(r[2] + k + 8), b2);
    a3 = _mm256_fmadd_ps(x0, load8(r[3] + k), a3);
    b3 = _mm256_fmadd_ps(x1, load8(r[3] + k + 8), b3);
  }
  s[0] = hsum(_mm256_add_ps(a0, b0));
  s[1] = hsum(_mm256_add_ps(a1, b1));
  s[2] = hsum(_mm256_add_ps(a2, b2));
  s[3] = hsum(_mm256_add_ps(a3, b3));
#endif
  for (; k < K; ++k) {
    for (int i = 0; i < kRows; ++i) s[i] += x[k] * static_cast<float>(r[i][k]);
  }
  for (int i = 0; i < kRows; ++i) y[n0 + i] = s[i];
}

inline float dot1(const float* x, const at::Half* r, int64_t K) {
  float s = 0.0f;
  for (int64_t k = 0; k < K; ++k) s += x[k] * static_cast<float>(r[k]);
  return s;
}

void streaming(const float* x, const at::Half* w, int64_t M, int64_t N, int64_t K, float* y) {
  const int64_t groups = N / kRows;
  at::parallel_for(0, groups, 8, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      if (M == 1) {
        dot4x1(x, w, K, g * kRows, y);
        continue;
      }
      for (int64_t m = 0; m < M; m += 2) {
        const bool two = m + 1 < M;
        dot4x2(x + m * K, x + (two ? m + 1 : m) * K, two, w, K, g * kRows, y + m * N, y + (two ? m + 1 : m) * N);
      }
    }
  });
  for (int64_t n = groups * kRows; n < N; ++n) {  // the last N % 4 rows
    for (int64_t m = 0; m < M; ++m) y[m * N + n] = dot1(x + m * K, w + n * K, K);
  }
}

}  // namespace

at::Tensor linear_f16w(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "linear_f16w: x must be float32");
  TORCH_CHECK(weight.scalar_type() == at::kHalf && weight.dim() == 2 && weight.is_contiguous(),
              "linear_f16w: weight must be a contiguous float16 [out, in] tensor");
  const int64_t K = weight.size(1), N = weight.size(0);
  TORCH_CHECK(x.size(-1) == K, "linear_f16w: x has ", x.size(-1), " features, the weight ", K);
  auto shape = x.sizes().vec();
  shape.back() = N;
  auto x2 = x.reshape({-1, K}).contiguous();
  const int64_t M = x2.size(0);
  auto y = at::empty({M, N}, x.options());
  const bool has_bias = bias.has_value() && bias->defined();
  if (M <= kSmallM) {
    streaming(x2.data_ptr<float>(), weight.data_ptr<at::Half>(), M, N, K, y.data_ptr<float>());
    if (has_bias) y.add_(*bias);
  } else {
    // Each thread converts its own slices and multiplies them (a GEMM inside the pool runs single-threaded).
    // The pool's threads do not inherit the caller's inference mode, and writing into an inference tensor
    // outside it is refused: they take the caller's thread-local state.
    const at::ThreadLocalState caller;
    at::parallel_for(0, (N + kSlice - 1) / kSlice, 1, [&](int64_t begin, int64_t end) {
      const at::ThreadLocalStateGuard same_state(caller);
      for (int64_t s = begin; s < end; ++s) {
        const int64_t n0 = s * kSlice, rows = std::min(N, n0 + kSlice) - n0;
        auto slice = weight.narrow(0, n0, rows).to(at::kFloat);
        auto out = y.narrow(1, n0, rows);
        if (has_bias) {
          at::addmm_out(out, bias->narrow(0, n0, rows), x2, slice.t());
        } else {
          at::mm_out(out, x2, slice.t());
        }
      }
    });
  }
  return y.view(shape);
}

TORCH_LIBRARY_FRAGMENT(inkstone_cpu, m) {
  m.def("linear_f16w(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(inkstone_cpu, CPU, m) { m.impl("linear_f16w", &linear_f16w); }
