// Paged decode attention on the CPU: store this step's K/V, then one query token per sequence attends over its
// cached context, read straight from the cache blocks (no gather copy). Written by hand because the same step
// in torch ops is a dozen dispatches per layer, which at batch 1 cost more than the attention arithmetic.
// Built on first use by engine/infer/cpu_kernels/__init__.py (-O3, the host's own instruction set), threads from
// ATen's pool; AVX2 tiles where the host has it (eight tokens' scores at once, running sums in registers), plain
// C++ the compiler vectorizes elsewhere.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "common.h"

namespace {

// Fewest context tokens in a piece of a split sequence. One layer of batch 1 at 256-512 tokens took 35-68 us split
// against 38-83 unsplit (2-core EPYC, alternating), but pieces of 32+ tokens made the served batch-1 rate at
// 16-144 tokens slower (53.2 against 55.4 tok/s over 6 alternating rounds): only long contexts are split.
constexpr int64_t kMinPart = 128;

#ifdef INKSTONE_AVX2
// Eight values of a cached row as fp32, whatever the cache's dtype, so the tiled passes read the cache directly
// (an fp16/bf16 row converts in registers).
inline __m256 row8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 row8(const at::Half* p) { return inkstone::load8(p); }
inline __m256 row8(const at::BFloat16* p) {  // bf16 is the top half of an fp32: widen and shift
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// The cache dtypes row8 reads.
template <typename cache_t>
constexpr bool kRow8 = std::is_same_v<cache_t, float> || std::is_same_v<cache_t, at::Half> ||
                       std::is_same_v<cache_t, at::BFloat16>;
#endif

// One cached token's K (or V) row in fp32. An fp16/bf16 cache is converted once per row into a small buffer
// that every query head of the group then reads: converting element by element inside the dot products left
// the compiler nothing to vectorize (a batch of 16 at ~370 tokens of context took 4x the fp32 cache's time).
inline const float* as_float(const float* row, int64_t, float*) { return row; }

template <typename T>
inline const float* as_float(const T* row, int64_t n, float* buf) {
  int64_t i = 0;
#ifdef INKSTONE_AVX2
  if constexpr (kRow8<T>) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(buf + i, row8(row + i));
  }
#endif
  for (; i < n; ++i) buf[i] = static_cast<float>(row[i]);  // and any other cache dtype (fp64)
  return buf;
}

template <typename cache_t>
void store(const at::Tensor& key, const at::Tensor& value, cache_t* k_cache, cache_t* v_cache,
           const int64_t* slots, int64_t batch, int64_t row) {
  // row = num_kv_heads * head_dim: one token's K (or V) in the cache.
  auto k = key.to(at::kFloat).contiguous();
  auto v = value.to(at::kFloat).contiguous();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t slot = slots[b];
    if (slot < 0) continue;  // a padding row of a compiled batch, or a token whose KV is not kept
    for (int64_t i = 0; i < row; ++i) {
      k_cache[slot * row + i] = static_cast<cache_t>(kp[b * row + i]);
      v_cache[slot * row + i] = static_cast<cache_t>(vp[b * row + i]);
    }
  }
}

// Tokens ahead whose cached K rows are prefetched (and each token's V row as its K is read, for the second pass).
// The cache is cold at every layer (the step streams megabytes of weights between two layers' attention), and a
// task reads a slice of each row, strided by the other kv heads, across blocks anywhere in the cache: without the
// hints one layer at batch 1 took 1.6-2x as long (24-400 tokens of context, 2-core EPYC, alternating).
constexpr int64_t kAheadTokens = 8;

template <typename cache_t>
inline void prefetch_row(const cache_t* row, int64_t n) {
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = n * static_cast<int64_t>(sizeof(cache_t));
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b);
  __builtin_prefetch(p + bytes - 1);  // the last line, when the row does not start on a line
}

// q . k over head_dim with four accumulators, so its FMAs do not wait on each other: a layer at batch 1 ran 9-12%
// faster than with the one accumulator of an `omp simd` reduction (48-200 tokens, 1 and 2 threads, alternating).
inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0.0f;
#ifdef INKSTONE_AVX2
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  sum = _mm_cvtss_f32(h);
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

#ifdef INKSTONE_AVX2
// Lane i holds the sum of the eight lanes of a[i]: eight dot products finished in seven adds, not eight
// separate horizontal sums.
inline __m256 sum8(const __m256* a) {
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// Tokens in a tile of the score pass: one register of scores, every K row of the tile read for each query head
// from L1.
constexpr int64_t kTile = 8;
// Tokens in a chunk of the value pass: their V rows (32 x 768 B for the bundled model) stay in L1 while every
// query head adds them up in registers, not in a sum it loads and stores per token. A decode step at batch 1 and
// 300-600 tokens took 29.9 against 31.4 ms; at batch 16, 86.6 against 85.8 (2-core EPYC, alternating).
constexpr int64_t kChunk = 32;

// acc[0, 8 NV) += sum over the chunk's tokens of p[t] * v[t][col, col + 8 NV), the running sum in registers.
template <int NV, typename cache_t>
inline void add_values(float* acc, const float* p, const cache_t* const* v, int64_t count, int64_t col) {
  __m256 a[NV];
  for (int k = 0; k < NV; ++k) a[k] = _mm256_loadu_ps(acc + 8 * k);
  for (int64_t t = 0; t < count; ++t) {
    const __m256 pt = _mm256_set1_ps(p[t]);
    const cache_t* vt = v[t] + col;
    for (int k = 0; k < NV; ++k) a[k] = _mm256_fmadd_ps(pt, row8(vt + 8 * k), a[k]);
  }
  for (int k = 0; k < NV; ++k) _mm256_storeu_ps(acc + 8 * k, a[k]);
}

template <typename cache_t>
void add_values_any(int nv, float* acc, const float* p, const cache_t* const* v, int64_t count, int64_t col) {
  switch (nv) {
    case 8: return add_values<8>(acc, p, v, count, col);
    case 7: return add_values<7>(acc, p, v, count, col);
    case 6: return add_values<6>(acc, p, v, count, col);
    case 5: return add_values<5>(acc, p, v, count, col);
    case 4: return add_values<4>(acc, p, v, count, col);
    case 3: return add_values<3>(acc, p, v, count, col);
    case 2: return add_values<2>(acc, p, v, count, col);
    default: return add_values<1>(acc, p, v, count, col);
  }
}
#endif

// One task's context range [t0, t1) of one sequence for `rows` query heads (`group` of them per kv head, the
// task's first kv head at column 0 of `offset(t)`): scores[r * n + t - t0] = scale * q_r . k_t. `tiled`: eight
// tokens at a time (sum8), else token by token, each row read whole and in address order.
template <typename cache_t, typename Offset>
void score_pass(const float* q, const cache_t* k_cache, const cache_t* v_cache, const Offset& offset, int64_t t0,
                int64_t t1, int64_t rows, int64_t group, int64_t head_dim, float scale, bool tiled, float* scores,
                float* row) {
  const int64_t n = t1 - t0, width = rows / group * head_dim;
  auto visit = [&](int64_t u) {  // token u's row offset; its K row kAheadTokens on and its V row are fetched
    if (u + kAheadTokens < t1) prefetch_row(k_cache + offset(u + kAheadTokens), width);
    const int64_t at = offset(u);
    prefetch_row(v_cache + at, width);  // read by the value pass, a few microseconds from now
    return at;
  };
  int64_t t = t0;
  for (int64_t u = t0; u < std::min(t1, t0 + kAheadTokens); ++u) prefetch_row(k_cache + offset(u), width);
#ifdef INKSTONE_AVX2
  if constexpr (kRow8<cache_t>) {
    if (tiled && head_dim % 8 == 0) {
      const __m256 vscale = _mm256_set1_ps(scale);
      for (; t + kTile <= t1; t += kTile) {
        const cache_t* k[kTile];
        for (int64_t i = 0; i < kTile; ++i) k[i] = k_cache + visit(t + i);
        for (int64_t r = 0; r < rows; ++r) {  // query head r reads kv head r / group
          const float* qr = q + r * head_dim;
          const int64_t col = (r / group) * head_dim;
          __m256 acc[kTile];
          for (int64_t i = 0; i < kTile; ++i) acc[i] = _mm256_setzero_ps();
          for (int64_t d = 0; d < head_dim; d += 8) {
            const __m256 qd = _mm256_loadu_ps(qr + d);
            for (int64_t i = 0; i < kTile; ++i) acc[i] = _mm256_fmadd_ps(qd, row8(k[i] + col + d), acc[i]);
          }
          _mm256_storeu_ps(scores + r * n + t - t0, _mm256_mul_ps(sum8(acc), vscale));
        }
      }
    }
  }
#endif
  for (; t < t1; ++t) {  // the tail of a tile, and every token where there are no tiles
    const float* kt = as_float(k_cache + visit(t), width, row);
    for (int64_t r = 0; r < rows; ++r) {
      scores[r * n + t - t0] = dot(q + r * head_dim, kt + (r / group) * head_dim, head_dim) * scale;
    }
  }
}

// acc[r] (head_dim values, zeroed here) = sum over [t0, t1) of p[r][t] * v_t, with p the softmax numerators in
// `scores` (laid out as score_pass writes them).
template <typename cache_t, typename Offset>
void value_pass(const cache_t* v_cache, const Offset& offset, int64_t t0, int64_t t1, int64_t rows, int64_t group,
                int64_t head_dim, const float* scores, float* acc, float* row) {
  const int64_t n = t1 - t0, width = rows / group * head_dim;
  std::fill(acc, acc + rows * head_dim, 0.0f);
#ifdef INKSTONE_AVX2
  if constexpr (kRow8<cache_t>) {
    if (head_dim % 8 == 0) {
      const cache_t* v[kChunk];
      for (int64_t c = t0; c < t1; c += kChunk) {
        const int64_t count = std::min(kChunk, t1 - c);
        for (int64_t i = 0; i < count; ++i) v[i] = v_cache + offset(c + i);
        for (int64_t r = 0; r < rows; ++r) {
          const float* p = scores + r * n + c - t0;
          for (int64_t d = 0; d < head_dim; d += 64) {  // eight registers of the running sum at a time
            const int nv = static_cast<int>(std::min<int64_t>(8, (head_dim - d) / 8));
            add_values_any(nv, acc + r * head_dim + d, p, v, count, (r / group) * head_dim + d);
          }
        }
      }
      return;
    }
  }
#endif
  for (int64_t t = t0; t < t1; ++t) {
    const float* vt = as_float(v_cache + offset(t), width, row);
    for (int64_t r = 0; r < rows; ++r) {
      const float p = scores[r * n + t - t0];
      const float* vh = vt + (r / group) * head_dim;
      float* a = acc + r * head_dim;
#pragma omp simd
      for (int64_t d = 0; d < head_dim; ++d) a[d] += p * vh[d];
    }
  }
}

// Softmax statistics and unnormalized output of some query heads over a range of one sequence's context: the
// pieces a split context is put back together from.
struct Partial {
  std::vector<float> peak, total, acc;  // per query head: max score, sum of exp(score - peak); [heads, D] sum of p v
};

template <typename cache_t>
void attend(const float* q, const cache_t* k_cache, const cache_t* v_cache, const int32_t* seq_lens,
            const int32_t* tables, int64_t table_width, int64_t batch, int64_t heads, int64_t kv_heads,
            int64_t head_dim, int64_t block_size, float scale, float* out) {
  const int64_t group = heads / kv_heads;  // query heads per kv head (GQA), laid out as HF's repeat_kv
  const int64_t token_stride = kv_heads * head_dim;
  // A task is one sequence with all its kv heads, so it reads each cached token's K (and V) row whole and in
  // order. With fewer sequences than threads (batch 1) a sequence is split by kv head and its context into
  // pieces (flash-decoding), enough for every thread to get an equal share: 3 kv heads on 2 threads otherwise
  // leave one thread a third of the work idle. Reading one head's slice of every row for a batch of 16 instead
  // ran at ~2 GB/s.
  const int64_t threads = at::get_num_threads();
  const int64_t splits = batch >= threads ? 1 : kv_heads;
  const int64_t longest = *std::max_element(seq_lens, seq_lens + batch);
  const int64_t parts = batch >= threads ? 1
      : std::max<int64_t>(1, std::min((2 * threads + batch * splits - 1) / (batch * splits), longest / kMinPart));
  const int64_t task_heads = kv_heads / splits;
  const int64_t rows = task_heads * group;  // query heads of a task
  // Scores eight tokens at a time only for a task that reads one kv head's slice of each row (a split sequence).
  // A whole-row task (batch 16 of the bundled model, ~370 tokens of context, blocks in order) ran 4-6% slower
  // tiled than token by token: each row read in address order streams better from memory. Split at batch 1,
  // 300-600 tokens, the tiled scores took a decode step from 38.9 to 33.6 ms (2-core EPYC, alternating).
  const bool tiled = splits > 1;
  std::vector<Partial> partials(parts > 1 ? batch * splits * parts : 0);
  at::parallel_for(0, batch * splits * parts, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    std::vector<float> acc(rows * head_dim);
    std::vector<float> peaks(rows), totals(rows);
    std::vector<float> row(task_heads * head_dim);  // a token's K or V for the task's kv heads, as fp32
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (splits * parts), h0 = (task / parts % splits) * task_heads, part = task % parts;
      const int64_t len = seq_lens[b];
      const int64_t t0 = len * part / parts, t1 = len * (part + 1) / parts, n = t1 - t0;
      const float* qb = q + (b * heads + h0 * group) * head_dim;
      float* ob = out + (b * heads + h0 * group) * head_dim;
      if (len <= 0) {  // a padding row: nothing to attend to
        std::fill(ob, ob + rows * head_dim, 0.0f);
        continue;
      }
      scores.resize(rows * std::max<int64_t>(n, 1));
      const int32_t* table = tables + b * table_width;
      auto offset = [&](int64_t t) {  // of token t's row for this task's kv heads, in k_cache and v_cache alike
        return (static_cast<int64_t>(table[t / block_size]) * block_size + t % block_size) * token_stride +
               h0 * head_dim;
      };
      score_pass(qb, k_cache, v_cache, offset, t0, t1, rows, group, head_dim, scale, tiled, scores.data(),
                 row.data());
      for (int64_t r = 0; r < rows; ++r) {  // softmax numerators in fp32, max-subtracted
        float* s = scores.data() + r * n;
        const float peak = n > 0 ? *std::max_element(s, s + n) : 0.0f;
        float total = 0.0f;
        for (int64_t t = 0; t < n; ++t) {
          s[t] = std::exp(s[t] - peak);
          total += s[t];
        }
        peaks[r] = peak;
        totals[r] = total;
      }
      value_pass(v_cache, offset, t0, t1, rows, group, head_dim, scores.data(), acc.data(), row.data());
      if (parts == 1) {
        for (int64_t r = 0; r < rows; ++r) {
          const float inv = 1.0f / totals[r];
          for (int64_t d = 0; d < head_dim; ++d) ob[r * head_dim + d] = acc[r * head_dim + d] * inv;
        }
      } else {
        partials[task] = Partial{peaks, totals, acc};
      }
    }
  });
  if (parts == 1) return;
  // Put each sequence's pieces together: rescale every piece to the overall peak (an empty piece weighs 0).
  for (int64_t task = 0; task < batch * splits; ++task) {
    const int64_t b = task / splits, h0 = (task % splits) * task_heads;
    if (seq_lens[b] <= 0) continue;
    float* ob = out + (b * heads + h0 * group) * head_dim;
    for (int64_t r = 0; r < rows; ++r) {
      float peak = -std::numeric_limits<float>::max();
      for (int64_t p = 0; p < parts; ++p) {
        const Partial& piece = partials[task * parts + p];
        if (piece.total[r] > 0.0f) peak = std::max(peak, piece.peak[r]);
      }
      float total = 0.0f;
      float* o = ob + r * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int64_t p = 0; p < parts; ++p) {
        const Partial& piece = partials[task * parts + p];
        if (piece.total[r] <= 0.0f) continue;
        const float weight = std::exp(piece.peak[r] - peak);
        total += piece.total[r] * weight;
        for (int64_t d = 0; d < head_dim; ++d) o[d] += piece.acc[r * head_dim + d] * weight;
      }
      const float inv = 1.0f / total;
      for (int64_t d = 0; d < head_dim; ++d) o[d] *= inv;
    }
  }
}

// q [B, H, D]; key/value [B, Hkv, D] (this step's); kv_cache [2, layers, blocks, block_size, Hkv, D];
// slot_mapping [B] int64 (-1: do not store; empty: the caller stored them already); seq_lens [B] int32 (0: a padding row, output zeros);
// block_tables [B, W] int32. Returns [B, H, D] in q's dtype.
at::Tensor paged_decode(const at::Tensor& q, const at::Tensor& key, const at::Tensor& value, at::Tensor kv_cache,
                        int64_t layer, const at::Tensor& slot_mapping, const at::Tensor& seq_lens,
                        const at::Tensor& block_tables, double scale) {
  TORCH_CHECK(kv_cache.dim() == 6 && kv_cache.size(0) == 2 && kv_cache.is_contiguous(),
              "kv_cache: expected a contiguous [2, layers, blocks, block_size, kv_heads, head_dim] tensor");
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong, "slot_mapping: expected int64");
  TORCH_CHECK(seq_lens.scalar_type() == at::kInt && block_tables.scalar_type() == at::kInt,
              "seq_lens and block_tables: expected int32");
  const int64_t batch = q.size(0), heads = q.size(1), head_dim = q.size(2);
  const int64_t layers = kv_cache.size(1), blocks = kv_cache.size(2), block_size = kv_cache.size(3);
  const int64_t kv_heads = kv_cache.size(4);
  TORCH_CHECK(kv_cache.size(5) == head_dim && heads % kv_heads == 0, "q and kv_cache: head shapes disagree");
  TORCH_CHECK(layer >= 0 && layer < layers, "layer out of range");
  TORCH_CHECK(slot_mapping.numel() == 0 || slot_mapping.numel() == batch, "slot_mapping: expected one slot per row");
  TORCH_CHECK(seq_lens.numel() == batch && block_tables.size(0) == batch, "seq_lens, block_tables: one row each");
  auto slots = slot_mapping.contiguous();
  auto lens = seq_lens.contiguous();
  auto tables = block_tables.contiguous();
  auto qf = q.to(at::kFloat).contiguous();
  auto out = at::empty({batch, heads, head_dim}, q.options().dtype(at::kFloat));
  const int64_t layer_elems = blocks * block_size * kv_heads * head_dim;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, kv_cache.scalar_type(), "paged_decode", [&] {
    scalar_t* base = kv_cache.data_ptr<scalar_t>();
    scalar_t* k_cache = base + layer * layer_elems;
    scalar_t* v_cache = base + (layers + layer) * layer_elems;
    if (slots.numel() > 0) {
      store<scalar_t>(key, value, k_cache, v_cache, slots.data_ptr<int64_t>(), batch, kv_heads * head_dim);
    }
    attend<scalar_t>(qf.data_ptr<float>(), k_cache, v_cache, lens.data_ptr<int32_t>(), tables.data_ptr<int32_t>(),
                     tables.size(1), batch, heads, kv_heads, head_dim, block_size, static_cast<float>(scale),
                     out.data_ptr<float>());
  });
  return out.to(q.scalar_type());
}

}  // namespace

TORCH_LIBRARY(inkstone_cpu, m) {
  m.def("paged_decode(Tensor q, Tensor key, Tensor value, Tensor(a!) kv_cache, int layer, Tensor slot_mapping, "
        "Tensor seq_lens, Tensor block_tables, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(inkstone_cpu, CPU, m) { m.impl("paged_decode", &paged_decode); }
