// CUDA kernels of mast::local_correlation and its backward.
//
//   out[b,p,y,x] = sum_c query[b,c,y,x] * key[b,c,y+dy*d,x+dx*d]   (-inf outside)
//
// Forward: one thread per output element (b, p, y, x), looping over channels;
// consecutive threads take consecutive x, so every load and store is
// coalesced. Backward: one thread per (b, group of 4 channels, y, x) computes
// grad_query and grad_key of those channels at (y, x) by gathering over the
// window offsets (no atomics); each grad_output value it loads serves the 4
// channels. Accumulation is in at::opmath_type (float for half / bfloat16 /
// float, double for double).
#include "../mast_ops.h"
#include "launch.h"

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
__global__ void local_correlation_forward_kernel(const scalar_t* __restrict__ query,
                                                 const scalar_t* __restrict__ key,
                                                 scalar_t* __restrict__ out, int64_t B,
                                                 int64_t C, int64_t H, int64_t W, int window,
                                                 int dilation, scalar_t neg_inf) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t HW = H * W;
  const int P2 = window * window;
  const int r = window / 2;
  const int64_t n = B * P2 * HW;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t x = i % W;
    int64_t t = i / W;
    const int64_t y = t % H;
    t /= H;
    const int p = static_cast<int>(t % P2);
    const int64_t b = t / P2;
    const int64_t ky = y + static_cast<int64_t>(p / window - r) * dilation;
    const int64_t kx = x + static_cast<int64_t>(p % window - r) * dilation;
    if (ky < 0 || ky >= H || kx < 0 || kx >= W) {
      out[i] = neg_inf;
      continue;
    }
    const scalar_t* __restrict__ qp = query + b * C * HW + y * W + x;
    const scalar_t* __restrict__ kp = key + b * C * HW + ky * W + kx;
    opmath_t acc = 0;
#pragma unroll 4
    for (int64_t c = 0; c < C; ++c) {
      acc += static_cast<opmath_t>(qp[c * HW]) * static_cast<opmath_t>(kp[c * HW]);
    }
    out[i] = static_cast<scalar_t>(acc);
  }
}

// grad_query[b,c,y,x] = sum_{p valid} g[b,p,y,x] * key[b,c,y+dy*d,x+dx*d]
// grad_key[b,c,y,x]   = sum_{p: (y-dy*d, x-dx*d) inside}
//                           g[b,p,y-dy*d,x-dx*d] * query[b,c,y-dy*d,x-dx*d]
// One thread per (b, channel group, y, x) with kChannels channels per group,
// so every grad_output value it loads serves kChannels channels. Only
// in-bounds entries of g are read (the others may hold anything).
constexpr int kChannels = 4;

template <typename scalar_t>
__global__ void local_correlation_backward_kernel(const scalar_t* __restrict__ grad_out,
                                                  const scalar_t* __restrict__ query,
                                                  const scalar_t* __restrict__ key,
                                                  scalar_t* __restrict__ grad_query,
                                                  scalar_t* __restrict__ grad_key, int64_t B,
                                                  int64_t C, int64_t H, int64_t W, int window,
                                                  int dilation) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t HW = H * W;
  const int P2 = window * window;
  const int r = window / 2;
  const int64_t groups = (C + kChannels - 1) / kChannels;
  const int64_t n = B * groups * HW;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t yx = i % HW;
    const int64_t y = yx / W;
    const int64_t x = yx % W;
    const int64_t t = i / HW;  // b * groups + group
    const int64_t b = t / groups;
    const int64_t c0 = (t % groups) * kChannels;
    const int nc = static_cast<int>(C - c0 < kChannels ? C - c0 : kChannels);
    const scalar_t* __restrict__ g_b = grad_out + b * P2 * HW;
    const scalar_t* __restrict__ q_b = query + (b * C + c0) * HW;
    const scalar_t* __restrict__ k_b = key + (b * C + c0) * HW;
    opmath_t acc_q[kChannels];
    opmath_t acc_k[kChannels];
#pragma unroll
    for (int j = 0; j < kChannels; ++j) {
      acc_q[j] = 0;
      acc_k[j] = 0;
    }
    for (int iy = 0; iy < window; ++iy) {
      const int64_t dy = static_cast<int64_t>(iy - r) * dilation;
      const int64_t ky = y + dy;  // key row seen from query row y
      const int64_t qy = y - dy;  // query row that sees key row y
      const bool ky_in = ky >= 0 && ky < H;
      const bool qy_in = qy >= 0 && qy < H;
      if (!ky_in && !qy_in) continue;
      for (int ix = 0; ix < window; ++ix) {
        const int64_t dx = static_cast<int64_t>(ix - r) * dilation;
        const scalar_t* __restrict__ g_p = g_b + static_cast<int64_t>(iy * window + ix) * HW;
        const int64_t kx = x + dx;
        if (ky_in && kx >= 0 && kx < W) {
          const opmath_t gv = static_cast<opmath_t>(g_p[yx]);
          const int64_t off = ky * W + kx;
#pragma unroll
          for (int j = 0; j < kChannels; ++j) {
            if (j < nc) acc_q[j] += gv * static_cast<opmath_t>(k_b[j * HW + off]);
          }
        }
        const int64_t qx = x - dx;
        if (qy_in && qx >= 0 && qx < W) {
          const int64_t off = qy * W + qx;
          const opmath_t gv = static_cast<opmath_t>(g_p[off]);
#pragma unroll
          for (int j = 0; j < kChannels; ++j) {
            if (j < nc) acc_k[j] += gv * static_cast<opmath_t>(q_b[j * HW + off]);
          }
        }
      }
    }
    scalar_t* __restrict__ gq = grad_query + (b * C + c0) * HW + yx;
    scalar_t* __restrict__ gk = grad_key + (b * C + c0) * HW + yx;
#pragma unroll
    for (int j = 0; j < kChannels; ++j) {
      if (j < nc) {
        gq[j * HW] = static_cast<scalar_t>(acc_q[j]);
        gk[j * HW] = static_cast<scalar_t>(acc_k[j]);
      }
    }
  }
}

}  // namespace

at::Tensor local_correlation_cuda(const at::Tensor& query_in, const at::Tensor& key_in,
                                  int64_t window, int64_t dilation) {
  check_local_correlation_args(query_in, key_in, window, dilation);
  TORCH_CHECK(query_in.is_cuda(), "mast::local_correlation (CUDA): expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(query_in.device());
  const at::Tensor query = query_in.contiguous();
  const at::Tensor key = key_in.contiguous();
  const int64_t B = query.size(0), C = query.size(1), H = query.size(2), W = query.size(3);
  at::Tensor out = at::empty({B, window * window, H, W}, query.options());
  const int64_t n = out.numel();
  if (n == 0) return out;
  TORCH_CHECK(window <= 46340 && dilation <= std::numeric_limits<int>::max(),
              "mast::local_correlation (CUDA): window or dilation too large");
  // Same stream as at::cuda::getCurrentCUDAStream() (which is an alias of it).
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, query.scalar_type(),
      "mast_local_correlation_cuda", [&] {
        const scalar_t neg_inf =
            static_cast<scalar_t>(-std::numeric_limits<float>::infinity());
        local_correlation_forward_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
            query.const_data_ptr<scalar_t>(), key.const_data_ptr<scalar_t>(),
            out.mutable_data_ptr<scalar_t>(), B, C, H, W, static_cast<int>(window),
            static_cast<int>(dilation), neg_inf);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor> local_correlation_backward_cuda(
    const at::Tensor& grad_output_in, const at::Tensor& query_in, const at::Tensor& key_in,
    int64_t window, int64_t dilation, std::array<bool, 2> output_mask) {
  check_local_correlation_backward_args(grad_output_in, query_in, key_in, window, dilation);
  TORCH_CHECK(query_in.is_cuda(),
              "mast::local_correlation_backward (CUDA): expected CUDA tensors");
  const c10::cuda::CUDAGuard device_guard(query_in.device());
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor query = query_in.contiguous();
  const at::Tensor key = key_in.contiguous();
  const int64_t B = query.size(0), C = query.size(1), H = query.size(2), W = query.size(3);
  at::Tensor grad_query = at::empty_like(query, at::MemoryFormat::Contiguous);
  at::Tensor grad_key = at::empty_like(key, at::MemoryFormat::Contiguous);
  if (grad_query.numel() == 0) {
    return {if_needed(output_mask[0], grad_query), if_needed(output_mask[1], grad_key)};
  }
  const int64_t n = B * ((C + kChannels - 1) / kChannels) * H * W;
  TORCH_CHECK(window <= 46340 && dilation <= std::numeric_limits<int>::max(),
              "mast::local_correlation_backward (CUDA): window or dilation too large");
  // Same stream as at::cuda::getCurrentCUDAStream() (which is an alias of it).
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, query.scalar_type(),
      "mast_local_correlation_backward_cuda", [&] {
        local_correlation_backward_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
            grad_output.const_data_ptr<scalar_t>(), query.const_data_ptr<scalar_t>(),
            key.const_data_ptr<scalar_t>(), grad_query.mutable_data_ptr<scalar_t>(),
            grad_key.mutable_data_ptr<scalar_t>(), B, C, H, W, static_cast<int>(window),
            static_cast<int>(dilation));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {if_needed(output_mask[0], grad_query), if_needed(output_mask[1], grad_key)};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CUDA, m) {
  m.impl("local_correlation", &mast::local_correlation_cuda);
  m.impl("local_correlation_backward", &mast::local_correlation_backward_cuda);
}
