// A source whose folder has no CMakeLists.txt.
