#include "keras/keras_isolated_weights.hpp"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "nngraph/error.hpp"

namespace nngraph::keras {
namespace {

// The conversation: the parent sends a request and a path, the reader answers with a status, then
// either the result or the error's message. Both ends are this program, so the layout is native.
enum class Request : std::uint8_t { has_group = 1, variables, stored_name, count_variables };
enum class Status : std::uint8_t { ok = 0, input_error, run_error };

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kMaxText = std::uint64_t{1} << 20;  // a path, a name or a message

// The other end closed the socket.
struct ConversationBroken {};
// The reader did not answer by its deadline.
struct AnswerLate {};
// The other end sent what it cannot have meant (a request or an answer out of the protocol).
struct NonsenseMessage {};

// Whole values over a stream socket; what is received must have come by the deadline, if any.
class Wire {
public:
    explicit Wire(int socket, std::optional<Clock::time_point> deadline = std::nullopt)
        : socket_(socket), deadline_(deadline) {}

    void send_bytes(const void* data, std::size_t size) const {
        const char* next = static_cast<const char*>(data);
        while (size > 0) {
            // MSG_NOSIGNAL: a reader that died must not end the parent with SIGPIPE.
            const ssize_t sent = ::send(socket_, next, size, MSG_NOSIGNAL);
            if (sent < 0 && errno == EINTR) continue;
            if (sent <= 0) throw ConversationBroken{};
            next += sent;
            size -= static_cast<std::size_t>(sent);
        }
    }
    void receive_bytes(void* data, std::size_t size) const {
        char* next = static_cast<char*>(data);
        while (size > 0) {
            wait_for_data();
            const ssize_t got = ::recv(socket_, next, size, 0);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) throw ConversationBroken{};
            next += got;
            size -= static_cast<std::size_t>(got);
        }
    }

    template <class T>
    void send(const T& value) const {
        static_assert(std::is_trivially_copyable_v<T>);
        send_bytes(&value, sizeof value);
    }
    template <class T>
    T receive() const {
        static_assert(std::is_trivially_copyable_v<T>);
        T value;
        receive_bytes(&value, sizeof value);
        return value;
    }
    void send_text(const std::string& text) const {
        send<std::uint64_t>(text.size());
        send_bytes(text.data(), text.size());
    }
    std::string receive_text() const {
        const auto size = receive<std::uint64_t>();
        if (size > kMaxText) throw NonsenseMessage{};
        std::string text(size, '\0');
        receive_bytes(text.data(), text.size());
        return text;
    }

private:
    void wait_for_data() const {
        if (!deadline_) return;
        while (true) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now());
            if (left.count() <= 0) throw AnswerLate{};
            pollfd ready{socket_, POLLIN, 0};
            const int polled = ::poll(&ready, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 60'000)));
            if (polled > 0) return;
            if (polled < 0 && errno != EINTR) throw ConversationBroken{};
        }
    }

    int socket_;
    std::optional<Clock::time_point> deadline_;
};

std::string in_seconds(std::chrono::milliseconds time) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(time.count()) / 1000.0);
    return text;
}

// ---- the reader (the child process) ---------------------------------------------------------

// Runs `query`; sends its result with `send_result`, or the error it raised.
template <class Query, class SendResult>
void answer(const Wire& wire, Query query, SendResult send_result) {
    std::optional<decltype(query())> result;
    try {
        result.emplace(query());
    } catch (const InputError& e) {
        wire.send(Status::input_error);
        wire.send_text(e.what());
        return;
    } catch (const std::exception& e) {
        wire.send(Status::run_error);
        wire.send_text(e.what());
        return;
    }
    wire.send(Status::ok);
    send_result(*result);
}

void send_tensors(const Wire& wire, const std::vector<Tensor>& tensors) {
    wire.send<std::uint64_t>(tensors.size());
    for (const Tensor& tensor : tensors) {
        wire.send<std::uint64_t>(tensor.rank());
        for (const std::int64_t d : tensor.shape()) wire.send(d);
        if (tensor.nbytes() > 0) wire.send_bytes(tensor.raw(), tensor.nbytes());
    }
}

// A fatal signal ends the reader as the kernel's default action does: the handlers it inherited
// (the program's, a sanitizer's, a fuzzer's) would report the library's crash as the program's own.
// No core file either: the crash is the file's doing, and the parent reports it.
void let_fatal_signals_end_the_reader() {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    sigset_t fatal;
    sigemptyset(&fatal);
    for (const int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS}) {
        std::signal(signal, SIG_DFL);
        sigaddset(&fatal, signal);
    }
    ::sigprocmask(SIG_UNBLOCK, &fatal, nullptr);
}

[[noreturn]] void serve(int socket, const std::string& image, const std::string& label, const WeightsLimits& limits) {
    let_fatal_signals_end_the_reader();
    const Wire wire(socket);
    try {
        std::unique_ptr<Hdf5WeightsFile> file;
        answer(
            wire,
            [&] {
                file = std::make_unique<Hdf5WeightsFile>(image, label, limits);
                return true;
            },
            [](bool) {});
        while (file) {
            const auto request = wire.receive<Request>();
            const std::string path = wire.receive_text();
            switch (request) {
                case Request::has_group:
                    answer(
                        wire, [&] { return file->has_group(path); },
                        [&](bool found) { wire.send<std::uint8_t>(found); });
                    break;
                case Request::variables:
                    answer(
                        wire, [&] { return file->variables(path); },
                        [&](const std::vector<Tensor>& tensors) { send_tensors(wire, tensors); });
                    break;
                case Request::stored_name:
                    answer(
                        wire, [&] { return file->stored_name(path); },
                        [&](const std::optional<std::string>& name) {
                            wire.send<std::uint8_t>(name.has_value());
                            if (name) wire.send_text(*name);
                        });
                    break;
                case Request::count_variables:
                    answer(
                        wire, [&] { return file->count_variables(path); },
                        [&](std::int64_t count) { wire.send(count); });
                    break;
                default:
                    throw NonsenseMessage{};
            }
        }
    } catch (...) {
        // The parent closed the socket (it has its answers) or can no longer be answered.
    }
    // Not exit(): the parent's atexit handlers and stdio buffers belong to the parent.
    ::_exit(0);
}

}  // namespace

// ---- the parent -------------------------------------------------------------------------------

class IsolatedWeightsFile::Reader {
public:
    Reader(const std::string& image, std::string label, const WeightsLimits& limits)
        : label_(std::move(label)),
          limits_(limits),
          answer_time_(std::chrono::duration_cast<std::chrono::milliseconds>(
              limits.answer_time * (1.0 + static_cast<double>(image.size()) / double(std::uint64_t{1} << 30)))) {
        int ends[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
            throw RunError("cannot open a socket to read " + label_ + " in a child process: " + std::strerror(errno));
        }
        pid_ = ::fork();
        if (pid_ < 0) {
            const int error = errno;
            ::close(ends[0]);
            ::close(ends[1]);
            throw RunError("cannot start a child process to read " + label_ + ": " + std::strerror(error));
        }
        if (pid_ == 0) {
            ::close(ends[0]);
            serve(ends[1], image, label_, limits_);
        }
        ::close(ends[1]);
        socket_ = ends[0];
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader() {
        if (socket_ >= 0) ::close(socket_);
        end();
    }

    // Sends the request (none for the opening answer) and receives the answer with `receive`;
    // `doing` says, for a message, what the reader was asked to do.
    template <class Receive>
    auto ask(std::optional<Request> request, const std::string& path, const std::string& doing, Receive receive) {
        if (pid_ < 0) throw InputError(label_ + ": the HDF5 library " + ended_ + "; nothing more is read from it");
        const Wire wire(socket_, Clock::now() + answer_time_);
        try {
            if (request) {
                wire.send(*request);
                wire.send_text(path);
            }
            const auto status = wire.receive<Status>();
            if (status == Status::input_error) throw InputError(wire.receive_text());
            if (status == Status::run_error) throw RunError(wire.receive_text());
            if (status != Status::ok) throw NonsenseMessage{};
            return receive(wire);
        } catch (const NonsenseMessage&) {
            end();
            ended_ = "sent an answer that makes no sense";
            throw RunError(label_ + ": the child process reading the file " + ended_ + " while " + doing);
        } catch (const AnswerLate&) {
            end();
            ended_ = "gave no answer within " + in_seconds(answer_time_);
            throw InputError(label_ + ": the HDF5 library " + ended_ + " while " + doing + "; the file is damaged");
        } catch (const ConversationBroken&) {
            end();
            throw InputError(label_ + ": the HDF5 library " + ended_ + " while " + doing + "; the file is damaged");
        }
    }

    const WeightsLimits& limits() const { return limits_; }

private:
    // Stops the reader if it still runs and says how it ended. The kill changes nothing for a reader
    // that has already ended: its exit status is fixed once it starts to exit.
    void end() {
        if (pid_ < 0) return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        pid_t waited;
        do {
            waited = ::waitpid(pid_, &status, 0);
        } while (waited < 0 && errno == EINTR);
        pid_ = -1;
        if (waited < 0) {
            ended_ = "stopped answering";  // reaped elsewhere (SIGCHLD ignored): how it ended is unknown
        } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            ended_ = "was killed (signal 9; the system may have run out of memory)";
        } else if (WIFSIGNALED(status)) {
            ended_ =
                "crashed with signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
        } else {
            ended_ = "ended with exit status " + std::to_string(WEXITSTATUS(status));
        }
    }

    std::string label_;
    WeightsLimits limits_;
    std::chrono::milliseconds answer_time_;
    pid_t pid_ = -1;
    int socket_ = -1;
    std::string ended_;
};

IsolatedWeightsFile::IsolatedWeightsFile(const std::string& image, std::string label, const WeightsLimits& limits)
    : reader_(std::make_unique<Reader>(image, std::move(label), limits)) {
    reader_->ask(std::nullopt, "", "opening the file", [](const Wire&) { return true; });
}

IsolatedWeightsFile::~IsolatedWeightsFile() = default;

bool IsolatedWeightsFile::has_group(const std::string& path) const {
    return reader_->ask(Request::has_group, path, "looking for the group '" + path + "'",
                        [](const Wire& wire) { return wire.receive<std::uint8_t>() != 0; });
}

std::vector<Tensor> IsolatedWeightsFile::variables(const std::string& path) const {
    const WeightsLimits& limits = reader_->limits();
    return reader_->ask(Request::variables, path, "reading the variables of '" + path + "'", [&](const Wire& wire) {
        // The reader applied the limits; they are checked again so that a reader gone wrong
        // cannot make this process allocate what it likes.
        const auto count = wire.receive<std::uint64_t>();
        if (count > static_cast<std::uint64_t>(limits.variables)) throw NonsenseMessage{};
        std::vector<Tensor> tensors;
        for (std::uint64_t i = 0; i < count; ++i) {
            const auto rank = wire.receive<std::uint64_t>();
            if (rank > static_cast<std::uint64_t>(limits.rank)) throw NonsenseMessage{};
            Shape shape;
            std::int64_t elements = 1;
            for (std::uint64_t axis = 0; axis < rank; ++axis) {
                const auto d = wire.receive<std::int64_t>();
                if (d < 0 || d > limits.elements || (d > 0 && elements > limits.elements / d)) {
                    throw NonsenseMessage{};
                }
                elements *= std::max<std::int64_t>(d, 1);
                shape.push_back(d);
            }
            Tensor values(DType::F32, shape);
            if (values.nbytes() > 0) wire.receive_bytes(values.raw(), values.nbytes());
            tensors.push_back(std::move(values));
        }
        return tensors;
    });
}

std::optional<std::string> IsolatedWeightsFile::stored_name(const std::string& path) const {
    return reader_->ask(Request::stored_name, path, "reading the layer name stored at '" + path + "/vars'",
                        [](const Wire& wire) -> std::optional<std::string> {
                            if (wire.receive<std::uint8_t>() == 0) return std::nullopt;
                            return wire.receive_text();
                        });
}

std::int64_t IsolatedWeightsFile::count_variables(const std::string& path) const {
    return reader_->ask(Request::count_variables, path, "counting the variables below '" + path + "'",
                        [](const Wire& wire) { return wire.receive<std::int64_t>(); });
}

}  // namespace nngraph::keras
