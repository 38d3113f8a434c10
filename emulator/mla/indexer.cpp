// The lightning indexer's steps 1-6 (mla/indexer.hpp states each with its source). The FP8 dots go
// through gemm/ (accumulate tensorcore, unit scales, FP32 out): the same tensor-core chain the
// GEMM emulator and its Hopper vector kernel compute, not a second copy of it.
#include "mla/indexer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/bf16.hpp"
#include "common/parallel.hpp"
#include "gemm/bounds.hpp"
#include "gemm/gemm.hpp"
#include "quant/quantize.hpp"
#include "quant/scale_rule.hpp"

namespace fp8lab::mla {
namespace {

constexpr std::size_t D = kIndexHeadDim;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Python's `n ** -0.5` (a double) as torch hands a Python scalar to an FP32 kernel: cast to float.
float inv_sqrt_f32(double n) { return static_cast<float>(std::pow(n, -0.5)); }

void check_bf16(const float* x, std::size_t count, const char* arg) {
  for (std::size_t i = 0; i < count; ++i) {
    if (!std::isfinite(x[i]))
      throw std::invalid_argument(std::string(arg) + ": element " + std::to_string(i) + " is " +
                                  (std::isnan(x[i]) ? "NaN" : "infinite") + "; the indexer takes finite BF16 values");
    if (round_to_bf16(x[i]) != x[i])
      throw std::invalid_argument(std::string(arg) + ": element " + std::to_string(i) + " = " + std::to_string(x[i]) +
                                  " is not a BF16 value (round the activations to BF16 first, as the model does)");
  }
}

std::size_t range_start(const IndexerInputs& in, std::size_t i) { return in.starts ? static_cast<std::size_t>(in.starts[i]) : 0; }
std::size_t range_end(const IndexerInputs& in, std::size_t i) { return in.ends ? static_cast<std::size_t>(in.ends[i]) : in.n; }

// Unit-scale operand over rows [r0, r1) of decoded E4M3 elements (the raw accumulator is wanted:
// the scales enter in the head reduction, as in both kernels).
GemmOperand unit_operand(const std::vector<float>& elements, std::size_t r0, std::size_t r1) {
  GemmOperand o;
  o.rows = r1 - r0;
  o.cols = D;
  o.fmt = "e4m3";
  o.elements.assign(elements.begin() + static_cast<std::ptrdiff_t>(r0 * D), elements.begin() + static_cast<std::ptrdiff_t>(r1 * D));
  o.tile_rows = 1;
  o.tile_cols = D;
  o.scales.assign(o.rows, 1.0f);
  o.quantised = true;
  return o;
}

std::vector<float> decode_elements(const QTensor& q) {
  std::vector<float> e(q.bits.size());
  const Format& f = q.format();
  for (std::size_t i = 0; i < e.size(); ++i) e[i] = static_cast<float>(decode(q.bits[i], f));
  return e;
}

// The FP32 operations of a head reduction, computing values (Plain) or values with a running error
// bound against the exact real result (Bounded, Higham 2nd ed. §3.3: fl(z) = z(1 + d), |d| <= u =
// 2^-24, plus eta = 2^-149 where a product or FMA may underflow; an addition's underflow is exact).
// One reduction routine is written against either, so the bound replays exactly the computed steps.
struct Plain {
  using T = float;
  static T from_acc(double acc, double) { return static_cast<float>(acc); }
  static T relu(T x) { return std::fmax(x, 0.0f); }
  static T mul(T x, float c) { return x * c; }
  static T add(T x, T y) { return x + y; }
  static T fma(T x, float c, T y) { return std::fma(x, c, y); }
};
struct Bounded {
  struct T {
    float v;
    double e;
  };
  static constexpr double u = 0x1p-24, eta = 0x1p-149;
  static T from_acc(double acc, double bound) { return {static_cast<float>(acc), bound}; }
  static T relu(T x) { return {std::fmax(x.v, 0.0f), x.e}; }  // max(., 0) is 1-Lipschitz
  static T mul(T x, float c) {
    const float v = x.v * c;
    return {v, std::fabs(c) * x.e + u * std::fabs(v) + eta};
  }
  static T add(T x, T y) {
    const float v = x.v + y.v;
    return {v, x.e + y.e + u * std::fabs(v)};
  }
  static T fma(T x, float c, T y) {
    const float v = std::fma(x.v, c, y.v);
    return {v, std::fabs(c) * x.e + y.e + u * std::fabs(v) + eta};
  }
};

// One logit from the H accumulators acc[h * stride] (bounds bound[h * stride] when Ops tracks
// them) of token j with key scale s (IndexReduction, indexer_spec.hpp).
template <class Ops>
typename Ops::T reduce_heads(const double* acc, const double* bound, std::size_t stride, const float* w, float s,
                             int heads, IndexReduction r) {
  using T = typename Ops::T;
  auto a = [&](int h) {
    const std::size_t at = static_cast<std::size_t>(h) * stride;
    return Ops::from_acc(acc[at], bound ? bound[at] : 0.0);
  };
  if (r == IndexReduction::DeepgemmSm90) {
    T v[4];
    for (int t = 0; t < 4; ++t) {
      T sum[2];
      for (int p = 0; p < 2; ++p) {
        const int h0 = 2 * t + p;
        sum[p] = Ops::mul(Ops::relu(a(h0)), w[h0]);
        for (int g = 1; g < heads / 8; ++g) sum[p] = Ops::fma(Ops::relu(a(8 * g + h0)), w[8 * g + h0], sum[p]);
      }
      v[t] = Ops::mul(Ops::add(sum[0], sum[1]), s);
    }
    return Ops::add(Ops::add(v[0], v[1]), Ops::add(v[2], v[3]));  // __shfl_xor_sync offsets 1 then 2
  }
  const bool per_head = r == IndexReduction::PerHeadScale;
  T total{};
  for (int h = 0; h < heads; ++h) {
    const T x = per_head ? Ops::mul(a(h), s) : a(h);
    const T t = Ops::mul(Ops::relu(x), w[h]);
    total = h == 0 ? t : Ops::add(total, t);
  }
  return per_head ? total : Ops::mul(total, s);
}

GemmSpec accumulator_spec(const IndexerSpec& spec) {
  GemmSpec g;
  g.accumulate = Accumulate::TensorCore;
  g.instruction = spec.instruction;
  g.out = OutputFormat::Fp32;
  return g;
}

// Calls body(i, s, len, acc, bound) per query with a non-empty range: acc (and, when wanted, its
// certified bound) is the H x len matrix of raw q8 . k8 accumulators.
template <class Body>
void for_each_query(const IndexerOperands& ops, const IndexerInputs& in, const IndexerSpec& spec, bool want_bound,
                    Body body) {
  const std::size_t H = static_cast<std::size_t>(spec.heads);
  const GemmSpec g = accumulator_spec(spec);
  const std::vector<float> qe = decode_elements(ops.q8), ke = decode_elements(ops.k8);
  for (std::size_t i = 0; i < in.m; ++i) {
    const std::size_t s = range_start(in, i), e = range_end(in, i);
    if (e == s) continue;
    const GemmOperand a = unit_operand(qe, i * H, (i + 1) * H), b = unit_operand(ke, s, e);
    const std::vector<double> acc = gemm(a, b, g);
    const std::vector<double> bound = want_bound ? gemm_error_bound(a, b, g) : std::vector<double>{};
    body(i, s, e - s, acc, bound);
  }
}

// The fast Walsh-Hadamard butterfly (Sylvester order, unnormalised) on one D-vector in T's
// arithmetic: FP32 for the kernel's rotation, float64 for the exact one.
template <class T>
void hadamard_butterfly(T* v) {
  for (std::size_t stride = 1; stride < D; stride <<= 1)
    for (std::size_t i = 0; i < D; ++i)
      if ((i & stride) == 0) {
        const T a = v[i], b = v[i + stride];
        v[i] = a + b;
        v[i + stride] = a - b;
      }
}

}  // namespace

std::vector<float> rotate_activation(const float* x, std::size_t rows, bool scaled) {
  const float scale = inv_sqrt_f32(static_cast<double>(D));
  std::vector<float> out(rows * D);
  for (std::size_t r = 0; r < rows; ++r) {
    float v[D];
    std::copy(x + r * D, x + (r + 1) * D, v);
    hadamard_butterfly(v);
    for (std::size_t i = 0; i < D; ++i) out[r * D + i] = round_to_bf16(scaled ? v[i] * scale : v[i]);
  }
  return out;
}

void validate_indexer_inputs(const IndexerInputs& in, const IndexerSpec& spec) {
  validate(spec);
  const std::size_t H = static_cast<std::size_t>(spec.heads);
  if (in.m > 0 && (!in.q || !in.weights)) throw std::invalid_argument("q/weights: null with m > 0 queries");
  if (in.n > 0 && !in.k) throw std::invalid_argument("k: null with n > 0 tokens");
  if (static_cast<std::size_t>(spec.topk) > in.n)
    throw std::invalid_argument("topk: " + std::to_string(spec.topk) + " is larger than the context (" +
                                std::to_string(in.n) + " tokens)");
  check_bf16(in.q, in.m * H * D, "q");
  check_bf16(in.k, in.n * D, "k");
  check_bf16(in.weights, in.m * H, "weights");
  for (std::size_t i = 0; i < in.m; ++i) {
    const long long s = in.starts ? in.starts[i] : 0, e = in.ends ? in.ends[i] : static_cast<long long>(in.n);
    if (s < 0 || s > e || e > static_cast<long long>(in.n))
      throw std::invalid_argument("starts/ends: query " + std::to_string(i) + " has range [" + std::to_string(s) + ", " +
                                  std::to_string(e) + "); expected 0 <= start <= end <= n = " + std::to_string(in.n));
  }
}

IndexerOperands indexer_operands(const IndexerInputs& in, const IndexerSpec& spec) {
  const std::size_t H = static_cast<std::size_t>(spec.heads);
  const ScaleRule& rule = scale_rule_by_name(spec.scale_rule);
  IndexerOperands o;
  o.q_rot = rotate_activation(in.q, in.m * H);
  o.k_rot = rotate_activation(in.k, in.n);
  o.q8 = quantize(o.q_rot.data(), in.m * H, D, Tile{1, D}, "e4m3", rule);
  o.k8 = quantize(o.k_rot.data(), in.n, D, Tile{1, D}, "e4m3", rule);
  o.k_scale = o.k8.scales;
  const float wh = inv_sqrt_f32(static_cast<double>(H)), softmax_scale = inv_sqrt_f32(static_cast<double>(D));
  o.w.resize(in.m * H);
  for (std::size_t r = 0; r < in.m * H; ++r) o.w[r] = (round_to_bf16(in.weights[r] * wh) * o.q8.scales[r]) * softmax_scale;
  return o;
}

std::vector<float> indexer_logits(const IndexerOperands& ops, const IndexerInputs& in, const IndexerSpec& spec) {
  std::vector<float> logits(in.m * in.n, kNegInf);
  for_each_query(ops, in, spec, false, [&](std::size_t i, std::size_t s, std::size_t len, const std::vector<double>& acc,
                                           const std::vector<double>&) {
    const float* w = ops.w.data() + i * static_cast<std::size_t>(spec.heads);
    parallel_for(len, 4096, [&](std::size_t b, std::size_t end) {
      for (std::size_t j = b; j < end; ++j)
        logits[i * in.n + s + j] =
            reduce_heads<Plain>(acc.data() + j, nullptr, len, w, ops.k_scale[s + j], spec.heads, spec.reduction);
    });
  });
  return logits;
}

std::vector<double> indexer_logit_bound(const IndexerOperands& ops, const IndexerInputs& in, const IndexerSpec& spec) {
  std::vector<double> out(in.m * in.n, 0.0);
  for_each_query(ops, in, spec, true, [&](std::size_t i, std::size_t s, std::size_t len, const std::vector<double>& acc,
                                          const std::vector<double>& bound) {
    const float* w = ops.w.data() + i * static_cast<std::size_t>(spec.heads);
    for (std::size_t j = 0; j < len; ++j)
      out[i * in.n + s + j] = reduce_heads<Bounded>(acc.data() + j, bound.data() + j, len, w, ops.k_scale[s + j],
                                                    spec.heads, spec.reduction).e * (1.0 + 0x1p-30);
  });
  return out;
}

std::vector<std::int32_t> indexer_topk(const float* logits, const IndexerInputs& in, int topk) {
  const std::size_t K = static_cast<std::size_t>(topk);
  std::vector<std::int32_t> out(in.m * K, -1);
  for (std::size_t i = 0; i < in.m; ++i) {
    const std::size_t s = range_start(in, i), e = range_end(in, i);
    std::vector<std::int32_t> ids;
    ids.reserve(e - s);
    for (std::size_t j = s; j < e; ++j) {
      if (std::isnan(logits[i * in.n + j]))
        throw std::invalid_argument("logits: NaN at query " + std::to_string(i) + ", token " + std::to_string(j));
      ids.push_back(static_cast<std::int32_t>(j));
    }
    const std::size_t take = std::min(K, ids.size());
    const float* row = logits + i * in.n;
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(take), ids.end(),
                      [row](std::int32_t a, std::int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    std::copy(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(take), out.begin() + static_cast<std::ptrdiff_t>(i * K));
  }
  return out;
}

IndexerResult index(const IndexerInputs& in, const IndexerSpec& spec) {
  validate_indexer_inputs(in, spec);
  IndexerResult r;
  r.ops = indexer_operands(in, spec);
  r.logits = indexer_logits(r.ops, in, spec);
  for (std::size_t x = 0; x < r.logits.size(); ++x)
    if (std::isnan(r.logits[x]))
      throw std::invalid_argument("q/k/weights: the FP32 logit of query " + std::to_string(x / in.n) + ", token " +
                                  std::to_string(x % in.n) +
                                  " is NaN (+inf + -inf in the head reduction): the inputs are too large for FP32 logits");
  r.indices = indexer_topk(r.logits.data(), in, spec.topk);
  return r;
}

namespace {

// The Hadamard of 128-vectors in float64 (exact while the inputs of one vector span less than about
// 2^44 in magnitude: BF16 has 8 significant bits and a sum of 128 terms needs 7 more), times 128^-1/2.
std::vector<double> rotate_exact(const float* x, std::size_t rows) {
  std::vector<double> out(rows * D);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (std::size_t r = 0; r < rows; ++r) {
    double* v = out.data() + r * D;
    for (std::size_t i = 0; i < D; ++i) v[i] = x[r * D + i];
    hadamard_butterfly(v);
    for (std::size_t i = 0; i < D; ++i) v[i] *= scale;
  }
  return out;
}

}  // namespace

std::vector<double> indexer_logits_exact(const IndexerInputs& in, const IndexerSpec& spec, ExactIndexer which) {
  validate_indexer_inputs(in, spec);
  const std::size_t H = static_cast<std::size_t>(spec.heads);
  std::vector<double> qv, kv, w(in.m * H), ks(in.n, 1.0);
  if (which == ExactIndexer::Quantised) {
    const IndexerOperands o = indexer_operands(in, spec);
    const std::vector<float> qe = decode_elements(o.q8), ke = decode_elements(o.k8);
    qv.assign(qe.begin(), qe.end());
    kv.assign(ke.begin(), ke.end());
    std::copy(o.w.begin(), o.w.end(), w.begin());
    std::copy(o.k_scale.begin(), o.k_scale.end(), ks.begin());
  } else {
    qv = rotate_exact(in.q, in.m * H);
    kv = rotate_exact(in.k, in.n);
    const double f = 1.0 / std::sqrt(static_cast<double>(H)) / std::sqrt(static_cast<double>(D));
    for (std::size_t r = 0; r < in.m * H; ++r) w[r] = static_cast<double>(in.weights[r]) * f;
  }
  std::vector<double> logits(in.m * in.n, -std::numeric_limits<double>::infinity());
  std::vector<double> qt(D * H);  // one query's heads, d-major: the head loop below vectorises
  for (std::size_t i = 0; i < in.m; ++i) {
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t d = 0; d < D; ++d) qt[d * H + h] = qv[(i * H + h) * D + d];
    const std::size_t s = range_start(in, i), e = range_end(in, i);
    parallel_for(e - s, 512, [&](std::size_t b, std::size_t end) {
      std::vector<double> dot(H);
      for (std::size_t j = s + b; j < s + end; ++j) {
        std::fill(dot.begin(), dot.end(), 0.0);
        const double* k = kv.data() + j * D;
        for (std::size_t d = 0; d < D; ++d)
          for (std::size_t h = 0; h < H; ++h) dot[h] += qt[d * H + h] * k[d];
        double total = 0.0;
        for (std::size_t h = 0; h < H; ++h) total += w[i * H + h] * std::max(dot[h], 0.0);
        logits[i * in.n + j] = ks[j] * total;
      }
    });
  }
  return logits;
}

}  // namespace fp8lab::mla
