# cmake -DINPUT=kernels.ptx -DOUTPUT=ptx_embedded.cpp -P embed_ptx.cmake
# Writes the PTX text as a NUL-terminated char array (sparse24::cuda::kPtx): hex bytes, so
# no escaping and no compiler string-literal length limit.
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}" "// Generated from ${INPUT} by cmake/embed_ptx.cmake; do not edit.\n"
  "#include \"sparse24_cuda.h\"\n\nnamespace sparse24::cuda {\n\nextern const char kPtx[] = {\n${bytes}0x00};\n\n}  // namespace sparse24::cuda\n")
