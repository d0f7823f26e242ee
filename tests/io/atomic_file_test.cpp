#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "nngraph/error.hpp"
#include "nngraph/io_atomic_file.hpp"
#include "temp_dir.hpp"

using nngraph::testing::read_bytes;
using nngraph::testing::TempDir;
using nngraph::testing::write_bytes;

TEST_CASE("write_file_atomically writes the file and leaves no temporary file") {
    TempDir dir;
    const auto path = dir / "out.txt";
    nngraph::write_file_atomically(path, [](std::ostream& out) { out << "first"; });
    CHECK(read_bytes(path) == "first");
    nngraph::write_file_atomically(path, [](std::ostream& out) { out << "second"; });
    CHECK(read_bytes(path) == "second");
    CHECK(dir.listing() == std::vector<std::string>{"out.txt"});
}

TEST_CASE("write_file_atomically keeps the old file when writing throws") {
    TempDir dir;
    const auto path = dir / "checkpoint.bin";
    write_bytes(path, "old contents");
    const auto failing_writer = [](std::ostream& out) {
        out << "half of the new con";
        throw std::runtime_error("killed halfway");
    };
    CHECK_THROWS_WITH_AS(nngraph::write_file_atomically(path, failing_writer), "killed halfway", std::runtime_error);
    CHECK(read_bytes(path) == "old contents");
    CHECK(dir.listing() == std::vector<std::string>{"checkpoint.bin"});
}

TEST_CASE("write_file_atomically reports a directory it cannot write into") {
    TempDir dir;
    const auto write_hello = [](std::ostream& out) { out << "hello"; };
    SUBCASE("a missing directory") {
        CHECK_THROWS_WITH_AS(nngraph::write_file_atomically(dir / "absent" / "out.txt", write_hello),
                             doctest::Contains("absent/out.txt"), nngraph::RunError);
    }
    SUBCASE("a parent that is a file") {
        write_bytes(dir / "plain", "x");
        CHECK_THROWS_WITH_AS(nngraph::write_file_atomically(dir / "plain" / "out.txt", write_hello),
                             doctest::Contains("cannot create a temporary file"), nngraph::RunError);
    }
    SUBCASE("a target that is a directory keeps it and leaves nothing behind") {
        std::filesystem::create_directory(dir / "taken");
        CHECK_THROWS_AS(nngraph::write_file_atomically(dir / "taken", write_hello), nngraph::RunError);
        CHECK(std::filesystem::is_directory(dir / "taken"));
        CHECK(dir.listing() == std::vector<std::string>{"taken"});
    }
}
