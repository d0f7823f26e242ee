# Compiler settings shared by every target: warnings on, sanitizers on request.
add_library(nngraph_build_options INTERFACE)
target_compile_options(nngraph_build_options INTERFACE -Wall -Wextra -Wpedantic -Wno-unused-parameter -Wno-missing-field-initializers)
if(NNGRAPH_NATIVE)
  target_compile_options(nngraph_build_options INTERFACE -march=native)
endif()

if(NNGRAPH_SANITIZE)
  # Applied globally so that plugins, the core and test fixtures agree on one runtime.
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
