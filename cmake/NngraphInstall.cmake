# Installation: the engine (bin/nngraph, lib/libnngraph.so), its plugins (lib/nngraph/plugins), the
# public C++ API's headers, and for plugin authors the SDK headers, the shared oneDNN helper and a
# CMake package, so that after find_package(nngraph)
#   target_link_libraries(my_program PRIVATE nngraph::nngraph)  builds a program embedding nngraph, and
#   target_link_libraries(my_plugin PRIVATE nngraph::sdk [nngraph::onednn])  builds a plugin,
# outside this tree.
include(CMakePackageConfigHelpers)

set(NNGRAPH_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/nngraph)
set_target_properties(nngraph_core PROPERTIES EXPORT_NAME core)
set_target_properties(nngraph_api PROPERTIES EXPORT_NAME nngraph)
set_target_properties(nngraph_sdk PROPERTIES EXPORT_NAME sdk)
set_target_properties(nngraph_onednn PROPERTIES EXPORT_NAME onednn)
set_target_properties(nngraph_build_options PROPERTIES EXPORT_NAME build_options)

install(TARGETS nngraph_core EXPORT nngraphTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS nngraph_api nngraph_sdk nngraph_onednn nngraph_build_options EXPORT nngraphTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/engine/include/nngraph ${PROJECT_SOURCE_DIR}/plugins/onednn/include/nngraph
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT nngraphTargets NAMESPACE nngraph:: DESTINATION ${NNGRAPH_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/nngraphConfig.cmake.in
  ${PROJECT_BINARY_DIR}/nngraphConfig.cmake INSTALL_DESTINATION ${NNGRAPH_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/nngraphConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/nngraphConfig.cmake ${PROJECT_BINARY_DIR}/nngraphConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/FindOneDNN.cmake DESTINATION ${NNGRAPH_CMAKE_DIR})
