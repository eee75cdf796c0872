// Operator schemas of the mast extension and the Python module entry point.
//
// Importing ``mast._C`` runs the static initialisers below (and those of the
// TORCH_LIBRARY_IMPL blocks in kernels/cpu and kernels/cuda), which register
// the operators under ``torch.ops.mast``. Autograd formulas and fake (meta)
// kernels are registered from Python.
//
// Backward operators take ``output_mask`` (which input gradients autograd
// needs) and return undefined tensors (None in Python) for the others, which
// they do not compute.
#include <Python.h>

#include <torch/library.h>

TORCH_LIBRARY(mast, m) {
  m.def("local_correlation(Tensor query, Tensor key, int window, int dilation) -> Tensor");
  m.def(
      "local_correlation_backward(Tensor grad_output, Tensor query, Tensor key, int window, "
      "int dilation, bool[2] output_mask) -> (Tensor, Tensor)");
  m.def(
      "window_sample(Tensor source, Tensor centers, int window, float spacing) -> "
      "(Tensor, Tensor)");
  m.def(
      "window_sample_backward(Tensor grad_output, Tensor source, Tensor centers, int window, "
      "float spacing, bool[2] output_mask) -> (Tensor, Tensor)");
  m.def(
      "roi_correlation(Tensor query, Tensor key, Tensor centers, int window, float spacing) -> "
      "Tensor");
  m.def(
      "roi_correlation_backward(Tensor grad_output, Tensor query, Tensor key, Tensor centers, "
      "int window, float spacing, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}

namespace {

#ifdef MAST_WITH_CUDA
constexpr bool kWithCuda = true;
#else
constexpr bool kWithCuda = false;
#endif
// roi_correlation has CPU kernels only (kernels/cpu/roi_correlation.cpp); on
// CUDA, Python composes it from window_sample.
constexpr bool kFusedRoiCpu = true;
constexpr bool kFusedRoiCuda = false;

PyObject* py_bool(bool value) { return value ? Py_True : Py_False; }

// What this build offers, so that Python need not probe the dispatcher:
// {"cuda": CUDA kernels compiled in, "fused_roi": {"cpu": ..., "cuda": ...}}.
PyObject* capabilities(PyObject* /*module*/, PyObject* /*unused*/) {
  return Py_BuildValue("{s:O,s:{s:O,s:O}}", "cuda", py_bool(kWithCuda), "fused_roi", "cpu",
                       py_bool(kFusedRoiCpu), "cuda", py_bool(kFusedRoiCuda));
}

PyMethodDef mast_c_methods[] = {
    {"capabilities", capabilities, METH_NOARGS,
     "capabilities() -> dict: {'cuda': bool, 'fused_roi': {'cpu': bool, 'cuda': bool}}"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef mast_c_module = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "Compiled kernels of mast; importing registers the torch.ops.mast operators.",
    -1,
    mast_c_methods,
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&mast_c_module); }
