// ptytui's layer-health kernel: every number ``running.layer_health.reduce_part`` computes for one
// layer output, in one pass over the tensor on the CPU (stock TensorFlow needs about six: compare,
// cast, three reductions and a sum; see ``running/native_health.py`` for when this one is used).
//
// The input is a float32 tensor viewed as (B samples, S positions, C channels): C is the last
// dimension for rank >= 2, else 1. Outputs, in the order and meaning of reduce_part's dict:
//   head        int32 (3)    B, S, C
//   per_sample  int32 (B)    nonzero elements of each sample (NaN counts as nonzero, as `x != 0`)
//   per_channel int32 (C)    nonzero elements of each channel over the batch
//   nan, inf    int32 (B)    NaN and Inf elements of each sample (exact)
//   floats      float (4)    over the finite values of the first `moment_rows` samples: sum, sum of
//                            squares (accumulated in float64), min, max (+inf / -inf when none)
//   hist        int32 (1024) raw float32 codes (bits >> 22) over the first
//                            min(moment_rows, hist_rows) samples, NaN and Inf included; empty (0)
//                            when moment_rows is 0 (a batch without moments transfers none)
// The work is split over samples across TensorFlow's intra-op threads; each shard keeps its own
// channel counts, sums and histogram and adds them under a lock once.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
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
using tensorflow::Tensor;
using tensorflow::TensorShape;

constexpr uint32_t kExponent = 0x7f800000u;
constexpr uint32_t kMantissa = 0x007fffffu;
constexpr int kCodes = 1024;
constexpr int64_t kBlock = 1024;  // float partial sums per block, added into float64

inline uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

struct Shard {
  explicit Shard(int64_t channels) : channel(channels, 0), sample(channels, 0) {}
  std::vector<int32> channel;  // nonzero counts per channel, this shard's samples
  std::vector<int32> sample;   // scratch: one sample's counts per channel
  std::vector<int32> hist;     // allocated on the first histogram row
  double sum = 0, squares = 0;
  float low = std::numeric_limits<float>::infinity();
  float high = -std::numeric_limits<float>::infinity();
};

// Nonzero counts of one sample into shard.channel; returns the sample's total and whether any
// element is NaN or Inf (exponent bits all set).
inline int32 count_sample(const float* row, int64_t S, int64_t C, Shard& shard, bool* nonfinite) {
  uint32_t bad = 0;
  int32 total = 0;
  if (C == 1) {
    int32 ones = 0;
#pragma omp simd reduction(+ : ones) reduction(| : bad)
    for (int64_t s = 0; s < S; ++s) {
      const float v = row[s];
      ones += v != 0.0f;
      bad |= (bits_of(v) & kExponent) == kExponent;
    }
    total = ones;
    shard.channel[0] += total;
  } else {
    int32* counts = shard.sample.data();
    std::fill(counts, counts + C, 0);
    for (int64_t s = 0; s < S; ++s) {
      const float* p = row + s * C;
      for (int64_t c = 0; c < C; ++c) {
        const float v = p[c];
        counts[c] += v != 0.0f;
        bad |= (bits_of(v) & kExponent) == kExponent;
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      shard.channel[c] += counts[c];
      total += counts[c];
    }
  }
  *nonfinite = bad != 0;
  return total;
}

// Sum, sum of squares, min and max of one finite sample: float partials per block (the simd
// reduction lets the compiler reorder them into vector lanes), added into float64 per block.
inline void moments_finite(const float* row, int64_t n, Shard& shard) {
  float low = shard.low, high = shard.high;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    float sum = 0.0f, squares = 0.0f;
#pragma omp simd reduction(+ : sum, squares) reduction(min : low) reduction(max : high)
    for (int64_t i = start; i < end; ++i) {
      const float v = row[i];
      sum += v;
      squares += v * v;
      low = std::min(low, v);
      high = std::max(high, v);
    }
    shard.sum += sum;
    shard.squares += squares;
  }
  shard.low = low;
  shard.high = high;
}

// The same over the finite values of a sample with NaN or Inf, counting those.
inline void moments_masked(const float* row, int64_t n, Shard& shard, int32* nan, int32* inf) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = row[i];
    const uint32_t b = bits_of(v);
    if ((b & kExponent) == kExponent) {
      if (b & kMantissa) ++*nan; else ++*inf;
      continue;
    }
    shard.sum += v;
    shard.squares += static_cast<double>(v) * v;
    shard.low = std::min(shard.low, v);
    shard.high = std::max(shard.high, v);
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

class LayerHealthOp : public OpKernel {
 public:
  explicit LayerHealthOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

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

    Tensor *head, *per_sample, *per_channel, *nans, *infs, *floats, *hist;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({3}), &head));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B}), &per_sample));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({C}), &per_channel));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({B}), &nans));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({B}), &infs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({4}), &floats));
    const int64_t mrows = std::min(std::max<int64_t>(moment_rows, 0), B);
    const int64_t hrows = std::min(std::max<int64_t>(hist_rows, 0), mrows);
    OP_REQUIRES_OK(ctx, ctx->allocate_output(6, TensorShape({moment_rows > 0 ? kCodes : 0}), &hist));
    auto h = head->flat<int32>();
    h(0) = static_cast<int32>(B);
    h(1) = static_cast<int32>(S);
    h(2) = static_cast<int32>(C);
    int32* samples = per_sample->flat<int32>().data();
    int32* channels = per_channel->flat<int32>().data();
    int32* nan = nans->flat<int32>().data();
    int32* inf = infs->flat<int32>().data();
    int32* codes = hist->flat<int32>().data();
    std::fill(channels, channels + C, 0);
    std::fill(nan, nan + B, 0);
    std::fill(inf, inf + B, 0);
    std::fill(codes, codes + hist->NumElements(), 0);

    std::mutex mu;
    Shard total(0);
    auto work = [&](int64_t begin, int64_t end) {
      Shard shard(C);
      for (int64_t b = begin; b < end; ++b) {
        const float* row = data + b * per;
        bool bad = false;
        samples[b] = count_sample(row, S, C, shard, &bad);
        if (b < mrows) {
          if (bad) moments_masked(row, per, shard, &nan[b], &inf[b]);
          else moments_finite(row, per, shard);
          if (b < hrows) {
            if (shard.hist.empty()) shard.hist.assign(kCodes, 0);
            for (int64_t i = 0; i < per; ++i) ++shard.hist[bits_of(row[i]) >> 22];
          }
        } else if (bad) {
          count_nonfinite(row, per, &nan[b], &inf[b]);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      for (int64_t c = 0; c < C; ++c) channels[c] += shard.channel[c];
      total.sum += shard.sum;
      total.squares += shard.squares;
      total.low = std::min(total.low, shard.low);
      total.high = std::max(total.high, shard.high);
      if (!shard.hist.empty())
        for (int i = 0; i < kCodes; ++i) codes[i] += shard.hist[i];
    };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    // cost per sample in rough cycles: a compare, an add and a mask per element, more on moment rows
    tensorflow::Shard(threads->num_threads, threads->workers, B, std::max<int64_t>(per, 1) * 3, work);
    auto f = floats->flat<float>();
    f(0) = static_cast<float>(total.sum);
    f(1) = static_cast<float>(total.squares);
    f(2) = total.low;
    f(3) = total.high;
  }
};

}  // namespace

REGISTER_OP("PtytuiLayerHealth")
    .Input("x: float")
    .Input("moment_rows: int32")
    .Input("hist_rows: int32")
    .Output("head: int32")
    .Output("per_sample: int32")
    .Output("per_channel: int32")
    .Output("nan: int32")
    .Output("inf: int32")
    .Output("floats: float")
    .Output("hist: int32")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(3));
      c->set_output(1, c->Vector(c->UnknownDim()));
      c->set_output(2, c->Vector(c->UnknownDim()));
      c->set_output(3, c->Vector(c->UnknownDim()));
      c->set_output(4, c->Vector(c->UnknownDim()));
      c->set_output(5, c->Vector(4));
      c->set_output(6, c->Vector(c->UnknownDim()));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("PtytuiLayerHealth").Device(tensorflow::DEVICE_CPU), LayerHealthOp);
