// CPU kernels of mast::local_correlation and its backward.
//
//   out[b,p,y,x] = sum_c query[b,c,y,x] * key[b,c,y+dy*d,x+dx*d]   (-inf outside)
//
// Work is split over (b, y) rows with at::parallel_for. For one row and one
// vertical offset dy, the (window x W) accumulators stay in L1 while the loop
// runs over channels; the innermost loop runs over x on contiguous memory,
// restricted to the x range whose shifted key column is inside the image, so
// the hot loop has no bounds branches.
#include "../mast_ops.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

namespace mast {
namespace {

// x range [lo, hi) for which x + off lies in [0, W).
inline void shifted_range(int64_t off, int64_t W, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, -off);
  hi = std::min<int64_t>(W, W - off);
  if (hi < lo) hi = lo;
}

template <typename scalar_t>
void local_correlation_forward_impl(const scalar_t* __restrict__ q,
                                    const scalar_t* __restrict__ k, scalar_t* __restrict__ out,
                                    int64_t B, int64_t C, int64_t H, int64_t W, int64_t window,
                                    int64_t dilation) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  const scalar_t neg_inf = -std::numeric_limits<scalar_t>::infinity();

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc_buf(static_cast<size_t>(window * W));
    opmath_t* __restrict__ acc = acc_buf.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int64_t y = row % H;
      for (int64_t iy = 0; iy < window; ++iy) {
        const int64_t ky = y + (iy - r) * dilation;
        scalar_t* out_dy = out + (b * P2 + iy * window) * HW + y * W;  // + ix * HW
        if (ky < 0 || ky >= H) {
          for (int64_t ix = 0; ix < window; ++ix) {
            std::fill(out_dy + ix * HW, out_dy + ix * HW + W, neg_inf);
          }
          continue;
        }
        std::fill(acc, acc + window * W, opmath_t(0));
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* __restrict__ qrow = q + (b * C + c) * HW + y * W;
          const scalar_t* __restrict__ krow = k + (b * C + c) * HW + ky * W;
          for (int64_t ix = 0; ix < window; ++ix) {
            const int64_t off = (ix - r) * dilation;
            int64_t lo, hi;
            shifted_range(off, W, lo, hi);
            opmath_t* __restrict__ a = acc + ix * W;
            const scalar_t* __restrict__ ks = krow + off;
            for (int64_t x = lo; x < hi; ++x) {
              a[x] += static_cast<opmath_t>(qrow[x]) * static_cast<opmath_t>(ks[x]);
            }
          }
        }
        for (int64_t ix = 0; ix < window; ++ix) {
          const int64_t off = (ix - r) * dilation;
          int64_t lo, hi;
          shifted_range(off, W, lo, hi);
          scalar_t* o = out_dy + ix * HW;
          const opmath_t* a = acc + ix * W;
          for (int64_t x = 0; x < lo; ++x) o[x] = neg_inf;
          for (int64_t x = lo; x < hi; ++x) o[x] = static_cast<scalar_t>(a[x]);
          for (int64_t x = hi; x < W; ++x) o[x] = neg_inf;
        }
      }
    }
  });
}

// grad_query[b,c,y,x] = sum_{p valid} g[b,p,y,x] * key[b,c,y+dy*d,x+dx*d]
// grad_key[b,c,v,u]   = sum_{p valid} g[b,p,v-dy*d,u-dx*d] * query[b,c,v-dy*d,u-dx*d]
// Both are computed gather-style: the task owning row (b, y) writes only
// grad_query[b,:,y,:] and grad_key[b,:,y,:]. Entries of g at invalid
// positions are never read.
template <typename scalar_t>
void local_correlation_backward_impl(const scalar_t* __restrict__ g,
                                     const scalar_t* __restrict__ q,
                                     const scalar_t* __restrict__ k,
                                     scalar_t* __restrict__ gq, scalar_t* __restrict__ gk,
                                     int64_t B, int64_t C, int64_t H, int64_t W,
                                     int64_t window, int64_t dilation) {
  using opmath_t = at::opmath_type<scalar_t>;
  // CPU dtypes are float / double: accumulating in the output is exact opmath.
  static_assert(std::is_same<opmath_t, scalar_t>::value, "CPU kernels expect float/double");
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;

  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int64_t y = row % H;
      for (int64_t c = 0; c < C; ++c) {
        std::fill(gq + (b * C + c) * HW + y * W, gq + (b * C + c) * HW + y * W + W,
                  scalar_t(0));
        std::fill(gk + (b * C + c) * HW + y * W, gk + (b * C + c) * HW + y * W + W,
                  scalar_t(0));
      }
      // grad_query: the query pixel (y, x) looks at key row y + dy*d.
      for (int64_t iy = 0; iy < window; ++iy) {
        const int64_t ky = y + (iy - r) * dilation;
        if (ky < 0 || ky >= H) continue;
        const scalar_t* g_dy = g + (b * P2 + iy * window) * HW + y * W;  // + ix * HW
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* __restrict__ out = gq + (b * C + c) * HW + y * W;
          const scalar_t* __restrict__ krow = k + (b * C + c) * HW + ky * W;
          for (int64_t ix = 0; ix < window; ++ix) {
            const int64_t off = (ix - r) * dilation;
            int64_t lo, hi;
            shifted_range(off, W, lo, hi);
            const scalar_t* __restrict__ grow = g_dy + ix * HW;
            const scalar_t* __restrict__ ks = krow + off;
            for (int64_t x = lo; x < hi; ++x) {
              out[x] += grow[x] * ks[x];
            }
          }
        }
      }
      // grad_key: the key pixel (v=y, u) is seen by query row qy = y - dy*d at
      // offset p; the query column is x = u - dx*d, i.e. u = x + off.
      for (int64_t iy = 0; iy < window; ++iy) {
        const int64_t qy = y - (iy - r) * dilation;
        if (qy < 0 || qy >= H) continue;
        const scalar_t* g_dy = g + (b * P2 + iy * window) * HW + qy * W;  // + ix * HW
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* __restrict__ out = gk + (b * C + c) * HW + y * W;
          const scalar_t* __restrict__ qrow = q + (b * C + c) * HW + qy * W;
          for (int64_t ix = 0; ix < window; ++ix) {
            const int64_t off = (ix - r) * dilation;
            int64_t lo, hi;
            shifted_range(off, W, lo, hi);
            const scalar_t* __restrict__ grow = g_dy + ix * HW;
            scalar_t* __restrict__ os = out + off;
            for (int64_t x = lo; x < hi; ++x) {
              os[x] += grow[x] * qrow[x];
            }
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor local_correlation_cpu(const at::Tensor& query_in, const at::Tensor& key_in,
                                 int64_t window, int64_t dilation) {
  check_local_correlation_args(query_in, key_in, window, dilation);
  TORCH_CHECK(query_in.device().is_cpu(), "mast::local_correlation (CPU): expected CPU tensors");
  const at::Tensor query = query_in.contiguous();
  const at::Tensor key = key_in.contiguous();
  const int64_t B = query.size(0), C = query.size(1), H = query.size(2), W = query.size(3);
  at::Tensor out = at::empty({B, window * window, H, W}, query.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "mast_local_correlation_cpu", [&] {
    local_correlation_forward_impl<scalar_t>(query.const_data_ptr<scalar_t>(),
                                             key.const_data_ptr<scalar_t>(),
                                             out.mutable_data_ptr<scalar_t>(), B, C, H, W,
                                             window, dilation);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> local_correlation_backward_cpu(
    const at::Tensor& grad_output_in, const at::Tensor& query_in, const at::Tensor& key_in,
    int64_t window, int64_t dilation) {
  check_local_correlation_backward_args(grad_output_in, query_in, key_in, window, dilation);
  TORCH_CHECK(query_in.device().is_cpu(),
              "mast::local_correlation_backward (CPU): expected CPU tensors");
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor query = query_in.contiguous();
  const at::Tensor key = key_in.contiguous();
  const int64_t B = query.size(0), C = query.size(1), H = query.size(2), W = query.size(3);
  at::Tensor grad_query = at::empty_like(query, at::MemoryFormat::Contiguous);
  at::Tensor grad_key = at::empty_like(key, at::MemoryFormat::Contiguous);
  if (grad_query.numel() == 0) return {grad_query, grad_key};
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "mast_local_correlation_backward_cpu", [&] {
    local_correlation_backward_impl<scalar_t>(
        grad_output.const_data_ptr<scalar_t>(), query.const_data_ptr<scalar_t>(),
        key.const_data_ptr<scalar_t>(), grad_query.mutable_data_ptr<scalar_t>(),
        grad_key.mutable_data_ptr<scalar_t>(), B, C, H, W, window, dilation);
  });
  return {grad_query, grad_key};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CPU, m) {
  m.impl("local_correlation", &mast::local_correlation_cpu);
  m.impl("local_correlation_backward", &mast::local_correlation_backward_cpu);
}
