# Compiler settings shared by every target: warnings on, sanitizers on request.
add_library(nngraph_build_options INTERFACE)
target_compile_options(nngraph_build_options INTERFACE -Wall -Wextra -Wpedantic -Wno-unused-parameter -Wno-missing-field-initializers)
# Nothing reads errno after a math call, and keeping it set stops sqrt and friends from
# vectorising: a loop over them runs scalar with a branch per element.
target_compile_options(nngraph_build_options INTERFACE -fno-math-errno)
if(NNGRAPH_NATIVE)
  target_compile_options(nngraph_build_options INTERFACE -march=native)
endif()

if(NNGRAPH_SANITIZE)
  # Applied globally so that plugins, the core and test fixtures agree on one runtime.
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

option(NNGRAPH_FUZZ "Build the libFuzzer targets of tests/fuzz (clang only), with everything under ASan and UBSan" OFF)
if(NNGRAPH_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "NNGRAPH_FUZZ needs clang (libFuzzer); configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  # Coverage counters in the engine and the plugins too, so the fuzzer steers by what they do;
  # only the fuzz targets link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
