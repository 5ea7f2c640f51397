// What more than one of the CPU kernels needs: the instruction-set switch, fp16 -> fp32 loads, the check of a
// float32 rows tensor, and the guided parallel loop of the linear kernels. Included by each kernel source; its
// text is part of the build key (__init__.py), so a change here rebuilds the library like a change in a source
// does.

#pragma once

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

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

// parallel_for over [0, n) with chunks handed out as threads ask (guided: each a share of what is left, at least
// min_chunk), not split evenly up front. A thread slowed down (memory, or preempted by the API process and the
// client at every streamed token) then holds up the step by one small chunk, not by the rest of its share. A
// decode step's 120 linears of the bundled model ran 1-5% faster than with an even split (alternating, 2 cores).
template <typename F>
void guided_for(int64_t n, int64_t min_chunk, const F& f) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), (n + min_chunk - 1) / min_chunk);
  if (threads <= 1 || at::in_parallel_region()) {
    f(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    int64_t begin = next.load(std::memory_order_relaxed), size;
    while (true) {
      do {
        if (begin >= n) return;
        size = std::min(n - begin, std::max(min_chunk, (n - begin) / (2 * threads)));
      } while (!next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed));
      f(begin, begin + size);
      begin = next.load(std::memory_order_relaxed);
    }
  });
}

}  // namespace inkstone
