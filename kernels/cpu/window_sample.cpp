// CPU kernels of mast::window_sample and its backward.
//
// For every target pixel (b, y, x) and window offset p = (dy, dx) the source is
// sampled bilinearly (zero padding) at
//   sx = centers[b,0,y,x] + dx * spacing,  sy = centers[b,1,y,x] + dy * spacing.
// The corner indices and weights of one (row, offset) are computed once into a
// small per-thread buffer of "taps" (only points that touch the source) and
// reused for every channel, so the channel loop only gathers and multiplies;
// the innermost loop runs over x so the output (and grad_output) accesses are
// contiguous. Points whose four corners are all inside take a branch-free path.
#include "../mast_ops.h"
#include "../mast_sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

namespace mast {
namespace {

// One active sample point (target column, window offset) of a target row.
template <typename T>
struct Tap {
  int64_t idx[4];  // flat corner indices y * Ws + x: 00, 01, 10, 11; -1 outside
  T w[4];          // corner weights wy * wx, same order
  T wx0, wx1, wy0, wy1;
  int64_t col;     // target column x
  bool full;       // all four corners inside: idx[1] = idx[0] + 1, idx[2] = idx[0] + Ws, ...
};

// Builds the taps of offset (kx, ky) * sp for target row (cx_row, cy_row),
// keeping only points that touch the source (others sample zeros and have
// zero gradient). Writes the validity row when `valid_row` is not null.
// Returns the number of active taps.
template <typename scalar_t, typename opmath_t>
inline int64_t build_taps(const scalar_t* __restrict__ cx_row,
                          const scalar_t* __restrict__ cy_row, int64_t W, opmath_t kx,
                          opmath_t ky, opmath_t sp, int64_t Hs, int64_t Ws,
                          Tap<opmath_t>* __restrict__ taps, bool* __restrict__ valid_row) {
  int64_t n = 0;
  BilinearCorners<opmath_t> k;
  for (int64_t x = 0; x < W; ++x) {
    const opmath_t sx = offset_coord(static_cast<opmath_t>(cx_row[x]), kx, sp);
    const opmath_t sy = offset_coord(static_cast<opmath_t>(cy_row[x]), ky, sp);
    bilinear_corners<opmath_t>(sx, sy, Hs, Ws, k);
    if (valid_row != nullptr) valid_row[x] = k.valid;
    if (!k.active) continue;
    Tap<opmath_t>& t = taps[n++];
    t.idx[0] = k.i00;
    t.idx[1] = k.i01;
    t.idx[2] = k.i10;
    t.idx[3] = k.i11;
    t.wx0 = k.wx0;
    t.wx1 = k.wx1;
    t.wy0 = k.wy0;
    t.wy1 = k.wy1;
    t.w[0] = k.wy0 * k.wx0;
    t.w[1] = k.wy0 * k.wx1;
    t.w[2] = k.wy1 * k.wx0;
    t.w[3] = k.wy1 * k.wx1;
    t.col = x;
    t.full = k.i00 >= 0 && k.i01 >= 0 && k.i10 >= 0 && k.i11 >= 0;
  }
  return n;
}

// Source values at the four corners of a tap (0 outside).
template <typename scalar_t, typename opmath_t>
inline void corner_values(const Tap<opmath_t>& t, const scalar_t* __restrict__ s, int64_t Ws,
                          opmath_t& s00, opmath_t& s01, opmath_t& s10, opmath_t& s11) {
  if (t.full) {
    const scalar_t* s0 = s + t.idx[0];
    s00 = static_cast<opmath_t>(s0[0]);
    s01 = static_cast<opmath_t>(s0[1]);
    s10 = static_cast<opmath_t>(s0[Ws]);
    s11 = static_cast<opmath_t>(s0[Ws + 1]);
  } else {
    s00 = t.idx[0] >= 0 ? static_cast<opmath_t>(s[t.idx[0]]) : opmath_t(0);
    s01 = t.idx[1] >= 0 ? static_cast<opmath_t>(s[t.idx[1]]) : opmath_t(0);
    s10 = t.idx[2] >= 0 ? static_cast<opmath_t>(s[t.idx[2]]) : opmath_t(0);
    s11 = t.idx[3] >= 0 ? static_cast<opmath_t>(s[t.idx[3]]) : opmath_t(0);
  }
}

template <typename scalar_t>
void window_sample_forward_impl(const scalar_t* __restrict__ src,
                                const scalar_t* __restrict__ centers, scalar_t* __restrict__ out,
                                bool* __restrict__ valid, int64_t B, int64_t C, int64_t Hs,
                                int64_t Ws, int64_t H, int64_t W, int64_t window,
                                double spacing) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  const int64_t plane = Hs * Ws;
  const opmath_t sp = static_cast<opmath_t>(spacing);

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<opmath_t>> taps(static_cast<size_t>(W));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int64_t y = row % H;
      const scalar_t* cx_row = centers + (b * 2 + 0) * HW + y * W;
      const scalar_t* cy_row = centers + (b * 2 + 1) * HW + y * W;
      for (int64_t p = 0; p < P2; ++p) {
        const opmath_t ky = static_cast<opmath_t>(p / window - r);
        const opmath_t kx = static_cast<opmath_t>(p % window - r);
        const int64_t n_taps = build_taps<scalar_t, opmath_t>(
            cx_row, cy_row, W, kx, ky, sp, Hs, Ws, taps.data(), valid + (b * P2 + p) * HW + y * W);
        const Tap<opmath_t>* __restrict__ tp = taps.data();
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* __restrict__ s = src + (b * C + c) * plane;
          scalar_t* __restrict__ orow = out + ((b * C + c) * P2 + p) * HW + y * W;
          if (n_taps < W) std::fill(orow, orow + W, scalar_t(0));
          for (int64_t n = 0; n < n_taps; ++n) {
            const Tap<opmath_t>& t = tp[n];
            opmath_t s00, s01, s10, s11;
            corner_values<scalar_t, opmath_t>(t, s, Ws, s00, s01, s10, s11);
            orow[t.col] =
                static_cast<scalar_t>(t.w[0] * s00 + t.w[1] * s01 + t.w[2] * s10 + t.w[3] * s11);
          }
        }
      }
    }
  });
}

// Backward, fused into one pass over grad_output. Tasks are (b, channel
// chunk): a task owns the grad_source planes of its channels (race-free
// scatter) and writes the partial grad_centers sum of its channels into its
// own buffer slice; the slices are summed afterwards (no atomics).
//   d out / d sx = wy0 * (S(y0,x1) - S(y0,x0)) + wy1 * (S(y1,x1) - S(y1,x0))
//   d out / d sy = wx0 * (S(y1,x0) - S(y0,x0)) + wx1 * (S(y1,x1) - S(y0,x1))
// with S = 0 outside the source; d sx / d cx = d sy / d cy = 1.
// grad_output is read through its strides (gstride: b, c, p, y, x) because
// autograd often hands over an expanded or permuted view, and a contiguous copy
// of a (B, C, P^2, H, W) gradient would double the backward's peak memory.
// unit_x selects the common x-stride-1 layout so its inner loop stays simple.
// kSource / kCenters say which gradients autograd needs: the engine samples
// values that need none, through centres that do, so its backward skips the
// scatter into grad_source (and a source-only backward skips the corner reads).
template <typename scalar_t, bool unit_x, bool kSource, bool kCenters>
void window_sample_backward_impl(const scalar_t* __restrict__ g, const int64_t* gstride,
                                 const scalar_t* __restrict__ src,
                                 const scalar_t* __restrict__ centers,
                                 scalar_t* __restrict__ gs, scalar_t* __restrict__ gc,
                                 int64_t B, int64_t C, int64_t Hs, int64_t Ws, int64_t H,
                                 int64_t W, int64_t window, double spacing) {
  using opmath_t = at::opmath_type<scalar_t>;
  static_assert(std::is_same<opmath_t, scalar_t>::value, "CPU kernels expect float/double");
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  const int64_t plane = Hs * Ws;
  const opmath_t sp = static_cast<opmath_t>(spacing);

  // Split each batch element's channels into just enough chunks to give every
  // thread work: big chunks amortise the per-(row, offset) tap set-up.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t chunks_per_batch =
      std::min<int64_t>(C, std::max<int64_t>(1, (2 * threads + B - 1) / B));
  const int64_t chunk = (C + chunks_per_batch - 1) / chunks_per_batch;
  const int64_t n_tasks = B * chunks_per_batch;

  // Partial grad_centers, (n_tasks, 2, H, W); with one chunk per batch
  // element it is grad_centers itself.
  std::vector<opmath_t> partial_buf;
  opmath_t* partial = gc;
  if (kCenters && chunks_per_batch > 1) {
    partial_buf.resize(static_cast<size_t>(n_tasks * 2 * HW));
    partial = partial_buf.data();
  }

  at::parallel_for(0, n_tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<opmath_t>> taps(static_cast<size_t>(W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks_per_batch;
      const int64_t c0 = std::min<int64_t>(C, (task % chunks_per_batch) * chunk);
      const int64_t c1 = std::min<int64_t>(C, c0 + chunk);
      if constexpr (kSource) {
        std::fill(gs + (b * C + c0) * plane, gs + (b * C + c1) * plane, scalar_t(0));
      }
      opmath_t* gpart = kCenters ? partial + task * 2 * HW : nullptr;
      if constexpr (kCenters) std::fill(gpart, gpart + 2 * HW, opmath_t(0));
      if (c0 >= c1) continue;
      for (int64_t y = 0; y < H; ++y) {
        const scalar_t* cx_row = centers + (b * 2 + 0) * HW + y * W;
        const scalar_t* cy_row = centers + (b * 2 + 1) * HW + y * W;
        opmath_t* __restrict__ gpx = kCenters ? gpart + y * W : nullptr;
        opmath_t* __restrict__ gpy = kCenters ? gpart + HW + y * W : nullptr;
        for (int64_t p = 0; p < P2; ++p) {
          const opmath_t ky = static_cast<opmath_t>(p / window - r);
          const opmath_t kx = static_cast<opmath_t>(p % window - r);
          const int64_t n_taps = build_taps<scalar_t, opmath_t>(cx_row, cy_row, W, kx, ky, sp,
                                                                Hs, Ws, taps.data(), nullptr);
          const Tap<opmath_t>* __restrict__ tp = taps.data();
          for (int64_t c = c0; c < c1; ++c) {
            const scalar_t* __restrict__ s = src + (b * C + c) * plane;
            scalar_t* __restrict__ gsp = kSource ? gs + (b * C + c) * plane : nullptr;
            const scalar_t* __restrict__ grow =
                g + b * gstride[0] + c * gstride[1] + p * gstride[2] + y * gstride[3];
            for (int64_t n = 0; n < n_taps; ++n) {
              const Tap<opmath_t>& t = tp[n];
              const opmath_t gv = static_cast<opmath_t>(grow[unit_x ? t.col : t.col * gstride[4]]);
              if constexpr (kSource) {
                if (t.full) {
                  scalar_t* g0 = gsp + t.idx[0];
                  g0[0] += t.w[0] * gv;
                  g0[1] += t.w[1] * gv;
                  g0[Ws] += t.w[2] * gv;
                  g0[Ws + 1] += t.w[3] * gv;
                } else {
                  if (t.idx[0] >= 0) gsp[t.idx[0]] += t.w[0] * gv;
                  if (t.idx[1] >= 0) gsp[t.idx[1]] += t.w[1] * gv;
                  if (t.idx[2] >= 0) gsp[t.idx[2]] += t.w[2] * gv;
                  if (t.idx[3] >= 0) gsp[t.idx[3]] += t.w[3] * gv;
                }
              }
              if constexpr (kCenters) {
                opmath_t s00, s01, s10, s11;
                corner_values<scalar_t, opmath_t>(t, s, Ws, s00, s01, s10, s11);
                gpx[t.col] += gv * (t.wy0 * (s01 - s00) + t.wy1 * (s11 - s10));
                gpy[t.col] += gv * (t.wx0 * (s10 - s00) + t.wx1 * (s11 - s01));
              }
            }
          }
        }
      }
    }
  });

  if (kCenters && chunks_per_batch > 1) {
    at::parallel_for(0, B * 2 * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / (2 * H);
        const int64_t within = (row % (2 * H)) * W;  // (k * H + y) * W
        scalar_t* out = gc + b * 2 * HW + within;
        std::fill(out, out + W, scalar_t(0));
        for (int64_t ch = 0; ch < chunks_per_batch; ++ch) {
          const opmath_t* part = partial + (b * chunks_per_batch + ch) * 2 * HW + within;
          for (int64_t x = 0; x < W; ++x) out[x] += part[x];
        }
      }
    });
  }
}

// The backward variant that computes exactly the gradients asked for (at
// least one is).
template <typename scalar_t, bool unit_x>
auto backward_variant(bool want_source, bool want_centers) {
  if (!want_source) return &window_sample_backward_impl<scalar_t, unit_x, false, true>;
  if (!want_centers) return &window_sample_backward_impl<scalar_t, unit_x, true, false>;
  return &window_sample_backward_impl<scalar_t, unit_x, true, true>;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> window_sample_cpu(const at::Tensor& source_in,
                                                     const at::Tensor& centers_in,
                                                     int64_t window, double spacing) {
  check_window_sample_args(source_in, centers_in, window, spacing);
  TORCH_CHECK(source_in.device().is_cpu(), "mast::window_sample (CPU): expected CPU tensors");
  const at::Tensor source = source_in.contiguous();
  const at::Tensor centers = centers_in.contiguous();
  const int64_t B = source.size(0), C = source.size(1), Hs = source.size(2),
                Ws = source.size(3);
  const int64_t H = centers.size(2), W = centers.size(3);
  const int64_t P2 = window * window;
  at::Tensor out = at::empty({B, C, P2, H, W}, source.options());
  at::Tensor valid = at::empty({B, P2, H, W}, source.options().dtype(at::kBool));
  if (valid.numel() == 0) return {out, valid};
  // An empty source plane needs no special case: every corner is outside, so
  // the kernel writes zeros (and valid is false).
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "mast_window_sample_cpu", [&] {
    window_sample_forward_impl<scalar_t>(
        source.const_data_ptr<scalar_t>(), centers.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), valid.mutable_data_ptr<bool>(), B, C, Hs, Ws, H, W,
        window, spacing);
  });
  return {out, valid};
}

std::tuple<at::Tensor, at::Tensor> window_sample_backward_cpu(const at::Tensor& grad_output_in,
                                                              const at::Tensor& source_in,
                                                              const at::Tensor& centers_in,
                                                              int64_t window, double spacing,
                                                              std::array<bool, 2> output_mask) {
  check_window_sample_backward_args(grad_output_in, source_in, centers_in, window, spacing);
  TORCH_CHECK(source_in.device().is_cpu(),
              "mast::window_sample_backward (CPU): expected CPU tensors");
  const at::Tensor& grad_output = grad_output_in;
  const at::Tensor source = source_in.contiguous();
  const at::Tensor centers = centers_in.contiguous();
  const int64_t B = source.size(0), C = source.size(1), Hs = source.size(2),
                Ws = source.size(3);
  const int64_t H = centers.size(2), W = centers.size(3);
  const std::array<int64_t, 5> gstride = {grad_output.stride(0), grad_output.stride(1),
                                          grad_output.stride(2), grad_output.stride(3),
                                          grad_output.stride(4)};
  // Zero-filled for the early return below (the kernel zeroes what it owns).
  at::Tensor grad_source =
      if_needed(output_mask[0], at::zeros_like(source, at::MemoryFormat::Contiguous));
  at::Tensor grad_centers =
      if_needed(output_mask[1], at::zeros_like(centers, at::MemoryFormat::Contiguous));
  if (B == 0 || C == 0 || H == 0 || W == 0 || !(output_mask[0] || output_mask[1])) {
    return {grad_source, grad_centers};
  }
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "mast_window_sample_backward_cpu", [&] {
    const auto kernel = gstride[4] == 1
                            ? backward_variant<scalar_t, true>(output_mask[0], output_mask[1])
                            : backward_variant<scalar_t, false>(output_mask[0], output_mask[1]);
    kernel(grad_output.const_data_ptr<scalar_t>(), gstride.data(),
           source.const_data_ptr<scalar_t>(), centers.const_data_ptr<scalar_t>(),
           output_mask[0] ? grad_source.mutable_data_ptr<scalar_t>() : nullptr,
           output_mask[1] ? grad_centers.mutable_data_ptr<scalar_t>() : nullptr, B, C, Hs, Ws, H,
           W, window, spacing);
  });
  return {grad_source, grad_centers};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CPU, m) {
  m.impl("window_sample", &mast::window_sample_cpu);
  m.impl("window_sample_backward", &mast::window_sample_backward_cpu);
}
