// CPU kernels of mast::window_sample and its backward.
//
// For every target pixel (b, y, x) and window offset p = (dy, dx) the source is
// sampled bilinearly (zero padding) at
//   sx = centers[b,0,y,x] + dx * spacing,  sy = centers[b,1,y,x] + dy * spacing.
// The corner indices and weights of one (row, offset) are computed once into a
// small per-thread buffer and reused for every channel, so the channel loop
// only gathers and multiplies; the innermost loop runs over x so the output
// (and grad_output) accesses are contiguous.
#include "../mast_ops.h"
#include "../mast_sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace mast {
namespace {

template <typename T>
struct CornerWeights {
  int64_t idx[4];  // -1: corner outside the source
  T w[4];          // wy * wx of the corner
};

// Corners of offset p for all x of target row (b, y).
template <typename scalar_t, typename opmath_t>
inline void row_corners(const scalar_t* __restrict__ cx_row, const scalar_t* __restrict__ cy_row,
                        int64_t W, opmath_t dxo, opmath_t dyo, int64_t Hs, int64_t Ws,
                        BilinearCorners<opmath_t>* __restrict__ out) {
  for (int64_t x = 0; x < W; ++x) {
    const opmath_t sx = static_cast<opmath_t>(cx_row[x]) + dxo;
    const opmath_t sy = static_cast<opmath_t>(cy_row[x]) + dyo;
    bilinear_corners<opmath_t>(sx, sy, Hs, Ws, out[x]);
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
    std::vector<BilinearCorners<opmath_t>> corners(static_cast<size_t>(W));
    std::vector<CornerWeights<opmath_t>> cw(static_cast<size_t>(W));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int64_t y = row % H;
      const scalar_t* cx_row = centers + (b * 2 + 0) * HW + y * W;
      const scalar_t* cy_row = centers + (b * 2 + 1) * HW + y * W;
      for (int64_t p = 0; p < P2; ++p) {
        const opmath_t dyo = static_cast<opmath_t>(p / window - r) * sp;
        const opmath_t dxo = static_cast<opmath_t>(p % window - r) * sp;
        row_corners<scalar_t, opmath_t>(cx_row, cy_row, W, dxo, dyo, Hs, Ws, corners.data());
        bool* vrow = valid + (b * P2 + p) * HW + y * W;
        for (int64_t x = 0; x < W; ++x) {
          const BilinearCorners<opmath_t>& k = corners[x];
          vrow[x] = k.valid;
          CornerWeights<opmath_t>& o = cw[x];
          o.idx[0] = k.i00;
          o.idx[1] = k.i01;
          o.idx[2] = k.i10;
          o.idx[3] = k.i11;
          o.w[0] = k.wy0 * k.wx0;
          o.w[1] = k.wy0 * k.wx1;
          o.w[2] = k.wy1 * k.wx0;
          o.w[3] = k.wy1 * k.wx1;
        }
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* __restrict__ s = src + (b * C + c) * plane;
          scalar_t* __restrict__ orow = out + ((b * C + c) * P2 + p) * HW + y * W;
          for (int64_t x = 0; x < W; ++x) {
            const CornerWeights<opmath_t>& o = cw[x];
            opmath_t v = 0;
            if (o.idx[0] >= 0) v += o.w[0] * static_cast<opmath_t>(s[o.idx[0]]);
            if (o.idx[1] >= 0) v += o.w[1] * static_cast<opmath_t>(s[o.idx[1]]);
            if (o.idx[2] >= 0) v += o.w[2] * static_cast<opmath_t>(s[o.idx[2]]);
            if (o.idx[3] >= 0) v += o.w[3] * static_cast<opmath_t>(s[o.idx[3]]);
            orow[x] = static_cast<scalar_t>(v);
          }
        }
      }
    }
  });
}

// grad_source: tasks own whole source planes (b, c0..c1), so the scatter has
// no races; the corner set-up of a (row, offset) is shared by the chunk's
// channels.
template <typename scalar_t>
void window_sample_grad_source_impl(const scalar_t* __restrict__ g,
                                    const scalar_t* __restrict__ centers,
                                    scalar_t* __restrict__ gs, int64_t B, int64_t C, int64_t Hs,
                                    int64_t Ws, int64_t H, int64_t W, int64_t window,
                                    double spacing) {
  using opmath_t = at::opmath_type<scalar_t>;
  static_assert(std::is_same<opmath_t, scalar_t>::value, "CPU kernels expect float/double");
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  const int64_t plane = Hs * Ws;
  const opmath_t sp = static_cast<opmath_t>(spacing);

  // Channel chunks: enough tasks to balance the threads, but as many
  // channels per task as possible to amortise the corner set-up.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t target_tasks = 4 * threads;
  int64_t chunk = (B * C + target_tasks - 1) / target_tasks;
  chunk = std::min<int64_t>(std::max<int64_t>(chunk, 1), 16);
  chunk = std::min<int64_t>(chunk, C);
  const int64_t chunks_per_batch = (C + chunk - 1) / chunk;

  at::parallel_for(0, B * chunks_per_batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<BilinearCorners<opmath_t>> corners(static_cast<size_t>(W));
    std::vector<CornerWeights<opmath_t>> cw(static_cast<size_t>(W));
    std::vector<int64_t> cols(static_cast<size_t>(W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks_per_batch;
      const int64_t c0 = (task % chunks_per_batch) * chunk;
      const int64_t c1 = std::min<int64_t>(C, c0 + chunk);
      std::fill(gs + (b * C + c0) * plane, gs + (b * C + c1) * plane, scalar_t(0));
      for (int64_t y = 0; y < H; ++y) {
        const scalar_t* cx_row = centers + (b * 2 + 0) * HW + y * W;
        const scalar_t* cy_row = centers + (b * 2 + 1) * HW + y * W;
        for (int64_t p = 0; p < P2; ++p) {
          const opmath_t dyo = static_cast<opmath_t>(p / window - r) * sp;
          const opmath_t dxo = static_cast<opmath_t>(p % window - r) * sp;
          row_corners<scalar_t, opmath_t>(cx_row, cy_row, W, dxo, dyo, Hs, Ws, corners.data());
          // Compact list of the active columns of this (row, offset).
          int64_t n_active = 0;
          for (int64_t x = 0; x < W; ++x) {
            const BilinearCorners<opmath_t>& k = corners[x];
            if (!k.active) continue;
            CornerWeights<opmath_t>& o = cw[n_active];
            o.idx[0] = k.i00;
            o.idx[1] = k.i01;
            o.idx[2] = k.i10;
            o.idx[3] = k.i11;
            o.w[0] = k.wy0 * k.wx0;
            o.w[1] = k.wy0 * k.wx1;
            o.w[2] = k.wy1 * k.wx0;
            o.w[3] = k.wy1 * k.wx1;
            cols[n_active] = x;
            ++n_active;
          }
          for (int64_t c = c0; c < c1; ++c) {
            scalar_t* __restrict__ s = gs + (b * C + c) * plane;
            const scalar_t* __restrict__ grow = g + ((b * C + c) * P2 + p) * HW + y * W;
            for (int64_t n = 0; n < n_active; ++n) {
              const CornerWeights<opmath_t>& o = cw[n];
              const opmath_t gv = grow[cols[n]];
              if (o.idx[0] >= 0) s[o.idx[0]] += o.w[0] * gv;
              if (o.idx[1] >= 0) s[o.idx[1]] += o.w[1] * gv;
              if (o.idx[2] >= 0) s[o.idx[2]] += o.w[2] * gv;
              if (o.idx[3] >= 0) s[o.idx[3]] += o.w[3] * gv;
            }
          }
        }
      }
    }
  });
}

// grad_centers: tasks own target rows (b, y).
//   d out / d sx = wy0 * (S(y0,x1) - S(y0,x0)) + wy1 * (S(y1,x1) - S(y1,x0))
//   d out / d sy = wx0 * (S(y1,x0) - S(y0,x0)) + wx1 * (S(y1,x1) - S(y0,x1))
// with S = 0 outside the source; d sx / d cx = d sy / d cy = 1.
template <typename scalar_t>
void window_sample_grad_centers_impl(const scalar_t* __restrict__ g,
                                     const scalar_t* __restrict__ src,
                                     const scalar_t* __restrict__ centers,
                                     scalar_t* __restrict__ gc, int64_t B, int64_t C,
                                     int64_t Hs, int64_t Ws, int64_t H, int64_t W,
                                     int64_t window, double spacing) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  const int64_t plane = Hs * Ws;
  const opmath_t sp = static_cast<opmath_t>(spacing);

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<BilinearCorners<opmath_t>> corners(static_cast<size_t>(W));
    std::vector<int64_t> cols(static_cast<size_t>(W));
    std::vector<opmath_t> gcx(static_cast<size_t>(W)), gcy(static_cast<size_t>(W));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int64_t y = row % H;
      const scalar_t* cx_row = centers + (b * 2 + 0) * HW + y * W;
      const scalar_t* cy_row = centers + (b * 2 + 1) * HW + y * W;
      std::fill(gcx.begin(), gcx.end(), opmath_t(0));
      std::fill(gcy.begin(), gcy.end(), opmath_t(0));
      for (int64_t p = 0; p < P2; ++p) {
        const opmath_t dyo = static_cast<opmath_t>(p / window - r) * sp;
        const opmath_t dxo = static_cast<opmath_t>(p % window - r) * sp;
        row_corners<scalar_t, opmath_t>(cx_row, cy_row, W, dxo, dyo, Hs, Ws, corners.data());
        int64_t n_active = 0;
        for (int64_t x = 0; x < W; ++x) {
          if (corners[x].active) {
            corners[n_active] = corners[x];
            cols[n_active] = x;
            ++n_active;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* __restrict__ s = src + (b * C + c) * plane;
          const scalar_t* __restrict__ grow = g + ((b * C + c) * P2 + p) * HW + y * W;
          for (int64_t n = 0; n < n_active; ++n) {
            const BilinearCorners<opmath_t>& k = corners[n];
            const int64_t x = cols[n];
            const opmath_t s00 = k.i00 >= 0 ? static_cast<opmath_t>(s[k.i00]) : opmath_t(0);
            const opmath_t s01 = k.i01 >= 0 ? static_cast<opmath_t>(s[k.i01]) : opmath_t(0);
            const opmath_t s10 = k.i10 >= 0 ? static_cast<opmath_t>(s[k.i10]) : opmath_t(0);
            const opmath_t s11 = k.i11 >= 0 ? static_cast<opmath_t>(s[k.i11]) : opmath_t(0);
            const opmath_t gv = static_cast<opmath_t>(grow[x]);
            gcx[x] += gv * (k.wy0 * (s01 - s00) + k.wy1 * (s11 - s10));
            gcy[x] += gv * (k.wx0 * (s10 - s00) + k.wx1 * (s11 - s01));
          }
        }
      }
      scalar_t* gcx_out = gc + (b * 2 + 0) * HW + y * W;
      scalar_t* gcy_out = gc + (b * 2 + 1) * HW + y * W;
      for (int64_t x = 0; x < W; ++x) {
        gcx_out[x] = static_cast<scalar_t>(gcx[x]);
        gcy_out[x] = static_cast<scalar_t>(gcy[x]);
      }
    }
  });
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
                                                              int64_t window, double spacing) {
  check_window_sample_backward_args(grad_output_in, source_in, centers_in, window, spacing);
  TORCH_CHECK(source_in.device().is_cpu(),
              "mast::window_sample_backward (CPU): expected CPU tensors");
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor source = source_in.contiguous();
  const at::Tensor centers = centers_in.contiguous();
  const int64_t B = source.size(0), C = source.size(1), Hs = source.size(2),
                Ws = source.size(3);
  const int64_t H = centers.size(2), W = centers.size(3);
  at::Tensor grad_source = at::zeros_like(source, at::MemoryFormat::Contiguous);
  at::Tensor grad_centers = at::zeros_like(centers, at::MemoryFormat::Contiguous);
  if (B == 0 || C == 0 || H == 0 || W == 0) return {grad_source, grad_centers};
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "mast_window_sample_backward_cpu", [&] {
    if (Hs > 0 && Ws > 0) {
      window_sample_grad_source_impl<scalar_t>(
          grad_output.const_data_ptr<scalar_t>(), centers.const_data_ptr<scalar_t>(),
          grad_source.mutable_data_ptr<scalar_t>(), B, C, Hs, Ws, H, W, window, spacing);
    }
    window_sample_grad_centers_impl<scalar_t>(
        grad_output.const_data_ptr<scalar_t>(), source.const_data_ptr<scalar_t>(),
        centers.const_data_ptr<scalar_t>(), grad_centers.mutable_data_ptr<scalar_t>(), B, C, Hs,
        Ws, H, W, window, spacing);
  });
  return {grad_source, grad_centers};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CPU, m) {
  m.impl("window_sample", &mast::window_sample_cpu);
  m.impl("window_sample_backward", &mast::window_sample_backward_cpu);
}
