# Finds oneDNN (libdnnl) and defines OneDNN::dnnl.
# Debian's own dnnl-config.cmake also demands the OpenCL development files (its build enables the
# GPU runtime), which nngraph never uses; finding the CPU library directly avoids that dependency.
find_path(OneDNN_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(OneDNN_LIBRARY NAMES dnnl)
if(OneDNN_INCLUDE_DIR AND EXISTS "${OneDNN_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h")
  file(STRINGS "${OneDNN_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _versions REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_line IN LISTS _versions)
    string(REGEX MATCH "(MAJOR|MINOR|PATCH) +([0-9]+)" _ "${_line}")
    set(_dnnl_${CMAKE_MATCH_1} ${CMAKE_MATCH_2})
  endforeach()
  set(OneDNN_VERSION "${_dnnl_MAJOR}.${_dnnl_MINOR}.${_dnnl_PATCH}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OneDNN REQUIRED_VARS OneDNN_LIBRARY OneDNN_INCLUDE_DIR VERSION_VAR OneDNN_VERSION)
if(OneDNN_FOUND AND NOT TARGET OneDNN::dnnl)
  add_library(OneDNN::dnnl UNKNOWN IMPORTED)
  set_target_properties(OneDNN::dnnl PROPERTIES
    IMPORTED_LOCATION "${OneDNN_LIBRARY}" INTERFACE_INCLUDE_DIRECTORIES "${OneDNN_INCLUDE_DIR}")
endif()
