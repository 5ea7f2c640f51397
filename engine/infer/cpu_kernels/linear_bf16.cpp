// y = x @ w.T + bias for bf16 x [M, K] and a bf16 weight w [N, K] as the checkpoint stores it, on CPUs with
// AVX512-BF16 (where the engine runs bf16 by default). A decode step reads every weight once per token, so its
// speed is how fast the weights stream; ATen's bf16 linear (oneDNN) streamed them at ~10 GB/s at 1-16 rows of x
// on a 2-core Xeon that reads ~24 GB/s, which made batch-1 decode 0.7x llama.cpp's. Here each thread walks its
// share of w in order: a few rows of x take VDPBF16PS dot products (32 products of a row an instruction, straight
// from the bf16 values), more take AMX tile products. Both accumulate in fp32 as oneDNN does, with one rounding
// to bf16 at the end, and both read the weight in place: no packed copy, and prefill-sized M goes to ATen's AMX
// GEMM over the same tensor.

#include <torch/extension.h>

#include <vector>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common.h"

namespace {

// Up to this many rows of x stream the weight here; more go to ATen's GEMM (AMX), which wins once the arithmetic,
// not the bytes, sets the time. The bundled model's 211 matrices, cold, against ATen's bf16 linear, which took
// 25-28 ms at every size from 1 to 16 rows (2-core Xeon): the dot-product tiles 11.6 ms at 1 row, 14.9 at 4, 17.3
// at 5, 22.2 at 8, 38.0 at 16; the AMX tiles 15.4 at 1, 15.0 at 4, 16.7 at 5, 16.3 at 8, 18.2 at 16.
constexpr int64_t kSmallM = 8;      // the dot-product tiles alone
constexpr int64_t kSmallMAmx = 16;  // with AMX (an AMX tile holds 16 rows of x)
// From this many rows of x on, AMX (where the CPU has it) instead of the dot-product tiles.
constexpr int64_t kAmxMinM = 5;

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
constexpr bool kNative = true;
constexpr int64_t kRowsW = 4;  // weight rows per tile, read side by side, each 64-byte line used whole
constexpr int64_t kRowsX = 4;  // rows of x per tile; 16 accumulators in flight hide VDPBF16PS's latency
constexpr int64_t kLane = 32;  // bf16 values per 512-bit register

inline __m512bh load32(const at::BFloat16* p, __mmask32 mask) {
  return (__m512bh)_mm512_maskz_loadu_epi16(mask, p);
}

inline __m256 fold(__m512 v) {  // the two 256-bit halves added
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// [sum of a0's lanes, a1's, a2's, a3's]: one pass of adds and horizontal adds for all four. Reducing each on its
// own (_mm512_reduce_add_ps) took as long as the dot products of a small layer at 4-16 rows of x.
inline __m128 sum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a0), fold(a1)), _mm256_hadd_ps(fold(a2), fold(a3)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// The dot products of the four weight rows w[0..4) with x rows x[0..RX) (each K long, x rows stride K): out[r]
// holds x row r's four, as fp32 sums of exact bf16 products. The first pass over a block of rows prefetches the
// next block (one block, ~4 KiB, ahead; the rows are contiguous).
template <int RX, bool kPrefetch>
void tile(const at::BFloat16* const* w, const at::BFloat16* x, int64_t K, __m128* out) {
  __m512 acc[kRowsW][RX];
  for (int i = 0; i < kRowsW; ++i) {
    for (int r = 0; r < RX; ++r) acc[i][r] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; k += kLane) {
    const __mmask32 mask = K - k >= kLane ? ~__mmask32{0} : (__mmask32{1} << (K - k)) - 1;
    __m512bh wv[kRowsW];
    for (int i = 0; i < kRowsW; ++i) {
      if constexpr (kPrefetch) _mm_prefetch(reinterpret_cast<const char*>(w[i] + k + kRowsW * K), _MM_HINT_T0);
      wv[i] = load32(w[i] + k, mask);
    }
    for (int r = 0; r < RX; ++r) {
      const __m512bh xv = load32(x + r * K + k, mask);
      for (int i = 0; i < kRowsW; ++i) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], xv, wv[i]);
    }
  }
  for (int r = 0; r < RX; ++r) out[r] = sum4(acc[0][r], acc[1][r], acc[2][r], acc[3][r]);
}

template <bool kPrefetch>
void tile_rows(const at::BFloat16* const* w, const at::BFloat16* x, int64_t rows, int64_t K, __m128* out) {
  switch (rows) {
    case 1: tile<1, kPrefetch>(w, x, K, out); break;
    case 2: tile<2, kPrefetch>(w, x, K, out); break;
    case 3: tile<3, kPrefetch>(w, x, K, out); break;
    default: tile<4, kPrefetch>(w, x, K, out); break;
  }
}

// Weight rows [0, N) (w and the fp32 bias already offset to them) into columns [0, N) of y, rows ldy apart.
void streaming(const at::BFloat16* x, const at::BFloat16* w, const float* bias, int64_t M, int64_t N,
               int64_t K, at::BFloat16* y, int64_t ldy) {
  const int64_t blocks = (N + kRowsW - 1) / kRowsW;
  inkstone::guided_for(blocks, 4, [&](int64_t begin, int64_t end) {
    __m128 out[kRowsX];
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n0 = b * kRowsW, valid = std::min(kRowsW, N - n0);
      const at::BFloat16* rows[kRowsW];
      for (int64_t i = 0; i < kRowsW; ++i) rows[i] = w + (n0 + std::min(i, valid - 1)) * K;  // last block: repeat
      __m128 bias4 = _mm_setzero_ps();
      if (bias && valid == kRowsW) bias4 = _mm_loadu_ps(bias + n0);
      for (int64_t m = 0; m < M; m += kRowsX) {  // the block's rows come from memory once, then from L1/L2
        const int64_t rows_x = std::min(kRowsX, M - m);
        if (m == 0) {
          tile_rows<true>(rows, x, rows_x, K, out);
        } else {
          tile_rows<false>(rows, x + m * K, rows_x, K, out);
        }
        for (int64_t r = 0; r < rows_x; ++r) {
          at::BFloat16* yr = y + (m + r) * ldy + n0;
          if (valid == kRowsW) {  // fp32 -> bf16 rounded to nearest even, as ATen rounds
            const __m128bh packed = _mm_cvtneps_pbh(_mm_add_ps(out[r], bias4));
            _mm_storel_epi64(reinterpret_cast<__m128i*>(yr), (__m128i)packed);
          } else {
            alignas(16) float sums[kRowsW];
            _mm_store_ps(sums, out[r]);
            for (int64_t i = 0; i < valid; ++i) {
              yr[i] = static_cast<at::BFloat16>(sums[i] + (bias ? bias[n0 + i] : 0.0f));
            }
          }
        }
      }
    }
  });
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
// AMX: one TDPBF16PS multiplies 16 weight rows by 32 k of up to 16 rows of x. A tile of the weight loads
// straight from its row-major rows (16 rows of 64 bytes, K apart), so this too reads the weight in place; x goes
// once per call into the pair-interleaved layout the second operand needs. The product is y's transpose, 16
// weight rows by 16 rows of x, turned back with gathers. At 9-16 rows of x the dot-product tiles above are bound
// by their arithmetic (~40 flops a cycle); this is bound by the weight's bytes again.
constexpr int64_t kAmxRows = 32;  // weight rows per block: two accumulator tiles, so two products overlap
constexpr int64_t kAmxK = 32;     // k per tile product

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Linux hands out the tile registers' state only to a process that asks (ATen's oneDNN asks too; asking twice
// is harmless). False where the kernel refuses: the dot-product tiles then serve every batch.
bool amx_permitted() {
  static const bool ok = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
  return ok;
}

void amx_configure() {  // per thread: tiles 0-1 accumulate, 2-3 hold weight rows, 4 holds x
  TileConfig cfg;
  for (int t = 0; t < 5; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

// x [M, K] (M <= 16) as the tile operand: [K / 2][16][2], k pairs of each row side by side, rows past M zero.
std::vector<at::BFloat16> interleave_pairs(const at::BFloat16* x, int64_t M, int64_t K) {
  std::vector<at::BFloat16> xv(K * 16, at::BFloat16(0.0f));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) xv[(k / 2) * 32 + m * 2 + (k % 2)] = x[m * K + k];
  }
  return xv;
}

// Weight rows [0, blocks * 32) into y (rows ldy apart); K a multiple of 32.
void amx_streaming(const at::BFloat16* xv, const at::BFloat16* w, const float* bias, int64_t M,
                   int64_t blocks, int64_t K, at::BFloat16* y, int64_t ldy) {
  inkstone::guided_for(blocks, 2, [&](int64_t begin, int64_t end) {
    amx_configure();
    alignas(64) float c[kAmxRows * 16];  // [weight row][row of x]
    const __m512i column = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                                                15), _mm512_set1_epi32(16));
    for (int64_t b = begin; b < end; ++b) {
      const at::BFloat16* rows = w + b * kAmxRows * K;
      _tile_zero(0);
      _tile_zero(1);
      for (int64_t k = 0; k < K; k += kAmxK) {
        for (int64_t i = 0; i < kAmxRows; ++i) {  // the next block's lines at this k, one block ahead
          _mm_prefetch(reinterpret_cast<const char*>(rows + (kAmxRows + i) * K + k), _MM_HINT_T0);
        }
        _tile_loadd(4, xv + k * 16, 64);
        _tile_loadd(2, rows + k, K * 2);
        _tile_loadd(3, rows + 16 * K + k, K * 2);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(1, 3, 4);
      }
      _tile_stored(0, c, 64);
      _tile_stored(1, c + 16 * 16, 64);
      const int64_t n0 = b * kAmxRows;
      __m512 bias_lo = _mm512_setzero_ps(), bias_hi = bias_lo;
      if (bias) {
        bias_lo = _mm512_loadu_ps(bias + n0);
        bias_hi = _mm512_loadu_ps(bias + n0 + 16);
      }
      for (int64_t m = 0; m < M; ++m) {  // row m of y: column m of the two products
        const __m512 lo = _mm512_add_ps(_mm512_i32gather_ps(column, c + m, 4), bias_lo);
        const __m512 hi = _mm512_add_ps(_mm512_i32gather_ps(column, c + 16 * 16 + m, 4), bias_hi);
        _mm512_storeu_si512(y + m * ldy + n0, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      }
    }
    _tile_release();
  });
}
#endif
#else
constexpr bool kNative = false;
#endif

}  // namespace

// Rows of x up to which linear_bf16 streams the weight itself; 0 on a build without AVX512-BF16.
int64_t linear_bf16_max_rows() {
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
  if (amx_permitted()) return kSmallMAmx;
#endif
  return kNative ? kSmallM : 0;
}

at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16,
              "linear_bf16: x and the weight must be bfloat16, got ", x.scalar_type(), " and ", w.scalar_type());
  TORCH_CHECK(w.dim() == 2 && w.is_contiguous(), "linear_bf16: the weight must be a contiguous [out, in] matrix");
  const int64_t N = w.size(0), K = w.size(1);
  TORCH_CHECK(x.size(-1) == K, "linear_bf16: x has ", x.size(-1), " features, the weight ", K);
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->scalar_type() == at::kBFloat16 && bias->numel() == N && bias->is_contiguous()),
              "linear_bf16: the bias must be bfloat16 with one value per output feature");
  const int64_t M = x.numel() / K;
  if (M > linear_bf16_max_rows() || K == 0) {
    return at::linear(x, w, has_bias ? *bias : at::Tensor());
  }
  auto shape = x.sizes().vec();
  shape.back() = N;
  auto y = at::empty(shape, x.options());
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
  auto x2 = x.reshape({M, K}).contiguous();
  const at::BFloat16* xp = x2.data_ptr<at::BFloat16>();
  const at::BFloat16* wp = w.data_ptr<at::BFloat16>();
  const at::Tensor bias_f = has_bias ? bias->to(at::kFloat) : at::Tensor();  // once, for every tile's epilogue
  const float* bp = has_bias ? bias_f.data_ptr<float>() : nullptr;
  at::BFloat16* yp = y.data_ptr<at::BFloat16>();
  int64_t done = 0;  // weight rows computed by AMX; the rest by the dot-product tiles
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
  if (M >= kAmxMinM && K % kAmxK == 0 && N >= kAmxRows && amx_permitted()) {
    const std::vector<at::BFloat16> xv = interleave_pairs(xp, M, K);
    amx_streaming(xv.data(), wp, bp, M, N / kAmxRows, K, yp, N);
    done = N / kAmxRows * kAmxRows;
  }
#endif
  if (done < N) streaming(xp, wp + done * K, bp ? bp + done : nullptr, M, N - done, K, yp + done, N);
#endif
  return y;
}

TORCH_LIBRARY_FRAGMENT(inkstone_cpu, m) {
  m.def("linear_bf16(Tensor x, Tensor w, Tensor? bias) -> Tensor");
  m.def("linear_bf16_max_rows() -> int", &linear_bf16_max_rows);  // no tensor to dispatch on: one kernel for all
}

TORCH_LIBRARY_IMPL(inkstone_cpu, CPU, m) { m.impl("linear_bf16", &linear_bf16); }
