// The PagedAttention op (attention_op.cpp), registered by custom_op.cpp beside SparseMatMul24.
#pragma once

#include <onnxruntime_c_api.h>

// Lives as long as the process: ONNX Runtime keeps the pointer in every session.
OrtCustomOp* paged_attention_custom_op();
