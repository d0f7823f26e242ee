#include "nngraph/safetensors.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "nngraph/error.hpp"
#include "nngraph/io_atomic_file.hpp"

namespace nngraph {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is read and written without byte swapping");

namespace {

using json = nlohmann::json;

constexpr std::uint64_t kLengthFieldBytes = 8;
// The reference implementation refuses larger headers; so does nngraph, rather than allocate them.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// A header nests three levels (the map, an entry, its shape); deeper input is refused while parsing.
constexpr int kMaxHeaderNesting = 8;
// Values, names and parser messages shown in errors are cut to this many bytes.
constexpr std::size_t kMaxQuotedBytes = 200;
constexpr std::uint64_t kDataAlignment = 8;
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kSupportedDtypes = "F32, I32, I64, U8";

// One tensor as the header describes it, validated.
struct HeaderEntry {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
};

// `text` for an error message, cut to kMaxQuotedBytes: headers are untrusted and may be huge.
std::string excerpt(const std::string& text) {
    if (text.size() <= kMaxQuotedBytes) return std::string(text);
    return std::string(text.substr(0, kMaxQuotedBytes)) + "... (" + std::to_string(text.size()) + " bytes)";
}

std::string excerpt(const json& value) { return excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace)); }

// Reports problems with one file, always naming it.
class FileProblems {
public:
    explicit FileProblems(const fs::path& path) : path_(path) {}

    [[noreturn]] void fail(const std::string& problem) const {
        throw InputError("bad safetensors file '" + path_.string() + "': " + problem);
    }
    [[noreturn]] void fail_tensor(const std::string& name, const std::string& problem) const {
        fail("tensor '" + excerpt(name) + "' " + problem);
    }

private:
    const fs::path& path_;
};

std::string offsets_text(std::uint64_t begin, std::uint64_t end) {
    // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string here.
    std::string text = "[";
    text += std::to_string(begin);
    text += ", ";
    text += std::to_string(end);
    text += "]";
    return text;
}

// Reads a non-negative integer the JSON stores in `value`, or fails with `what`.
std::uint64_t read_count(const json& value, const FileProblems& problems, const std::string& name,
                         const std::string& what) {
    if (!value.is_number_unsigned()) {
        problems.fail_tensor(name, "has " + what + " " + excerpt(value) + ", expected a non-negative integer");
    }
    return value.get<std::uint64_t>();
}

HeaderEntry parse_entry(const std::string& name, const json& description, std::uint64_t data_bytes,
                        const FileProblems& problems) {
    if (!description.is_object()) {
        problems.fail_tensor(name, "is described by " + excerpt(description) +
                                       ", expected an object with dtype, shape and data_offsets");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
        if (!description.contains(field)) problems.fail_tensor(name, "has no \"" + std::string(field) + "\"");
    }
    HeaderEntry entry;
    entry.name = name;

    const json& dtype = description["dtype"];
    if (!dtype.is_string() || !parse_dtype(dtype.get<std::string>(), entry.dtype)) {
        problems.fail_tensor(name,
                             "has dtype " + excerpt(dtype) + "; nngraph supports " + std::string(kSupportedDtypes));
    }

    const json& shape = description["shape"];
    if (!shape.is_array()) problems.fail_tensor(name, "has shape " + excerpt(shape) + ", expected a list of sizes");
    for (const json& dim : shape) {
        const std::uint64_t size = read_count(dim, problems, name, "a shape size");
        if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            problems.fail_tensor(name, "has shape size " + excerpt(dim) + ", which is too large");
        }
        entry.shape.push_back(static_cast<std::int64_t>(size));
    }

    const json& offsets = description["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2) {
        problems.fail_tensor(name, "has data_offsets " + excerpt(offsets) + ", expected [begin, end]");
    }
    entry.begin = read_count(offsets[0], problems, name, "a data offset");
    entry.end = read_count(offsets[1], problems, name, "a data offset");
    const std::string offsets_shown = offsets_text(entry.begin, entry.end);
    if (entry.end < entry.begin)
        problems.fail_tensor(name, "has data_offsets " + offsets_shown + " that end before they begin");

    const std::optional<std::uint64_t> expected = checked_byte_count(entry.shape, entry.dtype);
    const std::string layout = "shape " + shape_to_string(entry.shape) + " of " + std::string(dtype_name(entry.dtype));
    if (!expected) problems.fail_tensor(name, "has " + layout + ", which is too large");
    if (entry.end - entry.begin != *expected) {
        problems.fail_tensor(name, "has data_offsets " + offsets_shown + " (" +
                                       std::to_string(entry.end - entry.begin) + " bytes), but " + layout + " needs " +
                                       std::to_string(*expected) + " bytes");
    }
    if (entry.end > data_bytes) {
        problems.fail_tensor(name, "has data_offsets " + offsets_shown + " beyond the end of the data (" +
                                       std::to_string(data_bytes) + " bytes after the header): the file is truncated");
    }
    return entry;
}

std::map<std::string, std::string> parse_metadata(const json& metadata, const FileProblems& problems) {
    if (!metadata.is_object())
        problems.fail("\"__metadata__\" is " + excerpt(metadata) + ", expected an object of strings");
    std::map<std::string, std::string> result;
    for (const auto& [key, value] : metadata.items()) {
        if (!value.is_string()) {
            problems.fail("\"__metadata__\" entry '" + excerpt(key) + "' is " + excerpt(value) + ", expected a string");
        }
        result[key] = value.get<std::string>();
    }
    return result;
}

// nlohmann::json keeps the last of two equal keys silently; a file that names a tensor twice is broken.
json parse_header_json(const std::string& text, const FileProblems& problems) {
    std::set<std::string> names;
    std::string repeated_name;
    const json::parser_callback_t note_repeated_names = [&](int depth, json::parse_event_t event, json& parsed) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= kMaxHeaderNesting) {
            problems.fail("the JSON header nests deeper than " + std::to_string(kMaxHeaderNesting) + " levels");
        }
        if (event == json::parse_event_t::key && depth == 1 && !names.insert(parsed.get<std::string>()).second &&
            repeated_name.empty()) {
            repeated_name = parsed.get<std::string>();
        }
        return true;
    };
    json header;
    try {
        header = json::parse(text, note_repeated_names);
    } catch (const json::exception& error) {  // a syntax error, or a number out of double's range
        std::string message = error.what();
        // Drop nlohmann's "[json.exception.parse_error.101] " prefix; the rest says where and what.
        if (const auto bracket = message.find("] "); message.starts_with("[json.") && bracket != std::string::npos) {
            message.erase(0, bracket + 2);
        }
        problems.fail("the JSON header does not parse: " + excerpt(message));
    }
    if (!header.is_object())
        problems.fail("the JSON header is " + std::string(header.type_name()) + ", expected an object");
    if (!repeated_name.empty()) problems.fail("the JSON header names '" + excerpt(repeated_name) + "' twice");
    return header;
}

void check_no_overlap(std::vector<HeaderEntry>& entries, const FileProblems& problems) {
    std::sort(entries.begin(), entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
        return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
    });
    const HeaderEntry* previous = nullptr;
    for (const HeaderEntry& entry : entries) {
        if (entry.begin == entry.end) continue;  // an empty tensor occupies no bytes
        if (previous && entry.begin < previous->end) {
            problems.fail("tensors '" + excerpt(previous->name) + "' " + offsets_text(previous->begin, previous->end) +
                          " and '" + excerpt(entry.name) + "' " + offsets_text(entry.begin, entry.end) + " overlap");
        }
        previous = &entry;
    }
}

std::uint64_t decode_little_endian(const std::array<unsigned char, kLengthFieldBytes>& bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) value |= std::uint64_t{bytes[i]} << (8 * i);
    return value;
}

std::array<char, kLengthFieldBytes> encode_little_endian(std::uint64_t value) {
    std::array<char, kLengthFieldBytes> bytes{};
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
    return bytes;
}

}  // namespace

TensorFile read_safetensors(const fs::path& path) {
    const FileProblems problems(path);
    std::error_code error;
    const std::uint64_t file_bytes = fs::file_size(path, error);
    if (error) throw InputError("cannot read safetensors file '" + path.string() + "': " + error.message());
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError("cannot open safetensors file '" + path.string() + "'");

    if (file_bytes < kLengthFieldBytes) {
        problems.fail("it has " + std::to_string(file_bytes) + " bytes, fewer than the 8 of the header length");
    }
    std::array<unsigned char, kLengthFieldBytes> length_field{};
    in.read(reinterpret_cast<char*>(length_field.data()), length_field.size());
    const std::uint64_t header_bytes = decode_little_endian(length_field);
    if (header_bytes > file_bytes - kLengthFieldBytes) {
        problems.fail("the header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
                      std::to_string(file_bytes) + " bytes): the file is truncated or not safetensors");
    }
    if (header_bytes > kMaxHeaderBytes) {
        problems.fail("the header length " + std::to_string(header_bytes) + " exceeds the limit of " +
                      std::to_string(kMaxHeaderBytes) + " bytes");
    }
    std::string header_text(header_bytes, '\0');
    in.read(header_text.data(), static_cast<std::streamsize>(header_bytes));
    if (!in) problems.fail("reading the header failed");

    const json header = parse_header_json(header_text, problems);
    const std::uint64_t data_start = kLengthFieldBytes + header_bytes;
    const std::uint64_t data_bytes = file_bytes - data_start;

    TensorFile result;
    std::vector<HeaderEntry> entries;
    for (const auto& [key, value] : header.items()) {
        if (key == kMetadataKey) {
            result.metadata = parse_metadata(value, problems);
        } else {
            entries.push_back(parse_entry(key, value, data_bytes, problems));
        }
    }
    check_no_overlap(entries, problems);

    for (HeaderEntry& entry : entries) {
        Tensor tensor(entry.dtype, std::move(entry.shape));
        in.seekg(static_cast<std::streamoff>(data_start + entry.begin));
        in.read(static_cast<char*>(tensor.raw()), static_cast<std::streamsize>(tensor.nbytes()));
        if (!in)
            problems.fail_tensor(entry.name, "could not be read at offset " + std::to_string(data_start + entry.begin));
        result.tensors.emplace(std::move(entry.name), std::move(tensor));
    }
    return result;
}

void write_safetensors(const fs::path& path, const TensorFile& file) {
    using Item = std::map<std::string, Tensor>::value_type;
    std::vector<const Item*> layout;
    for (const Item& item : file.tensors) {
        if (item.first == kMetadataKey) {
            throw RunError("cannot write '" + path.string() + "': a tensor may not be named \"__metadata__\"");
        }
        if (item.second.empty()) {
            throw RunError("cannot write '" + path.string() + "': tensor '" + item.first + "' has no data");
        }
        layout.push_back(&item);
    }
    // Largest elements first: with the data start 8-byte aligned, every tensor is then aligned too.
    std::stable_sort(layout.begin(), layout.end(), [](const Item* a, const Item* b) {
        return dtype_size(a->second.dtype()) > dtype_size(b->second.dtype());
    });

    // Ordered so the header reads as the data is laid out, metadata first as the reference writer does.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!file.metadata.empty()) header[std::string(kMetadataKey)] = file.metadata;
    std::uint64_t offset = 0;
    for (const Item* item : layout) {
        const Tensor& tensor = item->second;
        const std::uint64_t end = offset + tensor.nbytes();
        header[item->first] = {{"dtype", dtype_name(tensor.dtype())},
                               {"shape", tensor.shape()},
                               {"data_offsets", nlohmann::ordered_json::array({offset, end})}};
        offset = end;
    }
    std::string header_text;
    try {
        header_text = header.dump();
    } catch (const nlohmann::json::exception& error) {
        throw RunError("cannot write '" + path.string() + "': a tensor name or metadata string is not valid UTF-8 (" +
                       error.what() + ")");
    }
    const std::uint64_t unaligned = kLengthFieldBytes + header_text.size();
    header_text.append((kDataAlignment - unaligned % kDataAlignment) % kDataAlignment, ' ');

    write_file_atomically(path, [&](std::ostream& out) {
        out.write(encode_little_endian(header_text.size()).data(), kLengthFieldBytes);
        out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
        for (const Item* item : layout) {
            out.write(static_cast<const char*>(item->second.raw()),
                      static_cast<std::streamsize>(item->second.nbytes()));
        }
    });
}

}  // namespace nngraph
