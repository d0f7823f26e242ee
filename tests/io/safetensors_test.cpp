#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nngraph/error.hpp"
#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"

using namespace std::string_literals;
using nngraph::DType;
using nngraph::Tensor;
using nngraph::TensorFile;
using nngraph::testing::read_bytes;
using nngraph::testing::TempDir;
using nngraph::testing::write_bytes;

namespace {

// A safetensors file from a header and data given as text: the length field is computed, nothing is checked.
std::string file_bytes(const std::string& header, const std::string& data = "") {
    std::string bytes(8, '\0');
    for (std::size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return bytes + header + data;
}

// The message of the InputError that reading `bytes` raises, or "" when it reads fine.
std::string read_error(const TempDir& dir, const std::string& bytes) {
    const auto path = dir / "broken.safetensors";
    write_bytes(path, bytes);
    try {
        nngraph::read_safetensors(path);
    } catch (const nngraph::InputError& error) {
        return error.what();
    }
    return "";
}

template <class T>
void check_same_values(const Tensor& actual, const Tensor& expected) {
    REQUIRE(actual.dtype() == expected.dtype());
    CHECK(actual.shape() == expected.shape());
    const auto a = actual.values<T>();
    const auto e = expected.values<T>();
    CHECK(std::vector<T>(a.begin(), a.end()) == std::vector<T>(e.begin(), e.end()));
}

}  // namespace

TEST_CASE("safetensors round trip keeps every dtype, scalars, empty tensors and metadata") {
    TempDir dir;
    TensorFile file;
    const std::vector<float> floats = {0.5f, -1.25f, std::numeric_limits<float>::max(), 1e-30f, 0.0f, 3.0f};
    const std::vector<std::int32_t> ints = {std::numeric_limits<std::int32_t>::min(), -1, 0, 7};
    const std::vector<std::int64_t> longs = {std::numeric_limits<std::int64_t>::max(), -5};
    const std::vector<std::uint8_t> bytes = {0, 1, 255};
    const std::vector<float> one_float = {42.0f};
    const std::vector<std::int64_t> one_long = {-9};
    file.tensors["dense.kernel"] = Tensor::from<float>({2, 3}, floats);
    file.tensors["ids"] = Tensor::from<std::int32_t>({4}, ints);
    file.tensors["step"] = Tensor::from<std::int64_t>({2, 1}, longs);
    file.tensors["mask"] = Tensor::from<std::uint8_t>({3}, bytes);
    file.tensors["loss"] = Tensor::from<float>({}, one_float);
    file.tensors["epoch"] = Tensor::from<std::int64_t>({}, one_long);
    file.tensors["nothing"] = Tensor(DType::F32, {0, 3});
    file.metadata = {{"format", "pt"}, {"nngraph.epoch", "3"}, {"note", "caf\xc3\xa9"}};

    const auto path = dir / "all.safetensors";
    nngraph::write_safetensors(path, file);
    const TensorFile back = nngraph::read_safetensors(path);

    CHECK(back.metadata == file.metadata);
    REQUIRE(back.tensors.size() == file.tensors.size());
    check_same_values<float>(back.tensors.at("dense.kernel"), file.tensors.at("dense.kernel"));
    check_same_values<std::int32_t>(back.tensors.at("ids"), file.tensors.at("ids"));
    check_same_values<std::int64_t>(back.tensors.at("step"), file.tensors.at("step"));
    check_same_values<std::uint8_t>(back.tensors.at("mask"), file.tensors.at("mask"));
    check_same_values<float>(back.tensors.at("loss"), file.tensors.at("loss"));
    check_same_values<std::int64_t>(back.tensors.at("epoch"), file.tensors.at("epoch"));
    CHECK(back.tensors.at("nothing").shape() == nngraph::Shape{0, 3});
    CHECK(back.tensors.at("loss").rank() == 0);
}

TEST_CASE("safetensors files without tensors or metadata round trip") {
    TempDir dir;
    const auto path = dir / "empty.safetensors";
    nngraph::write_safetensors(path, TensorFile{});
    CHECK(read_bytes(path) == file_bytes("{}      "));
    const TensorFile back = nngraph::read_safetensors(path);
    CHECK(back.tensors.empty());
    CHECK(back.metadata.empty());
}

TEST_CASE("safetensors bytes match a hand-built file both ways") {
    // Header length 152 = 0x98: 145 bytes of JSON padded with 7 spaces so the data starts at byte 160.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"weights":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("flag":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})"
        "       ";
    const std::string expected = "\x98\0\0\0\0\0\0\0"s + header + "\x00\x00\x80\x3f"s  // 1.0f
                                 + "\x00\x00\x00\xc0"s                                 // -2.0f
                                 + "\x07"s;
    REQUIRE(header.size() == 152);

    TempDir dir;
    const auto hand_built = dir / "hand.safetensors";
    write_bytes(hand_built, expected);
    const TensorFile read = nngraph::read_safetensors(hand_built);
    CHECK(read.metadata == std::map<std::string, std::string>{{"format", "pt"}});
    const auto weights = read.tensors.at("weights").values<float>();
    CHECK(std::vector<float>(weights.begin(), weights.end()) == std::vector<float>{1.0f, -2.0f});
    CHECK(read.tensors.at("flag").shape().empty());
    CHECK(read.tensors.at("flag").values<std::uint8_t>()[0] == 7);

    const auto written = dir / "written.safetensors";
    nngraph::write_safetensors(written, read);
    CHECK(read_bytes(written) == expected);
}

TEST_CASE("safetensors writer aligns the data and every tensor to its element size") {
    TempDir dir;
    TensorFile file;
    file.tensors["a_bytes"] = Tensor(DType::U8, {3});
    file.tensors["b_floats"] = Tensor(DType::F32, {5});
    file.tensors["c_longs"] = Tensor(DType::I64, {2});
    file.tensors["d_ints"] = Tensor(DType::I32, {1});
    const auto path = dir / "aligned.safetensors";
    nngraph::write_safetensors(path, file);

    const std::string bytes = read_bytes(path);
    std::uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = header_length << 8 | static_cast<unsigned char>(bytes[i]);
    CHECK((8 + header_length) % 8 == 0);
    const auto header = nlohmann::json::parse(bytes.substr(8, header_length));
    for (const auto& [name, tensor] : file.tensors) {
        const auto begin = header[name]["data_offsets"][0].get<std::uint64_t>();
        CHECK_MESSAGE(begin % nngraph::dtype_size(tensor.dtype()) == 0, name);
    }
}

TEST_CASE("safetensors reader names the file, the tensor and what was expected") {
    TempDir dir;
    const std::string good_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    const std::string eight_bytes(8, '\0');

    SUBCASE("a file shorter than the length field") {
        const std::string message = read_error(dir, "abc");
        CHECK(message.find("broken.safetensors") != std::string::npos);
        CHECK(message.find("fewer than the 8") != std::string::npos);
    }
    SUBCASE("a header length beyond the file") {
        std::string bytes = file_bytes("{}");
        bytes[0] = '\x10';
        bytes[1] = '\x27';  // 10000
        CHECK(read_error(dir, bytes).find("header length 10000 runs past the end of the file") != std::string::npos);
    }
    SUBCASE("bad JSON") {
        const std::string message = read_error(dir, file_bytes(R"({"w": {"dtype": )"));
        CHECK(message.find("JSON header does not parse") != std::string::npos);
        CHECK(message.find("column") != std::string::npos);
    }
    SUBCASE("a header that is not an object") {
        CHECK(read_error(dir, file_bytes("[1, 2]")).find("is array, expected an object") != std::string::npos);
    }
    SUBCASE("an unsupported dtype names the tensor, the dtype and the supported ones") {
        for (const std::string dtype : {"F16", "F64", "BF16"}) {
            const std::string message = read_error(
                dir,
                file_bytes(R"({"half":{"dtype":")" + dtype + R"(","shape":[1],"data_offsets":[0,2]}})", "12345678"));
            CHECK(message.find("tensor 'half'") != std::string::npos);
            CHECK(message.find(dtype) != std::string::npos);
            CHECK(message.find("supports F32, I32, I64, U8") != std::string::npos);
        }
    }
    SUBCASE("offsets that do not match shape and dtype") {
        const std::string message =
            read_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight_bytes));
        CHECK(message.find("tensor 'w'") != std::string::npos);
        CHECK(message.find("(8 bytes), but shape (3,) of F32 needs 12 bytes") != std::string::npos);
    }
    SUBCASE("offsets beyond the data") {
        const std::string message =
            read_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", eight_bytes));
        CHECK(message.find("tensor 'w'") != std::string::npos);
        CHECK(message.find("beyond the end of the data (8 bytes after the header)") != std::string::npos);
    }
    SUBCASE("offsets that end before they begin") {
        CHECK(read_error(dir, file_bytes(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", eight_bytes))
                  .find("end before they begin") != std::string::npos);
    }
    SUBCASE("overlapping tensors") {
        const std::string message =
            read_error(dir, file_bytes(R"({"a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]}})",
                                       eight_bytes + eight_bytes));
        CHECK(message.find("tensors 'a' [0, 8] and 'b' [4, 12] overlap") != std::string::npos);
    }
    SUBCASE("a truncated file") {
        TensorFile file;
        file.tensors["dense.kernel"] = Tensor(DType::F32, {16, 16});
        const auto path = dir / "whole.safetensors";
        nngraph::write_safetensors(path, file);
        const std::string bytes = read_bytes(path);
        const std::string message = read_error(dir, bytes.substr(0, bytes.size() - 100));
        CHECK(message.find("tensor 'dense.kernel'") != std::string::npos);
        CHECK(message.find("truncated") != std::string::npos);
    }
    SUBCASE("malformed entries") {
        CHECK(read_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[2]}})")).find("has no \"data_offsets\"") !=
              std::string::npos);
        CHECK(read_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight_bytes))
                  .find("expected a non-negative integer") != std::string::npos);
        CHECK(read_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight_bytes))
                  .find("expected [begin, end]") != std::string::npos);
        CHECK(read_error(dir, file_bytes(R"({"w":[1]})")).find("expected an object with dtype") != std::string::npos);
        CHECK(
            read_error(dir, file_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
                                       eight_bytes))
                .find("too large") != std::string::npos);
    }
    SUBCASE("a tensor named twice") {
        CHECK(read_error(dir, file_bytes("{" + good_entry + "," + good_entry + "}", eight_bytes))
                  .find("names 'w' twice") != std::string::npos);
    }
    SUBCASE("metadata that is not a map of strings") {
        CHECK(read_error(dir, file_bytes(R"({"__metadata__":{"epoch":3}})")).find("'epoch' is 3, expected a string") !=
              std::string::npos);
    }
    SUBCASE("a missing file") {
        CHECK_THROWS_WITH_AS(nngraph::read_safetensors(dir / "absent.safetensors"),
                             doctest::Contains("absent.safetensors"), nngraph::InputError);
    }
    SUBCASE("the well-formed variant of these files reads") {
        CHECK(read_error(dir, file_bytes("{" + good_entry + "}", eight_bytes)).empty());
    }
}

TEST_CASE("safetensors reader bounds the nesting of the header and quotes untrusted text in part") {
    TempDir dir;
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    for (const std::string& header : {R"({"w":)" + deep + "}", R"({"__metadata__":{"k":)" + deep + "}}", deep}) {
        const std::string message = read_error(dir, file_bytes(header));
        CHECK(message.find("the JSON header nests deeper than 8 levels") != std::string::npos);
        CHECK(message.size() < 300);
    }

    const std::string long_text(100000, 'x');
    const std::string eight_bytes(8, '\0');
    const std::vector<std::string> headers = {
        R"({"w":{"dtype":")" + long_text + R"(","shape":[2],"data_offsets":[0,8]}})",    // a value
        R"({")" + long_text + R"(":{"dtype":"F32","shape":[2]}})",                       // a tensor name
        R"({"__metadata__":{")" + long_text + R"(":1}})",                                // a metadata key
        R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "v": ")" + long_text,  // a parser message
    };
    for (const std::string& header : headers) {
        const std::string message = read_error(dir, file_bytes(header, eight_bytes));
        CHECK(message.find("broken.safetensors") != std::string::npos);
        CHECK(message.find("xxxxx") != std::string::npos);
        CHECK(message.size() < 500);
    }
}

TEST_CASE("safetensors writer refuses a tensor without data and leaves the old file intact") {
    TempDir dir;
    const auto path = dir / "checkpoint.safetensors";
    TensorFile old_file;
    old_file.tensors["w"] = Tensor(DType::F32, {2});
    nngraph::write_safetensors(path, old_file);
    const std::string old_bytes = read_bytes(path);

    TensorFile bad = old_file;
    bad.tensors["hollow"] = Tensor();
    CHECK_THROWS_WITH_AS(nngraph::write_safetensors(path, bad), doctest::Contains("tensor 'hollow' has no data"),
                         nngraph::RunError);
    CHECK(read_bytes(path) == old_bytes);
    CHECK(dir.listing() == std::vector<std::string>{"checkpoint.safetensors"});
}
