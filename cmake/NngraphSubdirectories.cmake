# nngraph_add_every_subdirectory([FIRST folder...] [EXCLUDE folder...]): adds every folder of the
# current source folder, the FIRST ones (which the others link) before the rest in name order.
# EXCLUDE names folders that are not built this way (shared sources, fixtures, optional parts).
# A folder without a CMakeLists.txt stops the configure, since it would otherwise build nothing
# without a word.
function(nngraph_add_every_subdirectory)
  cmake_parse_arguments(ARG "" "" "FIRST;EXCLUDE" ${ARGN})
  file(GLOB entries LIST_DIRECTORIES true RELATIVE ${CMAKE_CURRENT_SOURCE_DIR} CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/*)
  list(SORT entries)
  set(folders ${ARG_FIRST})
  foreach(entry IN LISTS entries)
    if(IS_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/${entry} AND NOT entry MATCHES "^\\." AND NOT entry IN_LIST ARG_FIRST
       AND NOT entry IN_LIST ARG_EXCLUDE)
      list(APPEND folders ${entry})
    endif()
  endforeach()
  foreach(folder IN LISTS folders)
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${folder}/CMakeLists.txt)
      message(FATAL_ERROR "${CMAKE_CURRENT_SOURCE_DIR}/${folder} has no CMakeLists.txt: every folder there is "
                          "built by its own CMakeLists.txt. Add one, or move the folder elsewhere.")
    endif()
    add_subdirectory(${folder})
  endforeach()
endfunction()
