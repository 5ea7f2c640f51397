// What more than one of the CPU kernels needs: the instruction-set switch, fp16 -> fp32 loads, and the check of
// a float32 rows tensor. Included by each kernel source; its text is part of the build key (__init__.py), so a
// change here rebuilds the library like a change in a source does.

#pragma once

#include <torch/extension.h>

#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#include <immintrin.h>
#define INKSTONE_AVX2 1
#endif

namespace inkstone {

#ifdef INKSTONE_AVX2
// Eight fp16 values (unaligned) as one register of fp32 (F16C).
inline __m256 load8(const at::Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#endif

// A contiguous float32 2-D tensor, or a RuntimeError naming what it is (`what`) and its shape (`rows_cols`).
inline void check_float_rows(const at::Tensor& x, const char* what, const char* rows_cols) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2 && x.is_contiguous(), what,
              ": expected a contiguous float32 [", rows_cols, "] tensor");
}

}  // namespace inkstone
