// Bilinear corner set-up shared by the CPU and CUDA window_sample kernels.
//
// Convention (same as grid_sample with align_corners=True, padding 'zeros'):
// pixel i has coordinate i; x0 = floor(sx), x1 = x0 + 1, wx1 = sx - x0,
// wx0 = 1 - wx1 (likewise for y); corners outside the source contribute 0.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace mast {

C10_HOST_DEVICE inline float floor_op(float v) { return floorf(v); }
C10_HOST_DEVICE inline double floor_op(double v) { return floor(v); }

// Sample coordinate c + k * spacing, rounded twice (product, then sum) as
// PyTorch's elementwise ops compute it. On the device the intrinsics stop
// nvcc from contracting it into one fused multiply-add (--use_fast_math
// implies -fmad=true), which could move a coordinate that lands next to an
// integer to the other side of a bilinear cell border and so change the
// (one-sided) gradient and the validity flag.
C10_HOST_DEVICE inline float offset_coord(float c, float k, float spacing) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(c, __fmul_rn(k, spacing));
#else
  return c + k * spacing;
#endif
}
C10_HOST_DEVICE inline double offset_coord(double c, double k, double spacing) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(c, __dmul_rn(k, spacing));
#else
  return c + k * spacing;
#endif
}

template <typename T>
struct BilinearCorners {
  // Flat indices y * Ws + x into one source plane; -1 for a corner outside.
  int64_t i00, i01, i10, i11;  // (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  T wx0, wx1, wy0, wy1;
  // At least one corner lies inside the source (the point can contribute).
  bool active;
  // 0 <= sx <= Ws-1 and 0 <= sy <= Hs-1 (false for NaN).
  bool valid;
};

// Fills `o` for the sample point (sx, sy) in a source plane of size Hs x Ws.
// Points with no corner inside (including NaN / inf coordinates, which fail
// every comparison or lie outside) are inactive: all indices -1 and all weights 0. The
// float -> integer conversion only happens for active points, whose floor is
// within [-1, Ws-1] x [-1, Hs-1], so it can never overflow.
template <typename T>
C10_HOST_DEVICE inline void bilinear_corners(T sx, T sy, int64_t Hs, int64_t Ws,
                                             BilinearCorners<T>& o) {
  const T fw = static_cast<T>(Ws);
  const T fh = static_cast<T>(Hs);
  o.valid = (sx >= T(0)) && (sx <= fw - T(1)) && (sy >= T(0)) && (sy <= fh - T(1));
  // sx == -1 is active: x1 = 0 is inside with weight 0, but it still
  // carries the (one-sided) derivative with respect to sx.
  o.active = (sx >= T(-1)) && (sx < fw) && (sy >= T(-1)) && (sy < fh);
  o.i00 = o.i01 = o.i10 = o.i11 = -1;
  if (!o.active) {
    o.wx0 = o.wx1 = o.wy0 = o.wy1 = T(0);
    return;
  }
  const T fx0 = floor_op(sx);
  const T fy0 = floor_op(sy);
  o.wx1 = sx - fx0;
  o.wx0 = T(1) - o.wx1;
  o.wy1 = sy - fy0;
  o.wy0 = T(1) - o.wy1;
  const int64_t x0 = static_cast<int64_t>(fx0);
  const int64_t y0 = static_cast<int64_t>(fy0);
  const int64_t x1 = x0 + 1;
  const int64_t y1 = y0 + 1;
  const bool x0_in = x0 >= 0;  // x0 <= Ws - 1 holds for active points
  const bool x1_in = x1 < Ws;  // x1 >= 0 holds for active points
  const bool y0_in = y0 >= 0;
  const bool y1_in = y1 < Hs;
  if (y0_in && x0_in) o.i00 = y0 * Ws + x0;
  if (y0_in && x1_in) o.i01 = y0 * Ws + x1;
  if (y1_in && x0_in) o.i10 = y1 * Ws + x0;
  if (y1_in && x1_in) o.i11 = y1 * Ws + x1;
}

}  // namespace mast
