// Operator schemas of the mast extension and the Python module entry point.
//
// Importing ``mast._C`` runs the static initialisers below (and those of the
// TORCH_LIBRARY_IMPL blocks in kernels/cpu and kernels/cuda), which register
// the operators under ``torch.ops.mast``. Autograd formulas and fake (meta)
// kernels are registered from Python.
#include <Python.h>

#include <torch/library.h>

TORCH_LIBRARY(mast, m) {
  m.def("local_correlation(Tensor query, Tensor key, int window, int dilation) -> Tensor");
  m.def(
      "local_correlation_backward(Tensor grad_output, Tensor query, Tensor key, int window, "
      "int dilation) -> (Tensor, Tensor)");
  m.def(
      "window_sample(Tensor source, Tensor centers, int window, float spacing) -> "
      "(Tensor, Tensor)");
  m.def(
      "window_sample_backward(Tensor grad_output, Tensor source, Tensor centers, int window, "
      "float spacing) -> (Tensor, Tensor)");
  m.def(
      "roi_correlation(Tensor query, Tensor key, Tensor centers, int window, float spacing) -> "
      "Tensor");
  m.def(
      "roi_correlation_backward(Tensor grad_output, Tensor query, Tensor key, Tensor centers, "
      "int window, float spacing) -> (Tensor, Tensor, Tensor)");
}

namespace {

PyModuleDef mast_c_module = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "Compiled kernels of mast; importing registers the torch.ops.mast operators.",
    -1,
    nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&mast_c_module);
  if (module == nullptr) {
    return nullptr;
  }
#ifdef MAST_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  // ``mast._C.WITH_CUDA`` tells whether the CUDA kernels were compiled in.
  if (PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
