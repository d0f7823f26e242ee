#include "data/text_file.hpp"

#include <cerrno>
#include <fstream>
#include <system_error>

#include "nngraph/error.hpp"

namespace nngraph {

void read_whole_file(const std::filesystem::path& path, std::string& contents) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw InputError("cannot open '" + path.string() + "': " + std::generic_category().message(errno));
    contents.resize(static_cast<std::size_t>(in.tellg()));
    in.seekg(0);
    in.read(contents.data(), static_cast<std::streamsize>(contents.size()));
    if (!in) throw InputError("cannot read '" + path.string() + "'");
}

}  // namespace nngraph
