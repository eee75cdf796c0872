// Shared declarations and argument checks for the mast operators.
//
// Included by kernels/ops.cpp, kernels/cpu/*.cpp and kernels/cuda/*.cu. It only
// uses device-agnostic ATen API, so nvcc can compile it as well.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <tuple>
#include <utility>

namespace mast {

// Offset index convention shared by all kernels:
//   r = window / 2, p = (dy + r) * window + (dx + r), dy, dx in [-r, r].

// A backward's gradient when autograd asked for it, else an undefined tensor
// (None in Python).
inline at::Tensor if_needed(bool needed, at::Tensor grad) {
  return needed ? std::move(grad) : at::Tensor();
}

inline void check_window(int64_t window) {
  TORCH_CHECK(window >= 1 && window % 2 == 1,
              "mast: window must be an odd integer >= 1, got ", window);
}

inline void check_same(const at::Tensor& a, const char* a_name,
                       const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), "mast: ", a_name, " and ", b_name,
              " must be on the same device, got ", a.device(), " and ", b.device());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "mast: ", a_name, " and ", b_name,
              " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

inline void check_local_correlation_args(const at::Tensor& query, const at::Tensor& key,
                                         int64_t window, int64_t dilation) {
  TORCH_CHECK(query.dim() == 4, "mast::local_correlation: query must be (B, C, H, W), got ",
              query.sizes());
  TORCH_CHECK(key.dim() == 4, "mast::local_correlation: key must be (B, C, H, W), got ",
              key.sizes());
  TORCH_CHECK(query.sizes() == key.sizes(),
              "mast::local_correlation: query and key must have the same shape, got ",
              query.sizes(), " and ", key.sizes());
  check_same(query, "query", key, "key");
  TORCH_CHECK(at::isFloatingType(query.scalar_type()),
              "mast::local_correlation: expected a floating point dtype, got ",
              query.scalar_type());
  check_window(window);
  TORCH_CHECK(dilation >= 1, "mast::local_correlation: dilation must be >= 1, got ", dilation);
}

inline void check_local_correlation_backward_args(const at::Tensor& grad_output,
                                                  const at::Tensor& query,
                                                  const at::Tensor& key, int64_t window,
                                                  int64_t dilation) {
  check_local_correlation_args(query, key, window, dilation);
  TORCH_CHECK(grad_output.dim() == 4,
              "mast::local_correlation_backward: grad_output must be (B, P2, H, W), got ",
              grad_output.sizes());
  TORCH_CHECK(grad_output.size(0) == query.size(0) &&
                  grad_output.size(1) == window * window &&
                  grad_output.size(2) == query.size(2) && grad_output.size(3) == query.size(3),
              "mast::local_correlation_backward: grad_output must have shape (",
              query.size(0), ", ", window * window, ", ", query.size(2), ", ", query.size(3),
              "), got ", grad_output.sizes());
  check_same(grad_output, "grad_output", query, "query");
}

inline void check_window_sample_args(const at::Tensor& source, const at::Tensor& centers,
                                     int64_t window, double spacing) {
  TORCH_CHECK(source.dim() == 4, "mast::window_sample: source must be (B, C, Hs, Ws), got ",
              source.sizes());
  TORCH_CHECK(centers.dim() == 4 && centers.size(1) == 2,
              "mast::window_sample: centers must be (B, 2, H, W), got ", centers.sizes());
  TORCH_CHECK(centers.size(0) == source.size(0),
              "mast::window_sample: source and centers must have the same batch size, got ",
              source.size(0), " and ", centers.size(0));
  TORCH_CHECK(source.device() == centers.device(),
              "mast: source and centers must be on the same device, got ", source.device(),
              " and ", centers.device());
  TORCH_CHECK(at::isFloatingType(source.scalar_type()),
              "mast::window_sample: expected a floating point dtype, got ", source.scalar_type());
  // centers share the source dtype, except that half-precision sources may
  // (and from the Python wrapper do) come with float32 coordinates.
  const bool half_source = source.scalar_type() == at::kHalf ||
                           source.scalar_type() == at::kBFloat16;
  TORCH_CHECK(centers.scalar_type() == source.scalar_type() ||
                  (half_source && centers.scalar_type() == at::kFloat),
              "mast::window_sample: centers must have the dtype of source (or float32 for a "
              "float16/bfloat16 source), got source ", source.scalar_type(), " and centers ",
              centers.scalar_type());
  check_window(window);
  TORCH_CHECK(spacing > 0.0, "mast::window_sample: spacing must be > 0, got ", spacing);
}

inline void check_window_sample_backward_args(const at::Tensor& grad_output,
                                              const at::Tensor& source,
                                              const at::Tensor& centers, int64_t window,
                                              double spacing) {
  check_window_sample_args(source, centers, window, spacing);
  TORCH_CHECK(grad_output.dim() == 5,
              "mast::window_sample_backward: grad_output must be (B, C, P2, H, W), got ",
              grad_output.sizes());
  TORCH_CHECK(grad_output.size(0) == source.size(0) && grad_output.size(1) == source.size(1) &&
                  grad_output.size(2) == window * window &&
                  grad_output.size(3) == centers.size(2) &&
                  grad_output.size(4) == centers.size(3),
              "mast::window_sample_backward: grad_output must have shape (", source.size(0),
              ", ", source.size(1), ", ", window * window, ", ", centers.size(2), ", ",
              centers.size(3), "), got ", grad_output.sizes());
  check_same(grad_output, "grad_output", source, "source");
}

inline void check_roi_correlation_args(const at::Tensor& query, const at::Tensor& key,
                                       const at::Tensor& centers, int64_t window,
                                       double spacing) {
  TORCH_CHECK(query.dim() == 4, "mast::roi_correlation: query must be (B, C, H, W), got ",
              query.sizes());
  check_window_sample_args(key, centers, window, spacing);
  TORCH_CHECK(query.size(0) == key.size(0) && query.size(1) == key.size(1) &&
                  query.size(2) == centers.size(2) && query.size(3) == centers.size(3),
              "mast::roi_correlation: query must be (B, C, H, W) = (", key.size(0), ", ",
              key.size(1), ", ", centers.size(2), ", ", centers.size(3), "), got ", query.sizes());
  check_same(query, "query", key, "key");
  TORCH_CHECK(centers.scalar_type() == query.scalar_type(),
              "mast::roi_correlation: centers must have the dtype of query, got ",
              centers.scalar_type(), " and ", query.scalar_type());
}

inline void check_roi_correlation_backward_args(const at::Tensor& grad_output,
                                                const at::Tensor& query, const at::Tensor& key,
                                                const at::Tensor& centers, int64_t window,
                                                double spacing) {
  check_roi_correlation_args(query, key, centers, window, spacing);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == query.size(0) &&
                  grad_output.size(1) == window * window && grad_output.size(2) == query.size(2) &&
                  grad_output.size(3) == query.size(3),
              "mast::roi_correlation_backward: grad_output must have shape (", query.size(0),
              ", ", window * window, ", ", query.size(2), ", ", query.size(3), "), got ",
              grad_output.sizes());
  check_same(grad_output, "grad_output", query, "query");
}

// CPU implementations (kernels/cpu).
at::Tensor local_correlation_cpu(const at::Tensor& query, const at::Tensor& key,
                                 int64_t window, int64_t dilation);
std::tuple<at::Tensor, at::Tensor> local_correlation_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key,
    int64_t window, int64_t dilation, std::array<bool, 2> output_mask);
std::tuple<at::Tensor, at::Tensor> window_sample_cpu(const at::Tensor& source,
                                                     const at::Tensor& centers,
                                                     int64_t window, double spacing);
std::tuple<at::Tensor, at::Tensor> window_sample_backward_cpu(const at::Tensor& grad_output,
                                                              const at::Tensor& source,
                                                              const at::Tensor& centers,
                                                              int64_t window, double spacing,
                                                              std::array<bool, 2> output_mask);

at::Tensor roi_correlation_cpu(const at::Tensor& query, const at::Tensor& key,
                               const at::Tensor& centers, int64_t window, double spacing);
std::tuple<at::Tensor, at::Tensor, at::Tensor> roi_correlation_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key,
    const at::Tensor& centers, int64_t window, double spacing, std::array<bool, 3> output_mask);

// CUDA implementations (kernels/cuda), only compiled when MAST_WITH_CUDA is set.
at::Tensor local_correlation_cuda(const at::Tensor& query, const at::Tensor& key,
                                  int64_t window, int64_t dilation);
std::tuple<at::Tensor, at::Tensor> local_correlation_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& query, const at::Tensor& key,
    int64_t window, int64_t dilation, std::array<bool, 2> output_mask);
std::tuple<at::Tensor, at::Tensor> window_sample_cuda(const at::Tensor& source,
                                                      const at::Tensor& centers,
                                                      int64_t window, double spacing);
std::tuple<at::Tensor, at::Tensor> window_sample_backward_cuda(const at::Tensor& grad_output,
                                                               const at::Tensor& source,
                                                               const at::Tensor& centers,
                                                               int64_t window, double spacing,
                                                               std::array<bool, 2> output_mask);

}  // namespace mast
