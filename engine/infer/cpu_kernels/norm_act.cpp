// RMSNorm (with the residual add), rotary embedding and SiLU-mul over fp32 rows, each in one pass, for the steps
// that run eagerly on the CPU (prefill, and decode batches past the compiled buckets). In torch ops each is
// 3-8 passes over the step's activations (RMSNorm alone: pow, mean, add, rsqrt, mul, mul), and at prefill
// those passes over memory took ~10% of a 5k-token step of the bundled model. A compiled decode graph does not
// call these: inductor fuses the same arithmetic there.
// Arithmetic as the torch ops (engine/infer/layers) do it, in fp32; only the order of the sum of squares differs.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <tuple>

#include "common.h"

namespace {

using inkstone::check_float_rows;

constexpr int64_t kGrainValues = 16384;  // values per thread's piece at least: small steps stay on one thread

int64_t grain(int64_t row_values) { return std::max<int64_t>(1, kGrainValues / std::max<int64_t>(1, row_values)); }

void normalize_row(const float* x, const float* weight, int64_t n, float eps, float* out) {
  float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
  for (int64_t i = 0; i < n; ++i) squares += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(squares / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * scale);
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_float_rows(x, "rms_norm: x", "tokens, features");
  const int64_t tokens = x.size(0), n = x.size(1);
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.numel() == n, "rms_norm: weight must be float32 [", n, "]");
  auto w = weight.contiguous();
  auto out = at::empty_like(x);
  const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, tokens, grain(n), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) normalize_row(xp + t * n, wp, n, static_cast<float>(eps), op + t * n);
  });
  return out;
}

// (rms_norm(residual + x), residual + x)
std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                                const at::Tensor& weight, double eps) {
  check_float_rows(x, "add_rms_norm: x", "tokens, features");
  check_float_rows(residual, "add_rms_norm: residual", "tokens, features");
  TORCH_CHECK(x.sizes() == residual.sizes(), "add_rms_norm: x and residual differ in shape");
  const int64_t tokens = x.size(0), n = x.size(1);
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.numel() == n,
              "add_rms_norm: weight must be float32 [", n, "]");
  auto w = weight.contiguous();
  auto out = at::empty_like(x);
  auto sum = at::empty_like(x);
  const float *xp = x.data_ptr<float>(), *rp = residual.data_ptr<float>(), *wp = w.data_ptr<float>();
  float *op = out.data_ptr<float>(), *sp = sum.data_ptr<float>();
  at::parallel_for(0, tokens, grain(n), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* s = sp + t * n;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) s[i] = rp[t * n + i] + xp[t * n + i];
      normalize_row(s, wp, n, static_cast<float>(eps), op + t * n);
    }
  });
  return {out, sum};
}

// x [T, 2I] (gate | up) -> silu(gate) * up [T, I]
at::Tensor silu_and_mul(const at::Tensor& x) {
  check_float_rows(x, "silu_and_mul: x", "tokens, features");
  TORCH_CHECK(x.size(1) % 2 == 0, "silu_and_mul: x needs an even number of features");
  const int64_t tokens = x.size(0), n = x.size(1) / 2;
  auto out = at::empty({tokens, n}, x.options());
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, tokens, grain(2 * n), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float *gate = xp + t * 2 * n, *up = gate + n;
      float* o = op + t * n;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    }
  });
  return out;
}

namespace {

// x [T, H, D] with D and H contiguous (its tokens may be strided, as q/k split from a fused qkv) -> rotated
// [T, H, D] contiguous: the first and second halves of each head rotate as a pair, as HF's rotate_half.
at::Tensor rotate(const at::Tensor& x, const float* cos_sin, int64_t table_width, const int64_t* positions,
                  int64_t max_position) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 3 && x.stride(2) == 1 && x.stride(1) == x.size(2),
              "rotary: q and k must be float32 [tokens, heads, head_dim] with each token's heads contiguous");
  const int64_t tokens = x.size(0), heads = x.size(1), dim = x.size(2), half = dim / 2;
  TORCH_CHECK(dim % 2 == 0 && table_width == dim, "rotary: head_dim ", dim, " does not match the cos/sin table");
  auto out = at::empty({tokens, heads, dim}, x.options());
  const float* xp = x.data_ptr<float>();
  const int64_t token_stride = x.stride(0);
  float* op = out.data_ptr<float>();
  at::parallel_for(0, tokens, grain(heads * dim), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t pos = positions[t];
      TORCH_CHECK(pos >= 0 && pos < max_position, "rotary: position ", pos, " is outside the table");
      const float *c = cos_sin + pos * table_width, *s = c + half;
      for (int64_t h = 0; h < heads; ++h) {
        const float* x1 = xp + t * token_stride + h * dim;
        const float* x2 = x1 + half;
        float* o = op + (t * heads + h) * dim;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          o[i] = x1[i] * c[i] - x2[i] * s[i];
          o[half + i] = x2[i] * c[i] + x1[i] * s[i];
        }
      }
    }
  });
  return out;
}

}  // namespace

// cos_sin [max_position, D] (cos | sin, D / 2 each), positions [T] int64, q [T, H, D], k [T, Hkv, D]
std::tuple<at::Tensor, at::Tensor> rotary(const at::Tensor& cos_sin, const at::Tensor& positions, const at::Tensor& q,
                                          const at::Tensor& k) {
  TORCH_CHECK(cos_sin.scalar_type() == at::kFloat && cos_sin.dim() == 2 && cos_sin.is_contiguous(),
              "rotary: cos_sin must be a contiguous float32 [positions, head_dim] table");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.numel() == q.size(0) && q.size(0) == k.size(0),
              "rotary: one int64 position per token of q and k");
  auto pos = positions.contiguous();
  const float* table = cos_sin.data_ptr<float>();
  const int64_t* p = pos.data_ptr<int64_t>();
  return {rotate(q, table, cos_sin.size(1), p, cos_sin.size(0)), rotate(k, table, cos_sin.size(1), p, cos_sin.size(0))};
}

TORCH_LIBRARY_FRAGMENT(inkstone_cpu, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps) -> (Tensor, Tensor)");
  m.def("silu_and_mul(Tensor x) -> Tensor");
  m.def("rotary(Tensor cos_sin, Tensor positions, Tensor q, Tensor k) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(inkstone_cpu, CPU, m) {
  m.impl("rms_norm", &rms_norm);
  m.impl("add_rms_norm", &add_rms_norm);
  m.impl("silu_and_mul", &silu_and_mul);
  m.impl("rotary", &rotary);
}
