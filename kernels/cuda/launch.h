// Launch geometry shared by the CUDA kernels (plain C++: no device code).
#pragma once

#include <algorithm>
#include <cstdint>

namespace mast {

// Threads per block of every kernel.
constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (the grid is capped; the
// kernels loop).
inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 1 << 20));
}

}  // namespace mast
