#include "nngraph/io_atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <string>
#include <system_error>

#include "nngraph/error.hpp"

namespace nngraph {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int error) { return std::generic_category().message(error); }

// Owns the temporary file until it is renamed into place; removes it on every other way out.
class TemporaryFile {
public:
    explicit TemporaryFile(const fs::path& target) : path_(create_next_to(target)) {}
    TemporaryFile(const TemporaryFile&) = delete;
    TemporaryFile& operator=(const TemporaryFile&) = delete;
    ~TemporaryFile() {
        if (!renamed_) {
            std::error_code ignored;
            fs::remove(path_, ignored);
        }
    }

    const fs::path& path() const { return path_; }

    void rename_to(const fs::path& target) {
        std::error_code error;
        fs::rename(path_, target, error);
        if (error) {
            throw RunError("cannot write '" + target.string() + "': renaming the temporary file '" + path_.string() +
                           "' over it failed: " + error.message());
        }
        renamed_ = true;
    }

private:
    // Hidden, in the target's directory (a rename is only atomic within one file system), and created
    // with O_EXCL under a name made of the process id and a counter, so concurrent writers never share one.
    static fs::path create_next_to(const fs::path& target) {
        static std::atomic<unsigned> counter{0};
        const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
        // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string here.
        std::string stem = ".";
        stem += target.filename().string();
        stem += ".tmp-" + std::to_string(::getpid()) + "-";
        while (true) {
            fs::path candidate = directory / (stem + std::to_string(counter++));
            const int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd >= 0) {
                ::close(fd);
                return candidate;
            }
            if (errno != EEXIST) {
                throw RunError("cannot write '" + target.string() + "': cannot create a temporary file in '" +
                               directory.string() + "': " + errno_text(errno));
            }
        }
    }

    fs::path path_;
    bool renamed_ = false;
};

// fsync through a fresh descriptor: std::ofstream does not expose its own.
void flush_to_disk(const fs::path& path, const fs::path& target) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
        const int error = errno;
        if (fd >= 0) ::close(fd);
        throw RunError("cannot write '" + target.string() + "': flushing '" + path.string() +
                       "' to disk failed: " + errno_text(error));
    }
    ::close(fd);
}

// Makes the rename itself durable; a file system that cannot sync a directory loses nothing but that.
void flush_directory_to_disk(const fs::path& directory) {
    const int fd = ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

}  // namespace

void write_file_atomically(const fs::path& path, const std::function<void(std::ostream&)>& write_contents) {
    if (!path.has_filename()) throw RunError("cannot write '" + path.string() + "': it names no file");
    TemporaryFile temporary(path);
    {
        std::ofstream out(temporary.path(), std::ios::binary | std::ios::trunc);
        if (!out) {
            throw RunError("cannot write '" + path.string() + "': cannot open the temporary file '" +
                           temporary.path().string() + "'");
        }
        write_contents(out);
        out.flush();
        if (!out) {
            throw RunError("cannot write '" + path.string() + "': writing the temporary file '" +
                           temporary.path().string() + "' failed (is the disk full?)");
        }
    }
    flush_to_disk(temporary.path(), path);
    temporary.rename_to(path);
    flush_directory_to_disk(path.parent_path());
}

void check_writable_destination(const fs::path& path, const std::string& what) {
    auto refuse = [&](const std::string& reason) {
        throw InputError(what + ": cannot write '" + path.string() + "': " + reason);
    };
    if (!path.has_filename()) refuse("it names no file");
    const fs::path directory = path.has_parent_path() ? path.parent_path() : fs::path(".");
    std::error_code error;
    if (!fs::exists(directory, error)) refuse("the directory '" + directory.string() + "' does not exist");
    if (!fs::is_directory(directory, error)) refuse("'" + directory.string() + "' is not a directory");
    if (fs::is_directory(path, error)) refuse("it is a directory");
    // Creating a file beside it is the only test that sees permissions, read-only mounts and quotas alike.
    try {
        TemporaryFile probe(path);
    } catch (const RunError&) {
        refuse("no file can be created in '" + directory.string() + "': " + errno_text(errno));
    }
}

}  // namespace nngraph
