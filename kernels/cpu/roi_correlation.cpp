// CPU kernels of mast::roi_correlation and its backward: window_sample of the
// key fused with the dot product against the query, so the (B, C, P^2, H, W)
// key windows of a far reference never exist.
//
//   out[b,p,y,x] = sum_c query[b,c,y,x] * bilinear(key[b,c], centers[b,:,y,x] + offset_p * spacing)
//                = sum_i w_i <query[b,:,y,x], key[b,:,corner_i]>   (four corners i, zero outside)
//
// and -inf where the sample point is not valid (outside [0, Ws-1] x [0, Hs-1]),
// exactly where window_sample's validity mask is false. Both feature maps are
// read channels-last, so every corner is one contiguous C-vector and the
// channel loop vectorises; work is split over (b, y) rows.
#include "../mast_ops.h"
#include "../mast_sampling.h"
#include "simd.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace mast {
namespace {

struct RoiGeometry {
  int64_t C, H, W, Hs, Ws, window;
  double spacing;
};

// The four corners of one sample point: weights, and pointers to their
// channels-last key vectors (a shared zero vector for corners outside).
template <typename T>
struct Corners {
  const T* k[4];
  T w[4];
  T wx0, wx1, wy0, wy1;
  int64_t idx[4];  // flat y * Ws + x, -1 outside
  bool valid;
};

template <typename T>
MAST_ALWAYS_INLINE void locate(const T* centers_b, int64_t HW, int64_t pixel, T kx, T ky,
                               const RoiGeometry& g, const T* key_b, const T* zeros,
                               Corners<T>& out) {
  const T sx = offset_coord(centers_b[pixel], kx, static_cast<T>(g.spacing));
  const T sy = offset_coord(centers_b[HW + pixel], ky, static_cast<T>(g.spacing));
  BilinearCorners<T> c;
  bilinear_corners<T>(sx, sy, g.Hs, g.Ws, c);
  out.valid = c.valid;
  if (!c.valid) return;
  out.idx[0] = c.i00;
  out.idx[1] = c.i01;
  out.idx[2] = c.i10;
  out.idx[3] = c.i11;
  out.w[0] = c.wy0 * c.wx0;
  out.w[1] = c.wy0 * c.wx1;
  out.w[2] = c.wy1 * c.wx0;
  out.w[3] = c.wy1 * c.wx1;
  out.wx0 = c.wx0;
  out.wx1 = c.wx1;
  out.wy0 = c.wy0;
  out.wy1 = c.wy1;
  for (int i = 0; i < 4; ++i) out.k[i] = out.idx[i] >= 0 ? key_b + out.idx[i] * g.C : zeros;
}

constexpr int kLanes = 8;  // independent partial sums: the loops over them vectorise

// <q, sum_i w_i k_i>.
template <bool kFma, typename T>
MAST_ALWAYS_INLINE T blended_dot(const T* __restrict__ q, const Corners<T>& s, int64_t C) {
  T acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T v = s.w[0] * s.k[0][c + l] + s.w[1] * s.k[1][c + l] + s.w[2] * s.k[2][c + l] +
                  s.w[3] * s.k[3][c + l];
      acc[l] = madd<kFma, T>(acc[l], q[c + l], v);
    }
  }
  T total = T(0);
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  for (; c < C; ++c) {
    total += q[c] * (s.w[0] * s.k[0][c] + s.w[1] * s.k[1][c] + s.w[2] * s.k[2][c] + s.w[3] * s.k[3][c]);
  }
  return total;
}

// d[i] = <q, k_i> for the four corners.
template <bool kFma, typename T>
MAST_ALWAYS_INLINE void corner_dots(const T* __restrict__ q, const Corners<T>& s, int64_t C,
                                    T d[4]) {
  T acc[4][kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes) {
    for (int i = 0; i < 4; ++i) {
      for (int l = 0; l < kLanes; ++l) acc[i][l] = madd<kFma, T>(acc[i][l], q[c + l], s.k[i][c + l]);
    }
  }
  for (int i = 0; i < 4; ++i) {
    T total = T(0);
    for (int l = 0; l < kLanes; ++l) total += acc[i][l];
    for (int64_t r = c; r < C; ++r) total += q[r] * s.k[i][r];
    d[i] = total;
  }
}

template <typename T, bool kFma>
MAST_ALWAYS_INLINE void forward_rows(const T* query, const T* key, const T* centers, T* out,
                                     const T* zeros, const RoiGeometry& g, int64_t begin,
                                     int64_t end) {
  const int64_t r = g.window / 2, P2 = g.window * g.window, HW = g.H * g.W;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  Corners<T> s;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / g.H, y = row % g.H;
    const T* centers_b = centers + b * 2 * HW;
    const T* key_b = key + b * g.Hs * g.Ws * g.C;
    for (int64_t p = 0; p < P2; ++p) {
      const T ky = static_cast<T>(p / g.window - r), kx = static_cast<T>(p % g.window - r);
      T* out_row = out + (b * P2 + p) * HW + y * g.W;
      for (int64_t x = 0; x < g.W; ++x) {
        locate<T>(centers_b, HW, y * g.W + x, kx, ky, g, key_b, zeros, s);
        out_row[x] = s.valid ? blended_dot<kFma, T>(query + (row * g.W + x) * g.C, s, g.C) : neg_inf;
      }
    }
  }
}

// Backward for rows [begin, end): grad_query and grad_centers of these rows
// are owned here; grad_key is scattered into `gk` (this task's own buffer).
// A null gq, gk or gc is a gradient autograd does not need, and is not
// computed (the checks are per sample point, outside the channel loops).
template <typename T, bool kFma>
MAST_ALWAYS_INLINE void backward_rows(const T* grad, const T* query, const T* key,
                                      const T* centers, T* gq, T* gk, T* gc, const T* zeros,
                                      const RoiGeometry& g, int64_t begin, int64_t end) {
  const int64_t r = g.window / 2, P2 = g.window * g.window, HW = g.H * g.W, C = g.C;
  Corners<T> s;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / g.H, y = row % g.H;
    const T* centers_b = centers + b * 2 * HW;
    const T* key_b = key + b * g.Hs * g.Ws * C;
    T* gk_b = gk != nullptr ? gk + b * g.Hs * g.Ws * C : nullptr;
    for (int64_t p = 0; p < P2; ++p) {
      const T ky = static_cast<T>(p / g.window - r), kx = static_cast<T>(p % g.window - r);
      const T* grad_row = grad + (b * P2 + p) * HW + y * g.W;
      for (int64_t x = 0; x < g.W; ++x) {
        const T gv = grad_row[x];
        if (gv == T(0)) continue;  // also what masked (-inf) scores receive
        locate<T>(centers_b, HW, y * g.W + x, kx, ky, g, key_b, zeros, s);
        if (!s.valid) continue;
        const T* q = query + (row * g.W + x) * C;
        if (gc != nullptr) {
          T d[4];
          corner_dots<kFma, T>(q, s, C, d);
          gc[b * 2 * HW + y * g.W + x] += gv * (s.wy0 * (d[1] - d[0]) + s.wy1 * (d[3] - d[2]));
          gc[b * 2 * HW + HW + y * g.W + x] += gv * (s.wx0 * (d[2] - d[0]) + s.wx1 * (d[3] - d[1]));
        }
        if (gq != nullptr) {
          T* gq_pixel = gq + (row * g.W + x) * C;
          for (int64_t c = 0; c < C; ++c) {
            gq_pixel[c] += gv * (s.w[0] * s.k[0][c] + s.w[1] * s.k[1][c] + s.w[2] * s.k[2][c] +
                                 s.w[3] * s.k[3][c]);
          }
        }
        if (gk != nullptr) {
          for (int i = 0; i < 4; ++i) {
            if (s.idx[i] < 0) continue;
            T* gk_corner = gk_b + s.idx[i] * C;
            const T scale = gv * s.w[i];
            for (int64_t c = 0; c < C; ++c) gk_corner[c] += scale * q[c];
          }
        }
      }
    }
  }
}

#ifdef MAST_CPU_DISPATCH_AVX2
template <typename T>
MAST_TARGET_AVX2 void forward_rows_avx2(const T* query, const T* key, const T* centers, T* out,
                                        const T* zeros, const RoiGeometry& g, int64_t begin,
                                        int64_t end) {
  forward_rows<T, true>(query, key, centers, out, zeros, g, begin, end);
}
template <typename T>
MAST_TARGET_AVX2 void backward_rows_avx2(const T* grad, const T* query, const T* key,
                                         const T* centers, T* gq, T* gk, T* gc, const T* zeros,
                                         const RoiGeometry& g, int64_t begin, int64_t end) {
  backward_rows<T, true>(grad, query, key, centers, gq, gk, gc, zeros, g, begin, end);
}
#endif

RoiGeometry geometry(const at::Tensor& query, const at::Tensor& key, int64_t window,
                     double spacing) {
  return {query.size(1), query.size(2), query.size(3), key.size(2), key.size(3), window, spacing};
}

at::Tensor channels_last(const at::Tensor& map) { return map.permute({0, 2, 3, 1}).contiguous(); }
at::Tensor channels_first(const at::Tensor& map) { return map.permute({0, 3, 1, 2}).contiguous(); }

}  // namespace

at::Tensor roi_correlation_cpu(const at::Tensor& query_in, const at::Tensor& key_in,
                               const at::Tensor& centers_in, int64_t window, double spacing) {
  check_roi_correlation_args(query_in, key_in, centers_in, window, spacing);
  TORCH_CHECK(query_in.device().is_cpu(), "mast::roi_correlation (CPU): expected CPU tensors");
  const RoiGeometry g = geometry(query_in, key_in, window, spacing);
  const int64_t B = query_in.size(0);
  at::Tensor out = at::empty({B, window * window, g.H, g.W}, query_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor query = channels_last(query_in), key = channels_last(key_in);
  const at::Tensor centers = centers_in.contiguous();
  const bool avx2 = cpu_has_avx2();
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "mast_roi_correlation_cpu", [&] {
    const std::vector<scalar_t> zeros(static_cast<size_t>(g.C), scalar_t(0));
    const scalar_t *q = query.const_data_ptr<scalar_t>(), *k = key.const_data_ptr<scalar_t>(),
                   *c = centers.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B * g.H, 1, [&](int64_t begin, int64_t end) {
#ifdef MAST_CPU_DISPATCH_AVX2
      if (avx2) return forward_rows_avx2<scalar_t>(q, k, c, o, zeros.data(), g, begin, end);
#endif
      (void)avx2;
      forward_rows<scalar_t, false>(q, k, c, o, zeros.data(), g, begin, end);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> roi_correlation_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& query_in, const at::Tensor& key_in,
    const at::Tensor& centers_in, int64_t window, double spacing,
    std::array<bool, 3> output_mask) {
  check_roi_correlation_backward_args(grad_in, query_in, key_in, centers_in, window, spacing);
  TORCH_CHECK(query_in.device().is_cpu(),
              "mast::roi_correlation_backward (CPU): expected CPU tensors");
  const RoiGeometry g = geometry(query_in, key_in, window, spacing);
  const int64_t B = query_in.size(0);
  const at::Tensor query = channels_last(query_in), key = channels_last(key_in);
  const at::Tensor centers = centers_in.contiguous(), grad = grad_in.contiguous();
  at::Tensor grad_query = if_needed(output_mask[0], at::zeros_like(query));  // channels-last
  at::Tensor grad_centers = if_needed(output_mask[2], at::zeros_like(centers));
  // grad_key is a scatter: tasks of one batch element that run side by side
  // each get a private buffer, summed afterwards (no atomics).
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(g.H, (threads + B - 1) / B));
  const int64_t rows_per_chunk = (g.H + chunks - 1) / chunks;
  at::Tensor grad_key_parts =
      if_needed(output_mask[1], at::zeros({chunks, B, g.Hs, g.Ws, g.C}, key.options()));
  const bool any_needed = output_mask[0] || output_mask[1] || output_mask[2];
  if (grad_in.numel() > 0 && g.C > 0 && any_needed) {
    const bool avx2 = cpu_has_avx2();
    AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "mast_roi_correlation_backward_cpu", [&] {
      const std::vector<scalar_t> zeros(static_cast<size_t>(g.C), scalar_t(0));
      const scalar_t *gr = grad.const_data_ptr<scalar_t>(), *q = query.const_data_ptr<scalar_t>(),
                     *k = key.const_data_ptr<scalar_t>(), *c = centers.const_data_ptr<scalar_t>();
      scalar_t *gq = output_mask[0] ? grad_query.mutable_data_ptr<scalar_t>() : nullptr,
               *gk = output_mask[1] ? grad_key_parts.mutable_data_ptr<scalar_t>() : nullptr,
               *gc = output_mask[2] ? grad_centers.mutable_data_ptr<scalar_t>() : nullptr;
      const int64_t part = B * g.Hs * g.Ws * g.C;
      at::parallel_for(0, B * chunks, 1, [&](int64_t task_begin, int64_t task_end) {
        for (int64_t task = task_begin; task < task_end; ++task) {
          const int64_t b = task / chunks, chunk = task % chunks;
          const int64_t begin = b * g.H + std::min(g.H, chunk * rows_per_chunk);
          const int64_t end = b * g.H + std::min(g.H, (chunk + 1) * rows_per_chunk);
          scalar_t* gk_chunk = gk != nullptr ? gk + chunk * part : nullptr;
#ifdef MAST_CPU_DISPATCH_AVX2
          if (avx2) {
            backward_rows_avx2<scalar_t>(gr, q, k, c, gq, gk_chunk, gc, zeros.data(), g, begin, end);
            continue;
          }
#endif
          (void)avx2;
          backward_rows<scalar_t, false>(gr, q, k, c, gq, gk_chunk, gc, zeros.data(), g, begin, end);
        }
      });
    });
  }
  return {output_mask[0] ? channels_first(grad_query) : at::Tensor(),
          output_mask[1] ? channels_first(grad_key_parts.sum(0)) : at::Tensor(), grad_centers};
}

}  // namespace mast

TORCH_LIBRARY_IMPL(mast, CPU, m) {
  m.impl("roi_correlation", &mast::roi_correlation_cpu);
  m.impl("roi_correlation_backward", &mast::roi_correlation_backward_cpu);
}
