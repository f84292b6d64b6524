// ptytui's layer-health kernel: every number ``running.layer_health.reduce_part`` computes for one
// layer output, in one pass over the tensor on the CPU (stock TensorFlow needs about six: compare,
// cast, three reductions and a sum; see ``running/health_kernel.py`` for when this one is used).
//
// The input is a float32 tensor viewed as (B samples, S positions, C channels): C is the last
// dimension for rank >= 2, else 1. Every output is a list of R = 1 + len(activations) records:
// record 0 describes x itself, record k the output of activation k applied to x (see below).
//   head        int32 (3)    B, S, C
//   per_sample  int32 (B)    nonzero elements of each sample (NaN counts as nonzero, as `x != 0`)
//   per_channel int32 (C)    nonzero elements of each channel over the batch
//   nan, inf    int32 (B)    NaN and Inf elements of each sample (exact)
//   floats      float (4)    over the finite values of the first `moment_rows` samples: sum, sum of
//                            squares (accumulated in float64), min, max (+inf / -inf when none)
//   hist        int32 (1024) raw float32 codes (bits >> 22) over the first
//                            min(moment_rows, hist_rows) samples, NaN and Inf included; empty (0)
//                            when moment_rows is 0 (a batch without moments transfers none)
//
// Derived records ("relu": max(x, 0); "relu6": min(max(x, 0), 6)) describe what TensorFlow's Relu
// and Relu6 ops compute from x without reading their outputs: where x is finite and has no
// positive subnormal those outputs are exact functions of x (a value is nonzero there exactly
// when x > 0; TensorFlow flushes subnormal inputs, so those are left to the caller). A batch whose
// x has NaN, Inf or a positive subnormal anywhere gets NaN as the derived records' sum (floats[0]):
// the caller then reads the activation's output itself (``layer_health.run_batch``).
// A "pad" record describes x zero-padded by `pad_positions` positions per sample (TensorFlow's Pad
// op over the positions only, as Keras' ZeroPadding layers do): x's counts and sums, the padded
// zeros added to the histogram and taken into min and max, exact for any x; `pad_of` names the
// record padded (0: x; k: the k-th activation, so a padded ReLU output is derived too). Pads come
// after the activations in `activations`.
//
// The work is split over samples across TensorFlow's intra-op threads; each shard keeps its own
// channel counts, sums and histograms and adds them under a lock once.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::int32;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::OpOutputList;
using tensorflow::Tensor;
using tensorflow::TensorShape;

constexpr uint32_t kExponent = 0x7f800000u;
constexpr uint32_t kMantissa = 0x007fffffu;
constexpr int kCodes = 1024;
constexpr int64_t kBlock = 1024;  // float partial sums per block, added into float64
constexpr float kInf = std::numeric_limits<float>::infinity();

inline uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// Counting works on the bits, 16 lanes at a time (GCC/Clang vector extensions: AVX-512, AVX2 or
// NEON, whatever -march=native gives). With t = bits << 1 (the sign dropped) an element is
// nonzero when t >= nonzero_min (NaN counts as nonzero, as `x != 0`; -0.0 as zero): 1, or
// 0x01000000 (a nonzero exponent) where the thread reads subnormals as zero, as TensorFlow's CPU
// threads do (so `x != 0` in TensorFlow and here agree); NaN or Inf when t >= 0xff000000
// (exponent bits all set): one unsigned max per lane finds any non-finite one.
// As a signed integer the bits are > 0 exactly when x > 0 (or is a NaN with the sign clear,
// which the non-finite check already catches); positive subnormals are bits - 1 < 0x7fffff.
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
constexpr uint32_t kNonfiniteShifted = 0xff000000u;

// Whether this thread's floating-point mode reads subnormal inputs as zero (x86 DAZ, ARM FZ).
inline uint32_t nonzero_min() {
  volatile float tiny = 1e-39f;
  return tiny == 0.0f ? 0x01000000u : 1u;
}

inline u32x16 load16(const float* p) {
  u32x16 b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

inline uint32_t lanes_max(u32x16 v) {
  uint32_t m = 0;
  for (int j = 0; j < 16; ++j) m = std::max(m, v[j]);
  return m;
}

inline int32 lanes_sum(i32x16 v) {
  int32 s = 0;
  for (int j = 0; j < 16; ++j) s += v[j];
  return s;
}

// What one sample's counting found besides the counts.
struct Scan {
  uint32_t top = 0;       // max of bits << 1: >= kNonfiniteShifted when some element is NaN or Inf
  uint32_t subnormal = 0; // nonzero when some element is a positive subnormal (derived records)
  bool nonfinite() const { return top >= kNonfiniteShifted; }
};

// One counting step, 16 lanes: nonzero counts, positive counts (Derive) and the lane-wise flags.
template <bool Derive>
inline void count16(u32x16 b, uint32_t zmin, i32x16& nonzero, i32x16& positive, u32x16& top,
                    u32x16& sub) {
  const u32x16 t = b << 1;
  nonzero -= (i32x16)(t >= zmin);
  top = top > t ? top : t;
  if (Derive) {
    positive -= (i32x16)((i32x16)b > 0);
    sub |= (u32x16)((b - 1) < kMantissa);
  }
}

// The same for one element (the tails past the last whole vector).
template <bool Derive>
inline void count1(uint32_t b, uint32_t zmin, int32* nonzero, int32* positive, Scan* scan) {
  *nonzero += (b << 1) >= zmin;
  scan->top = std::max(scan->top, b << 1);
  if (Derive) {
    *positive += static_cast<int32_t>(b) > 0;
    scan->subnormal |= (b - 1) < kMantissa;
  }
}

inline void merge_flags(u32x16 top, u32x16 sub, Scan* scan) {
  scan->top = std::max(scan->top, lanes_max(top));
  scan->subnormal |= lanes_max(sub);
}

// Nonzero (and, with Derive, positive) counts of the 16 * V channels [c0, c0 + 16 V) of one
// sample over its S positions; V is a compile-time count so the counters stay in registers.
template <int V, bool Derive>
inline void count_channels(const float* row, int64_t S, int64_t C, int64_t c0, uint32_t zmin,
                           int32* nonzero, int32* positive, Scan* scan) {
  i32x16 acc[V], pos[V];
  for (int v = 0; v < V; ++v) acc[v] = pos[v] = i32x16{};
  u32x16 top = {}, sub = {};
  for (int64_t s = 0; s < S; ++s) {
    const float* p = row + s * C + c0;
    for (int v = 0; v < V; ++v) count16<Derive>(load16(p + 16 * v), zmin, acc[v], pos[v], top, sub);
  }
  for (int v = 0; v < V; ++v) {
    std::memcpy(nonzero + c0 + 16 * v, &acc[v], sizeof acc[v]);
    if (Derive) std::memcpy(positive + c0 + 16 * v, &pos[v], sizeof pos[v]);
  }
  merge_flags(top, sub, scan);
}

// The same for n contiguous elements counted together (one channel) into nonzero[0], positive[0].
template <bool Derive>
inline void count_flat(const float* row, int64_t n, uint32_t zmin, int32* nonzero, int32* positive,
                       Scan* scan) {
  i32x16 acc = {}, pos = {};
  u32x16 top = {}, sub = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) count16<Derive>(load16(row + i), zmin, acc, pos, top, sub);
  nonzero[0] = lanes_sum(acc);
  if (Derive) positive[0] = lanes_sum(pos);
  merge_flags(top, sub, scan);
  for (; i < n; ++i) count1<Derive>(bits_of(row[i]), zmin, nonzero, positive, scan);
}

// Counts of a sample with 1 < C < 16 channels: chunks of C vectors (16 C elements, a whole number
// of positions), so lane j of vector v always holds channel (16 v + j) % C; the tail past the last
// whole chunk one element at a time.
template <bool Derive>
inline void count_periodic(const float* row, int64_t n, int64_t C, uint32_t zmin, int32* nonzero,
                           int32* positive, Scan* scan) {
  i32x16 acc[16], pos[16];
  for (int64_t v = 0; v < C; ++v) acc[v] = pos[v] = i32x16{};
  u32x16 top = {}, sub = {};
  const int64_t chunk = 16 * C;
  int64_t i = 0;
  for (; i + chunk <= n; i += chunk)
    for (int64_t v = 0; v < C; ++v) count16<Derive>(load16(row + i + 16 * v), zmin, acc[v], pos[v], top, sub);
  std::fill(nonzero, nonzero + C, 0);
  if (Derive) std::fill(positive, positive + C, 0);
  for (int64_t v = 0; v < C; ++v)
    for (int j = 0; j < 16; ++j) {
      nonzero[(16 * v + j) % C] += acc[v][j];
      if (Derive) positive[(16 * v + j) % C] += pos[v][j];
    }
  merge_flags(top, sub, scan);
  for (; i < n; ++i)
    count1<Derive>(bits_of(row[i]), zmin, nonzero + i % C, Derive ? positive + i % C : nullptr, scan);
}

// One record's accumulators within a shard.
struct Acc {
  std::vector<int32> channel;  // nonzero counts per channel, this shard's samples
  std::vector<int32> hist;     // allocated on the first histogram row
  double sum = 0, squares = 0;
  float low = kInf, high = -kInf;
};

// Nonzero (and positive) counts of one sample per channel into `nonzero` and `positive`.
template <bool Derive>
inline void count_sample(const float* row, int64_t S, int64_t C, uint32_t zmin, int32* nonzero,
                         int32* positive, Scan* scan) {
  if (C == 1) {
    count_flat<Derive>(row, S, zmin, nonzero, positive, scan);
  } else if (C < 16) {
    count_periodic<Derive>(row, S * C, C, zmin, nonzero, positive, scan);
  } else {
    int64_t c0 = 0;
    for (; c0 + 128 <= C; c0 += 128) count_channels<8, Derive>(row, S, C, c0, zmin, nonzero, positive, scan);
    for (; c0 + 64 <= C; c0 += 64) count_channels<4, Derive>(row, S, C, c0, zmin, nonzero, positive, scan);
    for (; c0 + 32 <= C; c0 += 32) count_channels<2, Derive>(row, S, C, c0, zmin, nonzero, positive, scan);
    for (; c0 + 16 <= C; c0 += 16) count_channels<1, Derive>(row, S, C, c0, zmin, nonzero, positive, scan);
    // the last C - c0 < 16 channels: count the last 16 (those before c0 get the same counts again)
    if (c0 < C) count_channels<1, Derive>(row, S, C, C - 16, zmin, nonzero, positive, scan);
  }
}

// One value into one record's running float sum, sum of squares, min and max.
inline void take(float v, float& sum, float& squares, float& low, float& high) {
  sum += v;
  squares += v * v;
  low = std::min(low, v);
  high = std::max(high, v);
}

// What relu (cap +inf) and relu6 (cap 6) make of a finite, non-subnormal value.
inline float clip(float v, float cap) { return v > 0.0f ? std::min(v, cap) : 0.0f; }

// Sum, sum of squares, min and max of one finite sample into accs[0] and, in the same pass, of
// f_k(x) = x > 0 ? min(x, cap_k) : 0 into accs[1 + k] for the D derived records (D <= 2): float
// partials per block (the simd reduction lets the compiler reorder them into vector lanes), added
// into float64 per block.
template <int D>
inline void moments_finite(const float* row, int64_t n, const float* caps, Acc* accs) {
  const float cap1 = D > 0 ? caps[0] : kInf, cap2 = D > 1 ? caps[1] : kInf;
  float l0 = accs[0].low, h0 = accs[0].high;
  float l1 = D > 0 ? accs[1].low : kInf, h1 = D > 0 ? accs[1].high : -kInf;
  float l2 = D > 1 ? accs[2].low : kInf, h2 = D > 1 ? accs[2].high : -kInf;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    float s0 = 0.0f, q0 = 0.0f, s1 = 0.0f, q1 = 0.0f, s2 = 0.0f, q2 = 0.0f;
#pragma omp simd reduction(+ : s0, q0, s1, q1, s2, q2) reduction(min : l0, l1, l2) reduction(max : h0, h1, h2)
    for (int64_t i = start; i < end; ++i) {
      const float v = row[i];
      take(v, s0, q0, l0, h0);
      if constexpr (D > 0) take(clip(v, cap1), s1, q1, l1, h1);
      if constexpr (D > 1) take(clip(v, cap2), s2, q2, l2, h2);
    }
    const float sums[3] = {s0, s1, s2}, squares[3] = {q0, q1, q2};
    for (int r = 0; r <= D; ++r) {
      accs[r].sum += sums[r];
      accs[r].squares += squares[r];
    }
  }
  const float lows[3] = {l0, l1, l2}, highs[3] = {h0, h1, h2};
  for (int r = 0; r <= D; ++r) {
    accs[r].low = lows[r];
    accs[r].high = highs[r];
  }
}

// The same over the finite values of a sample with NaN or Inf, counting those.
inline void moments_masked(const float* row, int64_t n, Acc& acc, int32* nan, int32* inf) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = row[i];
    const uint32_t b = bits_of(v);
    if ((b & kExponent) == kExponent) {
      if (b & kMantissa) ++*nan; else ++*inf;
      continue;
    }
    acc.sum += v;
    acc.squares += static_cast<double>(v) * v;
    acc.low = std::min(acc.low, v);
    acc.high = std::max(acc.high, v);
  }
}

inline void count_nonfinite(const float* row, int64_t n, int32* nan, int32* inf) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = bits_of(row[i]);
    if ((b & kExponent) == kExponent) {
      if (b & kMantissa) ++*nan; else ++*inf;
    }
  }
}

// Raw codes counted into kLanes interleaved histograms (summed when shards merge): activations
// repeat a few codes (zeros above all), and one histogram would make each increment wait for the
// previous one to the same bin.
constexpr int kLanes = 4;
inline void add_hist(const float* row, int64_t n, Acc& acc) {
  if (acc.hist.empty()) acc.hist.assign(kLanes * kCodes, 0);
  int32* h = acc.hist.data();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    ++h[bits_of(row[i]) >> 22];
    ++h[kCodes + (bits_of(row[i + 1]) >> 22)];
    ++h[2 * kCodes + (bits_of(row[i + 2]) >> 22)];
    ++h[3 * kCodes + (bits_of(row[i + 3]) >> 22)];
  }
  for (; i < n; ++i) ++h[bits_of(row[i]) >> 22];
}

// The raw-code histogram of f(x) = x > 0 ? min(x, cap) : 0 from x's, exactly, for x without NaN,
// Inf or positive subnormals (else the derived record is discarded): every x <= 0 (codes 0 and
// 512..1023) gives +0 (code 0), a positive x below the cap keeps its code, and a cap whose bits
// start a code (6.0: 0x40c00000, code 259; +inf: none reached) collects every code from its own.
inline void derive_hist(const int32* x, float cap, int32* out) {
  const int top = cap == kInf ? kCodes / 2 : static_cast<int>(bits_of(cap) >> 22);
  std::fill(out, out + kCodes, 0);
  for (int c = 0; c < kCodes / 2; ++c) out[std::min(c, top)] += x[c];
  for (int c = kCodes / 2; c < kCodes; ++c) out[0] += x[c];
}

class LayerHealthOp : public OpKernel {
 public:
  explicit LayerHealthOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<std::string> activations;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activations", &activations));
    int n = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n));
    OP_REQUIRES(ctx, n == 1 + static_cast<int>(activations.size()),
                tensorflow::errors::InvalidArgument("N must be 1 + len(activations)"));
    std::vector<int> extra, of;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pad_positions", &extra));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pad_of", &of));
    if (extra.empty()) extra.assign(activations.size(), 0);
    if (of.empty()) of.assign(activations.size(), 0);
    OP_REQUIRES(ctx, extra.size() == activations.size() && of.size() == activations.size(),
                tensorflow::errors::InvalidArgument("pad_positions, pad_of: one per activation"));
    for (size_t i = 0; i < activations.size(); ++i) {
      if (activations[i] == "pad") {
        OP_REQUIRES(ctx, of[i] >= 0 && of[i] <= static_cast<int>(caps_.size()),
                    tensorflow::errors::InvalidArgument("pad_of: x (0) or an activation before the pads"));
        pads_.push_back(extra[i]);
        pad_of_.push_back(of[i]);
      } else {
        OP_REQUIRES(ctx, pads_.empty(), tensorflow::errors::InvalidArgument("pads come after activations"));
        caps_.push_back(activations[i] == "relu6" ? 6.0f : kInf);
      }
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const int64_t moment_rows = ctx->input(1).scalar<int32>()();
    const int64_t hist_rows = ctx->input(2).scalar<int32>()();
    const int rank = x.dims();
    const int64_t B = rank >= 1 ? x.dim_size(0) : 1;
    const int64_t C = rank >= 2 ? x.dim_size(rank - 1) : 1;
    const int64_t elements = x.NumElements();
    const int64_t S = (B > 0 && C > 0) ? elements / (B * C) : 0;
    const int64_t per = S * C;
    const float* data = x.flat<float>().data();
    const int R = 1 + static_cast<int>(caps_.size());  // records computed in the pass
    const int N = R + static_cast<int>(pads_.size());   // records returned
    const bool derive = R > 1;
    const int64_t mrows = std::min(std::max<int64_t>(moment_rows, 0), B);
    const int64_t hrows = std::min(std::max<int64_t>(hist_rows, 0), mrows);

    OpOutputList heads, per_samples, per_channels, nans, infs, floats, hists;
    OP_REQUIRES_OK(ctx, ctx->output_list("head", &heads));
    OP_REQUIRES_OK(ctx, ctx->output_list("per_sample", &per_samples));
    OP_REQUIRES_OK(ctx, ctx->output_list("per_channel", &per_channels));
    OP_REQUIRES_OK(ctx, ctx->output_list("nan", &nans));
    OP_REQUIRES_OK(ctx, ctx->output_list("inf", &infs));
    OP_REQUIRES_OK(ctx, ctx->output_list("floats", &floats));
    OP_REQUIRES_OK(ctx, ctx->output_list("hist", &hists));
    std::vector<int32*> samples(N), channels(N), nan(N), inf(N), codes(N);
    std::vector<float*> moments(N);
    for (int r = 0; r < N; ++r) {
      Tensor *head, *s, *c, *na, *in, *f, *h;
      OP_REQUIRES_OK(ctx, heads.allocate(r, TensorShape({3}), &head));
      OP_REQUIRES_OK(ctx, per_samples.allocate(r, TensorShape({B}), &s));
      OP_REQUIRES_OK(ctx, per_channels.allocate(r, TensorShape({C}), &c));
      OP_REQUIRES_OK(ctx, nans.allocate(r, TensorShape({B}), &na));
      OP_REQUIRES_OK(ctx, infs.allocate(r, TensorShape({B}), &in));
      OP_REQUIRES_OK(ctx, floats.allocate(r, TensorShape({4}), &f));
      OP_REQUIRES_OK(ctx, hists.allocate(r, TensorShape({moment_rows > 0 ? kCodes : 0}), &h));
      auto hd = head->flat<int32>();
      hd(0) = static_cast<int32>(B);
      hd(1) = static_cast<int32>(r < R ? S : S + pads_[r - R]);
      hd(2) = static_cast<int32>(C);
      samples[r] = s->flat<int32>().data();
      channels[r] = c->flat<int32>().data();
      nan[r] = na->flat<int32>().data();
      inf[r] = in->flat<int32>().data();
      codes[r] = h->flat<int32>().data();
      moments[r] = f->flat<float>().data();
      std::fill(channels[r], channels[r] + C, 0);
      std::fill(nan[r], nan[r] + B, 0);
      std::fill(inf[r], inf[r] + B, 0);
      std::fill(codes[r], codes[r] + h->NumElements(), 0);
    }

    std::mutex mu;
    std::vector<Acc> total(R);
    bool ambiguous = false;  // some element of x makes the derived records inexact
    auto work = [&](int64_t begin, int64_t end) {
      std::vector<Acc> accs(R);
      for (auto& acc : accs) acc.channel.assign(C, 0);
      std::vector<int32> nonzero(C), positive(derive ? C : 0);
      bool unclear = false;
      const uint32_t zmin = nonzero_min();
      for (int64_t b = begin; b < end; ++b) {
        const float* row = data + b * per;
        Scan scan;
        if (derive) count_sample<true>(row, S, C, zmin, nonzero.data(), positive.data(), &scan);
        else count_sample<false>(row, S, C, zmin, nonzero.data(), nullptr, &scan);
        int32 sum_nonzero = 0, sum_positive = 0;
        for (int64_t c = 0; c < C; ++c) {
          accs[0].channel[c] += nonzero[c];
          sum_nonzero += nonzero[c];
        }
        samples[0][b] = sum_nonzero;
        if (derive) {
          for (int64_t c = 0; c < C; ++c) sum_positive += positive[c];
          for (int r = 1; r < R; ++r) {
            for (int64_t c = 0; c < C; ++c) accs[r].channel[c] += positive[c];
            samples[r][b] = sum_positive;
          }
          unclear = unclear || scan.nonfinite() || scan.subnormal != 0;
        }
        const bool bad = scan.nonfinite();
        if (b < mrows) {
          if (bad) {
            moments_masked(row, per, accs[0], &nan[0][b], &inf[0][b]);
          } else if (R == 1) {
            moments_finite<0>(row, per, caps_.data(), accs.data());
          } else if (R == 2) {
            moments_finite<1>(row, per, caps_.data(), accs.data());
          } else {
            moments_finite<2>(row, per, caps_.data(), accs.data());
            for (int r = 3; r < R; ++r) {  // more activations of one tensor: one pass each
              Acc pair[2];
              pair[1] = accs[r];
              moments_finite<1>(row, per, caps_.data() + r - 1, pair);
              accs[r] = pair[1];
            }
          }
          if (b < hrows) add_hist(row, per, accs[0]);  // the derived histograms come from x's
        } else if (bad) {
          count_nonfinite(row, per, &nan[0][b], &inf[0][b]);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      ambiguous = ambiguous || unclear;
      for (int r = 0; r < R; ++r) {
        const Acc& acc = accs[r];
        for (int64_t c = 0; c < C; ++c) channels[r][c] += acc.channel[c];
        total[r].sum += acc.sum;
        total[r].squares += acc.squares;
        total[r].low = std::min(total[r].low, acc.low);
        total[r].high = std::max(total[r].high, acc.high);
        if (!acc.hist.empty())
          for (int lane = 0; lane < kLanes; ++lane)
            for (int i = 0; i < kCodes; ++i) codes[r][i] += acc.hist[lane * kCodes + i];
      }
    };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    // cost per sample in rough cycles: a compare, an add and a mask per element, more on moment rows
    tensorflow::Shard(threads->num_threads, threads->workers, B, std::max<int64_t>(per, 1) * 3, work);
    if (moment_rows > 0)
      for (int r = 1; r < R; ++r) derive_hist(codes[0], caps_[r - 1], codes[r]);
    for (int r = 0; r < R; ++r) {
      float* f = moments[r];
      f[0] = r > 0 && ambiguous ? std::numeric_limits<float>::quiet_NaN()
                                : static_cast<float>(total[r].sum);
      f[1] = static_cast<float>(total[r].squares);
      f[2] = total[r].low;
      f[3] = total[r].high;
    }
    // zero padding: x's counts, sums and histogram with the padded zeros added (their count is
    // known, so nothing is read again); min and max take in 0 where moments were taken
    for (int r = R; r < N; ++r) {
      const int64_t added = pads_[r - R] * C;
      const int base = pad_of_[r - R];  // the record padded: x (0) or one of its activations
      std::memcpy(samples[r], samples[base], B * sizeof(int32));
      std::memcpy(channels[r], channels[base], C * sizeof(int32));
      std::memcpy(nan[r], nan[base], B * sizeof(int32));
      std::memcpy(inf[r], inf[base], B * sizeof(int32));
      std::memcpy(moments[r], moments[base], 4 * sizeof(float));
      if (added > 0 && mrows > 0) {
        moments[r][2] = std::min(moments[r][2], 0.0f);
        moments[r][3] = std::max(moments[r][3], 0.0f);
      }
      if (moment_rows > 0) {
        std::memcpy(codes[r], codes[base], kCodes * sizeof(int32));
        codes[r][0] += static_cast<int32>(added * hrows);
      }
    }
  }

 private:
  std::vector<float> caps_;  // per activation record: its upper clip (+inf for relu)
  std::vector<int> pads_;    // per zero-padding record: positions the padding adds per sample
  std::vector<int> pad_of_;  // per zero-padding record: the record it pads (0: x, k: activation k)
};

}  // namespace

REGISTER_OP("PtytuiLayerHealth")
    .Input("x: float")
    .Input("moment_rows: int32")
    .Input("hist_rows: int32")
    .Attr("activations: list({'relu', 'relu6', 'pad'}) = []")
    .Attr("pad_positions: list(int) = []")
    .Attr("pad_of: list(int) = []")
    .Attr("N: int >= 1 = 1")
    .Output("head: N * int32")
    .Output("per_sample: N * int32")
    .Output("per_channel: N * int32")
    .Output("nan: N * int32")
    .Output("inf: N * int32")
    .Output("floats: N * float")
    .Output("hist: N * int32")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int n = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      for (int r = 0; r < n; ++r) {
        c->set_output(0 * n + r, c->Vector(3));
        c->set_output(1 * n + r, c->Vector(c->UnknownDim()));
        c->set_output(2 * n + r, c->Vector(c->UnknownDim()));
        c->set_output(3 * n + r, c->Vector(c->UnknownDim()));
        c->set_output(4 * n + r, c->Vector(c->UnknownDim()));
        c->set_output(5 * n + r, c->Vector(4));
        c->set_output(6 * n + r, c->Vector(c->UnknownDim()));
      }
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("PtytuiLayerHealth").Device(tensorflow::DEVICE_CPU), LayerHealthOp);
