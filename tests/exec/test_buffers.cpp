// Tensors, the arena and the oneDNN helper's scratch take their memory from allocate_buffer:
// 64-byte lines for small blocks, whole transparent huge pages for large ones.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "nngraph/buffer.hpp"
#include "nngraph/tensor.hpp"

using namespace nngraph;

namespace {

std::uintptr_t address_of(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// The VmFlags line of the mapping that holds `p` in /proc/self/smaps, or "" when there is none.
std::string mapping_flags(const void* p) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool inside = false;
    while (std::getline(smaps, line)) {
        std::uintptr_t start = 0, end = 0;
        char dash = 0;
        std::istringstream header(line);
        if (header >> std::hex >> start >> dash >> end && dash == '-') {
            inside = start <= address_of(p) && address_of(p) < end;
        } else if (inside && line.rfind("VmFlags:", 0) == 0) {
            return line;
        }
    }
    return "";
}

// Whether the kernel would honour a request for transparent huge pages.
bool kernel_offers_huge_pages() {
    std::ifstream setting("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string text;
    std::getline(setting, text);
    return !text.empty() && text.find("[never]") == std::string::npos;
}

}  // namespace

TEST_CASE("a small buffer is 64-byte aligned and rounded to whole lines") {
    CHECK(nng::buffer_capacity(0) == 64);
    CHECK(nng::buffer_capacity(65) == 128);
    const std::unique_ptr<std::byte, nng::FreeBuffer> block(nng::allocate_buffer(1000));
    REQUIRE(block);
    CHECK(address_of(block.get()) % nng::kBufferAlignment == 0);
}

TEST_CASE("a buffer of a huge page or more spans whole huge pages and asks for them") {
    REQUIRE(nng::huge_pages_requested());  // the test runs without NNGRAPH_HUGE_PAGES=0
    constexpr std::size_t bytes = 3 * (std::size_t{1} << 20);
    CHECK(nng::buffer_capacity(bytes) == 2 * nng::kHugePageBytes);
    CHECK(nng::buffer_capacity(nng::kHugePageBytes) == nng::kHugePageBytes);
    const std::unique_ptr<std::byte, nng::FreeBuffer> block(nng::allocate_buffer(bytes));
    REQUIRE(block);
    CHECK(address_of(block.get()) % nng::kHugePageBytes == 0);
    if (!kernel_offers_huge_pages()) return;
    // "hg": the mapping is marked MADV_HUGEPAGE.
    const std::string flags = mapping_flags(block.get());
    INFO(flags);
    CHECK(flags.find(" hg") != std::string::npos);
}

TEST_CASE("a large tensor lives on huge pages and a small one does not pay for them") {
    const Tensor large(DType::F32, {1024, 1024});  // 4 MiB
    CHECK(address_of(large.raw()) % nng::kHugePageBytes == 0);
    if (kernel_offers_huge_pages()) CHECK(mapping_flags(large.raw()).find(" hg") != std::string::npos);
    const Tensor small(DType::F32, {3});
    CHECK(address_of(small.raw()) % kTensorAlignment == 0);
}
