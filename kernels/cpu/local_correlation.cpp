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
#include "simd.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
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

struct Geometry {
  int64_t C, H, W, window, dilation;
};

// Forward for rows [begin, end) of the flattened (b, y) range; `acc` holds
// window * W accumulators.
template <typename scalar_t, bool kFma>
MAST_ALWAYS_INLINE void forward_rows(const scalar_t* __restrict__ q,
                                     const scalar_t* __restrict__ k,
                                     scalar_t* __restrict__ out,
                                     at::opmath_type<scalar_t>* __restrict__ acc,
                                     const Geometry& geo, int64_t begin, int64_t end) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = geo.C, H = geo.H, W = geo.W, window = geo.window, dilation = geo.dilation;
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  const scalar_t neg_inf = -std::numeric_limits<scalar_t>::infinity();
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
      int64_t c = 0;
      // Four channels per pass over the accumulators (fewer loads/stores of
      // acc per multiply-add), then the remainder one by one.
      for (; c + 4 <= C; c += 4) {
        const scalar_t* __restrict__ q0 = q + (b * C + c) * HW + y * W;
        const scalar_t* __restrict__ q1 = q0 + HW;
        const scalar_t* __restrict__ q2 = q1 + HW;
        const scalar_t* __restrict__ q3 = q2 + HW;
        const scalar_t* __restrict__ k0 = k + (b * C + c) * HW + ky * W;
        for (int64_t ix = 0; ix < window; ++ix) {
          const int64_t off = (ix - r) * dilation;
          int64_t lo, hi;
          shifted_range(off, W, lo, hi);
          opmath_t* __restrict__ a = acc + ix * W;
          const scalar_t* __restrict__ ks0 = k0 + off;
          const scalar_t* __restrict__ ks1 = ks0 + HW;
          const scalar_t* __restrict__ ks2 = ks1 + HW;
          const scalar_t* __restrict__ ks3 = ks2 + HW;
          for (int64_t x = lo; x < hi; ++x) {
            opmath_t v = a[x];
            v = madd<kFma, opmath_t>(v, static_cast<opmath_t>(q0[x]), static_cast<opmath_t>(ks0[x]));
            v = madd<kFma, opmath_t>(v, static_cast<opmath_t>(q1[x]), static_cast<opmath_t>(ks1[x]));
            v = madd<kFma, opmath_t>(v, static_cast<opmath_t>(q2[x]), static_cast<opmath_t>(ks2[x]));
            v = madd<kFma, opmath_t>(v, static_cast<opmath_t>(q3[x]), static_cast<opmath_t>(ks3[x]));
            a[x] = v;
          }
        }
      }
      for (; c < C; ++c) {
        const scalar_t* __restrict__ qrow = q + (b * C + c) * HW + y * W;
        const scalar_t* __restrict__ krow = k + (b * C + c) * HW + ky * W;
        for (int64_t ix = 0; ix < window; ++ix) {
          const int64_t off = (ix - r) * dilation;
          int64_t lo, hi;
          shifted_range(off, W, lo, hi);
          opmath_t* __restrict__ a = acc + ix * W;
          const scalar_t* __restrict__ ks = krow + off;
          for (int64_t x = lo; x < hi; ++x) {
            a[x] = madd<kFma, opmath_t>(a[x], static_cast<opmath_t>(qrow[x]),
                                        static_cast<opmath_t>(ks[x]));
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
}

// Backward, one (b, y) row at a time:
//   grad_query[b,c,y,x] = sum_{p valid} g[b,p,y,x] * key[b,c,y+dy*d,x+dx*d]
//   grad_key[b,c,v,u]   = sum_{p valid} g[b,p,v-dy*d,u-dx*d] * query[b,c,v-dy*d,u-dx*d]
// Both are gathers: the task owning row (b, y) writes only grad_query[b,:,y,:]
// and grad_key[b,:,y,:] (no races, no atomics). Entries of g at invalid
// positions are never read. CPU dtypes are float / double, so the outputs
// themselves are the (opmath) accumulators.

// One row (b, y) of a gradient. grad_query (kKey false): the query pixel (y, x)
// saw the key pixel (y + dy*d, x + off), so it gathers g[., y, x] * key[y + dy*d, x + off].
// grad_key (kKey true): the key pixel (y, u) was seen by the query pixel
// (y - dy*d, u - off), so it gathers g[., y - dy*d, x] * query[y - dy*d, x] into u = x + off.
// In both, x runs over the query columns whose partner x + off lies in the row.
template <typename scalar_t, bool kFma, bool kKey>
MAST_ALWAYS_INLINE void grad_row(const scalar_t* __restrict__ g, const scalar_t* __restrict__ other,
                                 scalar_t* __restrict__ out, const Geometry& geo, int64_t b,
                                 int64_t y) {
  const int64_t C = geo.C, H = geo.H, W = geo.W, window = geo.window, dilation = geo.dilation;
  const int64_t r = window / 2;
  const int64_t P2 = window * window;
  const int64_t HW = H * W;
  for (int64_t c = 0; c < C; ++c) {
    scalar_t* out_row = out + (b * C + c) * HW + y * W;
    std::fill(out_row, out_row + W, scalar_t(0));
  }
  for (int64_t iy = 0; iy < window; ++iy) {
    const int64_t dy = (iy - r) * dilation;
    const int64_t other_y = kKey ? y - dy : y + dy;
    if (other_y < 0 || other_y >= H) continue;
    const int64_t query_y = kKey ? other_y : y;
    const scalar_t* g_dy = g + (b * P2 + iy * window) * HW + query_y * W;  // + ix * HW
    for (int64_t c = 0; c < C; ++c) {
      scalar_t* __restrict__ o = out + (b * C + c) * HW + y * W;
      const scalar_t* __restrict__ other_row = other + (b * C + c) * HW + other_y * W;
      for (int64_t ix = 0; ix < window; ++ix) {
        const int64_t off = (ix - r) * dilation;
        int64_t lo, hi;
        shifted_range(off, W, lo, hi);
        const scalar_t* __restrict__ grow = g_dy + ix * HW;
        scalar_t* __restrict__ dst = kKey ? o + off : o;
        const scalar_t* __restrict__ src = kKey ? other_row : other_row + off;
        for (int64_t x = lo; x < hi; ++x) {
          dst[x] = madd<kFma, scalar_t>(dst[x], grow[x], src[x]);
        }
      }
    }
  }
}

// Backward for rows [begin, end) of the flattened (b, y) range; a null gq or
// gk is a gradient autograd does not need, and is not computed.
template <typename scalar_t, bool kFma>
MAST_ALWAYS_INLINE void backward_rows(const scalar_t* __restrict__ g,
                                      const scalar_t* __restrict__ q,
                                      const scalar_t* __restrict__ k,
                                      scalar_t* __restrict__ gq, scalar_t* __restrict__ gk,
                                      const Geometry& geo, int64_t begin, int64_t end) {
  static_assert(std::is_same<at::opmath_type<scalar_t>, scalar_t>::value,
                "CPU kernels expect float/double");
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / geo.H;
    const int64_t y = row % geo.H;
    if (gq != nullptr) grad_row<scalar_t, kFma, false>(g, k, gq, geo, b, y);
    if (gk != nullptr) grad_row<scalar_t, kFma, true>(g, q, gk, geo, b, y);
  }
}

template <typename scalar_t>
void forward_rows_baseline(const scalar_t* q, const scalar_t* k, scalar_t* out,
                           at::opmath_type<scalar_t>* acc, const Geometry& geo, int64_t begin,
                           int64_t end) {
  forward_rows<scalar_t, false>(q, k, out, acc, geo, begin, end);
}

template <typename scalar_t>
void backward_rows_baseline(const scalar_t* g, const scalar_t* q, const scalar_t* k,
                            scalar_t* gq, scalar_t* gk, const Geometry& geo, int64_t begin,
                            int64_t end) {
  backward_rows<scalar_t, false>(g, q, k, gq, gk, geo, begin, end);
}

#ifdef MAST_CPU_DISPATCH_AVX2
template <typename scalar_t>
MAST_TARGET_AVX2 void forward_rows_avx2(const scalar_t* q, const scalar_t* k, scalar_t* out,
                                        at::opmath_type<scalar_t>* acc, const Geometry& geo,
                                        int64_t begin, int64_t end) {
  forward_rows<scalar_t, true>(q, k, out, acc, geo, begin, end);
}

template <typename scalar_t>
MAST_TARGET_AVX2 void backward_rows_avx2(const scalar_t* g, const scalar_t* q,
                                         const scalar_t* k, scalar_t* gq, scalar_t* gk,
                                         const Geometry& geo, int64_t begin, int64_t end) {
  backward_rows<scalar_t, true>(g, q, k, gq, gk, geo, begin, end);
}
#endif

template <typename scalar_t>
void forward_impl(const scalar_t* q, const scalar_t* k, scalar_t* out, int64_t B,
                  const Geometry& geo) {
  using opmath_t = at::opmath_type<scalar_t>;
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, B * geo.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc(static_cast<size_t>(geo.window * geo.W));
#ifdef MAST_CPU_DISPATCH_AVX2
    if (avx2) {
      forward_rows_avx2<scalar_t>(q, k, out, acc.data(), geo, begin, end);
      return;
    }
#endif
    (void)avx2;
    forward_rows_baseline<scalar_t>(q, k, out, acc.data(), geo, begin, end);
  });
}

template <typename scalar_t>
void backward_impl(const scalar_t* g, const scalar_t* q, const scalar_t* k, scalar_t* gq,
                   scalar_t* gk, int64_t B, const Geometry& geo) {
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, B * geo.H, 1, [&](int64_t begin, int64_t end) {
#ifdef MAST_CPU_DISPATCH_AVX2
    if (avx2) {
      backward_rows_avx2<scalar_t>(g, q, k, gq, gk, geo, begin, end);
      return;
    }
#endif
    (void)avx2;
    backward_rows_baseline<scalar_t>(g, q, k, gq, gk, geo, begin, end);
  });
}

}  // namespace

at::Tensor local_correlation_cpu(const at::Tensor& query_in, const at::Tensor& key_in,
                                 int64_t window, int64_t dilation) {
  check_local_correlation_args(query_in, key_in, window, dilation);
  TORCH_CHECK(query_in.device().is_cpu(), "mast::local_correlation (CPU): expected CPU tensors");
  const at::Tensor query = query_in.contiguous();
  const at::Tensor key = key_in.contiguous();
  const int64_t B = query.size(0);
  const Geometry geo{query.size(1), query.size(2), query.size(3), window, dilation};
  at::Tensor out = at::empty({B, window * window, geo.H, geo.W}, query.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "mast_local_correlation_cpu", [&] {
    forward_impl<scalar_t>(query.const_data_ptr<scalar_t>(), key.const_data_ptr<scalar_t>(),
                           out.mutable_data_ptr<scalar_t>(), B, geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> local_correlation_backward_cpu(
    const at::Tensor& grad_output_in, const at::Tensor& query_in, const at::Tensor& key_in,
    int64_t window, int64_t dilation, std::array<bool, 2> output_mask) {
  check_local_correlation_backward_args(grad_output_in, query_in, key_in, window, dilation);
  TORCH_CHECK(query_in.device().is_cpu(),
              "mast::local_correlation_backward (CPU): expected CPU tensors");
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor query = query_in.contiguous();
  const at::Tensor key = key_in.contiguous();
  const int64_t B = query.size(0);
  const Geometry geo{query.size(1), query.size(2), query.size(3), window, dilation};
  at::Tensor grad_query =
      if_needed(output_mask[0], at::empty_like(query, at::MemoryFormat::Contiguous));
  at::Tensor grad_key =
      if_needed(output_mask[1], at::empty_like(key, at::MemoryFormat::Contiguous));
  if (query.numel() == 0 || !(output_mask[0] || output_mask[1])) return {grad_query, grad_key};
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "mast_local_correlation_backward_cpu", [&] {
    backward_impl<scalar_t>(
        grad_output.const_data_ptr<scalar_t>(), query.const_data_ptr<scalar_t>(),
        key.const_data_ptr<scalar_t>(),
        output_mask[0] ? grad_query.mutable_data_ptr<scalar_t>() : nullptr,
        output_mask[1] ? grad_key.mutable_data_ptr<scalar_t>() : nullptr, B, geo);
  });
  return {grad_query, grad_key};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CPU, m) {
  m.impl("local_correlation", &mast::local_correlation_cpu);
  m.impl("local_correlation_backward", &mast::local_correlation_backward_cpu);
}
