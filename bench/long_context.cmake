# The long-context attention sweep (bench_long_context): every core over 1k to 64k steps.
add_executable(bench_long_context bench_long_context.cpp)
target_link_libraries(bench_long_context PRIVATE nngraph_test_support nngraph_core nngraph_onednn benchmark::benchmark nngraph_build_options)
target_include_directories(bench_long_context PRIVATE ${PROJECT_SOURCE_DIR}/engine/src)
add_dependencies(bench_long_context nngraph_plugins)
