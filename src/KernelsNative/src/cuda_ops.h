// The ops' kernels for ONNX Runtime's CUDA execution provider (cuda_ops.cpp), registered by
// custom_op.cpp in the same domain as the CPU kernels.
#pragma once

#include <onnxruntime_c_api.h>

#include <vector>

// SparseMatMul24 (fp32, fp16) and PagedAttention for "CUDAExecutionProvider". They live as
// long as the process: ONNX Runtime keeps the pointers in every session.
std::vector<OrtCustomOp*> cuda_custom_ops();
