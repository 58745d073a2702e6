// The PagedAttention op (attention_op.cpp), registered by custom_op.cpp beside SparseMatMul24.
#pragma once

#include <onnxruntime_c_api.h>

#include <vector>

// kv_pool float, then float16. They live as long as the process: ONNX Runtime keeps the
// pointers in every session.
const std::vector<OrtCustomOp*>& paged_attention_custom_ops();
