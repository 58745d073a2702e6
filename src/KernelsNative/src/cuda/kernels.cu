// The one PTX module libserving_kernels.so embeds: the 2:4 matmul kernels and the
// paged-attention kernels (a PTX file has one .version / .target header, so one TU).
#include "sparse24_kernels.cu"
#include "paged_attention_kernels.cu"
