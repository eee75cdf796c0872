// CUDA kernels of mast::window_sample and its backward.
//
// For every target pixel (b, y, x) and window offset p = (dy, dx) the source is
// sampled bilinearly (zero padding) at
//   sx = centers[b,0,y,x] + dx * spacing,  sy = centers[b,1,y,x] + dy * spacing.
//
// Forward: one thread per (b, p, y, x) sets up the four corners once and loops
// over channels (consecutive threads take consecutive x: coalesced stores).
// Backward, one pass over grad_output: one thread per (b, dy, y, x) walks the
// taps of one window row for every channel, scatters into grad_source with
// atomicAdd (into a float32 buffer for half / bfloat16, never atomics on
// 16-bit types; contributions of consecutive taps to the same source column
// are merged first) and accumulates its centre gradient in registers; the
// per-row centre gradients go to a buffer (B, window, 2, H, W) that is summed
// over the window rows afterwards (no atomics for grad_centers).
#include "../mast_ops.h"
#include "launch.h"
#include "../mast_sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace mast {
namespace {

template <typename scalar_t>
__device__ __forceinline__ at::opmath_type<scalar_t> load_or_zero(const scalar_t* __restrict__ s,
                                                                 int64_t idx) {
  using opmath_t = at::opmath_type<scalar_t>;
  return idx >= 0 ? static_cast<opmath_t>(s[idx]) : opmath_t(0);
}

template <typename scalar_t, typename coord_t>
__global__ void window_sample_forward_kernel(const scalar_t* __restrict__ source,
                                             const coord_t* __restrict__ centers,
                                             scalar_t* __restrict__ out,
                                             bool* __restrict__ valid, int64_t B, int64_t C,
                                             int64_t Hs, int64_t Ws, int64_t H, int64_t W,
                                             int window, at::opmath_type<scalar_t> spacing) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t HW = H * W;
  const int64_t plane = Hs * Ws;
  const int P2 = window * window;
  const int r = window / 2;
  const int64_t n = B * P2 * HW;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t yx = i % HW;  // y * W + x
    int64_t t = i / HW;
    const int p = static_cast<int>(t % P2);
    const int64_t b = t / P2;
    const opmath_t cx = static_cast<opmath_t>(centers[(b * 2 + 0) * HW + yx]);
    const opmath_t cy = static_cast<opmath_t>(centers[(b * 2 + 1) * HW + yx]);
    const opmath_t sx = offset_coord(cx, static_cast<opmath_t>(p % window - r), spacing);
    const opmath_t sy = offset_coord(cy, static_cast<opmath_t>(p / window - r), spacing);
    BilinearCorners<opmath_t> k;
    bilinear_corners<opmath_t>(sx, sy, Hs, Ws, k);
    valid[i] = k.valid;
    // out[b, c, p, y, x] = out[((b * C + c) * P2 + p) * HW + yx]
    scalar_t* __restrict__ o = out + (b * C * P2 + p) * HW + yx;
    const int64_t o_step = static_cast<int64_t>(P2) * HW;
    if (!k.active) {
      for (int64_t c = 0; c < C; ++c) o[c * o_step] = static_cast<scalar_t>(opmath_t(0));
      continue;
    }
    const opmath_t w00 = k.wy0 * k.wx0, w01 = k.wy0 * k.wx1;
    const opmath_t w10 = k.wy1 * k.wx0, w11 = k.wy1 * k.wx1;
    const scalar_t* __restrict__ s = source + b * C * plane;
    for (int64_t c = 0; c < C; ++c) {
      const opmath_t v = w00 * load_or_zero(s, k.i00) + w01 * load_or_zero(s, k.i01) +
                         w10 * load_or_zero(s, k.i10) + w11 * load_or_zero(s, k.i11);
      o[c * o_step] = static_cast<scalar_t>(v);
      s += plane;
    }
  }
}

// Adds `val` (a sum of g * wx over taps) to column `col` of the two source
// rows y0, y0 + 1 with weights wy0, wy1, skipping what lies outside.
template <typename acc_t>
__device__ __forceinline__ void flush_column(acc_t* __restrict__ gs, int64_t col, acc_t val,
                                             int64_t y0, bool y0_in, bool y1_in, acc_t wy0,
                                             acc_t wy1, int64_t Ws) {
  if (col < 0 || col >= Ws || val == acc_t(0)) return;
  if (y0_in) atomicAdd(gs + y0 * Ws + col, wy0 * val);
  if (y1_in) atomicAdd(gs + (y0 + 1) * Ws + col, wy1 * val);
}

// One thread per (b, dy, y, x): it walks the `window` taps dx of one window
// row, which share sy (hence the source rows y0, y0 + 1 and the weights wy),
// and whose corner columns x0(dx) never decrease with dx. Contributions to the
// same column from consecutive taps are summed in registers and flushed with
// one atomicAdd per (column, row) when the walk moves past the column: with
// spacing 1 that halves the atomics, with spacing < 1 it saves more.
//
// grad_source (accumulated in opmath: float or double) gets g * wy * wx at
// the in-bounds corners; the centre gradient of a tap is
//   d/dsx = wy0 * (S(y0,x1) - S(y0,x0)) + wy1 * (S(y1,x1) - S(y1,x0))
//   d/dsy = wx0 * (S(y1,x0) - S(y0,x0)) + wx1 * (S(y1,x1) - S(y0,x1))
// (S = 0 outside); the thread sums it over its taps and the channels into
// grad_centers_rows[b, dy, 0/1, y, x], summed over dy afterwards.
template <typename scalar_t, typename coord_t>
__global__ void window_sample_backward_kernel(
    const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ source,
    const coord_t* __restrict__ centers, at::opmath_type<scalar_t>* __restrict__ grad_source,
    at::opmath_type<scalar_t>* __restrict__ grad_centers_rows, int64_t B, int64_t C,
    int64_t Hs, int64_t Ws, int64_t H, int64_t W, int window,
    at::opmath_type<scalar_t> spacing) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t HW = H * W;
  const int64_t plane = Hs * Ws;
  const int64_t P2 = static_cast<int64_t>(window) * window;
  const int r = window / 2;
  const int64_t n = B * window * HW;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  const opmath_t fw = static_cast<opmath_t>(Ws);
  const opmath_t fh = static_cast<opmath_t>(Hs);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t yx = i % HW;
    const int64_t t = i / HW;  // b * window + iy
    const int iy = static_cast<int>(t % window);
    const int64_t b = t / window;
    const opmath_t cx = static_cast<opmath_t>(centers[(b * 2 + 0) * HW + yx]);
    const opmath_t cy = static_cast<opmath_t>(centers[(b * 2 + 1) * HW + yx]);
    const opmath_t sy = offset_coord(cy, static_cast<opmath_t>(iy - r), spacing);
    opmath_t gcx = 0;
    opmath_t gcy = 0;
    // Same activity rule as bilinear_corners (false for NaN / inf).
    if (sy >= opmath_t(-1) && sy < fh) {
      const opmath_t fy0 = floor_op(sy);
      const opmath_t wy1 = sy - fy0;
      const opmath_t wy0 = opmath_t(1) - wy1;
      const int64_t y0 = static_cast<int64_t>(fy0);
      const bool y0_in = y0 >= 0;
      const bool y1_in = y0 + 1 < Hs;
      const int64_t row0 = y0 * Ws;
      const int64_t row1 = row0 + Ws;
      const scalar_t* __restrict__ g = grad_out + (b * C * P2 + iy * window) * HW + yx;
      const int64_t g_step = P2 * HW;  // next channel
      const scalar_t* __restrict__ s = source + b * C * plane;
      opmath_t* __restrict__ gs = grad_source + b * C * plane;
      for (int64_t c = 0; c < C; ++c) {
        int64_t pcol = -2;  // pending columns pcol, pcol + 1 (sentinel: outside)
        opmath_t pa = 0, pb = 0;
        for (int ix = 0; ix < window; ++ix) {
          const opmath_t sx = offset_coord(cx, static_cast<opmath_t>(ix - r), spacing);
          if (!(sx >= opmath_t(-1) && sx < fw)) continue;
          const opmath_t fx0 = floor_op(sx);
          const opmath_t wx1 = sx - fx0;
          const opmath_t wx0 = opmath_t(1) - wx1;
          const int64_t x0 = static_cast<int64_t>(fx0);
          const bool x0_in = x0 >= 0;
          const bool x1_in = x0 + 1 < Ws;
          const opmath_t gv = static_cast<opmath_t>(g[static_cast<int64_t>(ix) * HW]);
          const opmath_t s00 = (y0_in && x0_in) ? static_cast<opmath_t>(s[row0 + x0]) : opmath_t(0);
          const opmath_t s01 = (y0_in && x1_in) ? static_cast<opmath_t>(s[row0 + x0 + 1]) : opmath_t(0);
          const opmath_t s10 = (y1_in && x0_in) ? static_cast<opmath_t>(s[row1 + x0]) : opmath_t(0);
          const opmath_t s11 = (y1_in && x1_in) ? static_cast<opmath_t>(s[row1 + x0 + 1]) : opmath_t(0);
          gcx += gv * (wy0 * (s01 - s00) + wy1 * (s11 - s10));
          gcy += gv * (wx0 * (s10 - s00) + wx1 * (s11 - s01));
          const opmath_t a = gv * wx0;
          const opmath_t bb = gv * wx1;
          if (x0 == pcol) {
            pa += a;
            pb += bb;
          } else if (x0 == pcol + 1) {
            flush_column(gs, pcol, pa, y0, y0_in, y1_in, wy0, wy1, Ws);
            pcol = x0;
            pa = pb + a;
            pb = bb;
          } else {
            flush_column(gs, pcol, pa, y0, y0_in, y1_in, wy0, wy1, Ws);
            flush_column(gs, pcol + 1, pb, y0, y0_in, y1_in, wy0, wy1, Ws);
            pcol = x0;
            pa = a;
            pb = bb;
          }
        }
        flush_column(gs, pcol, pa, y0, y0_in, y1_in, wy0, wy1, Ws);
        flush_column(gs, pcol + 1, pb, y0, y0_in, y1_in, wy0, wy1, Ws);
        g += g_step;
        s += plane;
        gs += plane;
      }
    }
    grad_centers_rows[(t * 2 + 0) * HW + yx] = gcx;
    grad_centers_rows[(t * 2 + 1) * HW + yx] = gcy;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> window_sample_cuda(const at::Tensor& source_in,
                                                      const at::Tensor& centers_in,
                                                      int64_t window, double spacing) {
  check_window_sample_args(source_in, centers_in, window, spacing);
  TORCH_CHECK(source_in.is_cuda(), "mast::window_sample (CUDA): expected CUDA tensors");
  TORCH_CHECK(window <= 46340, "mast::window_sample (CUDA): window too large");
  const c10::cuda::CUDAGuard device_guard(source_in.device());
  const at::Tensor source = source_in.contiguous();
  const at::Tensor centers = centers_in.contiguous();
  const int64_t B = source.size(0), C = source.size(1), Hs = source.size(2),
                Ws = source.size(3);
  const int64_t H = centers.size(2), W = centers.size(3);
  const int64_t P2 = window * window;
  at::Tensor out = at::empty({B, C, P2, H, W}, source.options());
  at::Tensor valid = at::empty({B, P2, H, W}, source.options().dtype(at::kBool));
  const int64_t n = valid.numel();
  if (n == 0) return {out, valid};
  // Same stream as at::cuda::getCurrentCUDAStream() (which is an alias of it).
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, source.scalar_type(),
      "mast_window_sample_cuda", [&] {
        using opmath_t = at::opmath_type<scalar_t>;
        if (centers.scalar_type() == source.scalar_type()) {
          window_sample_forward_kernel<scalar_t, scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
              source.const_data_ptr<scalar_t>(), centers.const_data_ptr<scalar_t>(),
              out.mutable_data_ptr<scalar_t>(), valid.mutable_data_ptr<bool>(), B, C, Hs, Ws,
              H, W, static_cast<int>(window), static_cast<opmath_t>(spacing));
        } else {  // float32 centres of a half-precision source (checked above)
          window_sample_forward_kernel<scalar_t, float><<<grid_for(n), kThreads, 0, stream>>>(
              source.const_data_ptr<scalar_t>(), centers.const_data_ptr<float>(),
              out.mutable_data_ptr<scalar_t>(), valid.mutable_data_ptr<bool>(), B, C, Hs, Ws,
              H, W, static_cast<int>(window), static_cast<opmath_t>(spacing));
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {out, valid};
}

std::tuple<at::Tensor, at::Tensor> window_sample_backward_cuda(const at::Tensor& grad_output_in,
                                                               const at::Tensor& source_in,
                                                               const at::Tensor& centers_in,
                                                               int64_t window, double spacing,
                                                               std::array<bool, 2> output_mask) {
  check_window_sample_backward_args(grad_output_in, source_in, centers_in, window, spacing);
  TORCH_CHECK(source_in.is_cuda(), "mast::window_sample_backward (CUDA): expected CUDA tensors");
  TORCH_CHECK(window <= 46340, "mast::window_sample_backward (CUDA): window too large");
  const c10::cuda::CUDAGuard device_guard(source_in.device());
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor source = source_in.contiguous();
  const at::Tensor centers = centers_in.contiguous();
  const int64_t B = source.size(0), C = source.size(1), Hs = source.size(2),
                Ws = source.size(3);
  const int64_t H = centers.size(2), W = centers.size(3);
  const at::ScalarType acc_type = at::toOpMathType(source.scalar_type());
  // float32 (double for double) accumulators; cast to the input dtype at the end.
  at::Tensor grad_source_acc = at::zeros({B, C, Hs, Ws}, source.options().dtype(acc_type));
  at::Tensor grad_centers_rows =
      at::empty({B, window, 2, H, W}, source.options().dtype(acc_type));
  const int64_t n = B * window * H * W;
  if (n == 0) {
    return {if_needed(output_mask[0], grad_source_acc.to(source.scalar_type())),
            if_needed(output_mask[1], at::zeros_like(centers))};
  }
  // Same stream as at::cuda::getCurrentCUDAStream() (which is an alias of it).
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, source.scalar_type(),
      "mast_window_sample_backward_cuda", [&] {
        using opmath_t = at::opmath_type<scalar_t>;
        if (centers.scalar_type() == source.scalar_type()) {
          window_sample_backward_kernel<scalar_t, scalar_t>
              <<<grid_for(n), kThreads, 0, stream>>>(
                  grad_output.const_data_ptr<scalar_t>(), source.const_data_ptr<scalar_t>(),
                  centers.const_data_ptr<scalar_t>(),
                  grad_source_acc.mutable_data_ptr<opmath_t>(),
                  grad_centers_rows.mutable_data_ptr<opmath_t>(), B, C, Hs, Ws, H, W,
                  static_cast<int>(window), static_cast<opmath_t>(spacing));
        } else {  // float32 centres of a half-precision source (checked above)
          window_sample_backward_kernel<scalar_t, float><<<grid_for(n), kThreads, 0, stream>>>(
              grad_output.const_data_ptr<scalar_t>(), source.const_data_ptr<scalar_t>(),
              centers.const_data_ptr<float>(), grad_source_acc.mutable_data_ptr<opmath_t>(),
              grad_centers_rows.mutable_data_ptr<opmath_t>(), B, C, Hs, Ws, H, W,
              static_cast<int>(window), static_cast<opmath_t>(spacing));
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  // grad_centers has the dtype of centers (float32 for float32 centres of a
  // half-precision source).
  at::Tensor grad_centers = grad_centers_rows.sum(1).to(centers.scalar_type());
  at::Tensor grad_source = grad_source_acc.to(source.scalar_type());
  return {if_needed(output_mask[0], grad_source.contiguous()),
          if_needed(output_mask[1], grad_centers.contiguous())};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CUDA, m) {
  m.impl("window_sample", &mast::window_sample_cuda);
  m.impl("window_sample_backward", &mast::window_sample_backward_cuda);
}
