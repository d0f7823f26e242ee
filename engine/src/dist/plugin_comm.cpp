#include "dist/plugin_comm.hpp"

#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "dist/communicator.hpp"
#include "nngraph/error.hpp"

// The opaque request of plugin.h: a transfer of the host's communicator.
struct nng_comm_request {
    std::unique_ptr<nngraph::dist::Request> transfer;
};

namespace nngraph::dist {
namespace {

// The largest tag MPI guarantees (MPI_TAG_UB is at least this).
constexpr int kMaxTag = 32767;

nng_status fail(nng_error* error, const std::string& message) {
    if (error) {
        std::strncpy(error->message, message.c_str(), NNG_MESSAGE_CAPACITY - 1);
        error->message[NNG_MESSAGE_CAPACITY - 1] = '\0';
        error->attribute[0] = '\0';
    }
    return NNG_FAILED;
}

// Runs `body` and turns whatever it throws into a status and a message for the op.
template <class F>
nng_status guarded(nng_error* error, F&& body) noexcept {
    try {
        body();
        return NNG_OK;
    } catch (const std::exception& e) {
        return fail(error, e.what());
    } catch (...) {
        return fail(error, "unknown error in the communicator");
    }
}

void check_peer(Communicator& comm, int peer, int tag, const char* call) {
    if (peer < 0 || peer >= comm.size())
        throw RunError(std::string(call) + ": rank " + std::to_string(peer) + " is not in this job of " +
                       std::to_string(comm.size()) + " process(es) (expected 0.." + std::to_string(comm.size() - 1) +
                       ")");
    if (tag < 0 || tag > kMaxTag)
        throw RunError(std::string(call) + ": tag " + std::to_string(tag) + " is outside 0.." +
                       std::to_string(kMaxTag));
}

template <class T>
std::span<T> bytes_at(T* data, std::uint64_t bytes, const char* call) {
    if (!data && bytes > 0)
        throw RunError(std::string(call) + ": " + std::to_string(bytes) + " bytes at a null pointer");
    return {data, static_cast<std::size_t>(bytes)};
}

std::int32_t rank(void*) { return world().rank(); }
std::int32_t size(void*) { return world().size(); }

nng_status isend(void*, const void* data, std::uint64_t bytes, std::int32_t peer, std::int32_t tag,
                 nng_comm_request** request, nng_error* error) {
    return guarded(error, [&] {
        Communicator& comm = world();
        check_peer(comm, peer, tag, "isend");
        auto out = bytes_at(static_cast<const std::byte*>(data), bytes, "isend");
        *request = new nng_comm_request{comm.send_async(out, peer, tag)};
    });
}

nng_status irecv(void*, void* data, std::uint64_t bytes, std::int32_t peer, std::int32_t tag,
                 nng_comm_request** request, nng_error* error) {
    return guarded(error, [&] {
        Communicator& comm = world();
        check_peer(comm, peer, tag, "irecv");
        auto in = bytes_at(static_cast<std::byte*>(data), bytes, "irecv");
        *request = new nng_comm_request{comm.receive_async(in, peer, tag)};
    });
}

nng_status wait(void*, nng_comm_request* request, nng_error* error) {
    const std::unique_ptr<nng_comm_request> ended(request);
    return guarded(error, [&] {
        if (!request) throw RunError("wait: a null request");
        request->transfer->wait();
    });
}

nng_status test(void*, nng_comm_request* request, std::int32_t* done, nng_error* error) {
    return guarded(error, [&] {
        if (!request || !done) throw RunError("test: a null request or result");
        *done = request->transfer->test() ? 1 : 0;
        if (*done) delete request;
    });
}

nng_status sendrecv(void*, const void* send_data, std::uint64_t send_bytes, std::int32_t to, void* receive_data,
                    std::uint64_t receive_bytes, std::int32_t from, std::int32_t tag, nng_error* error) {
    return guarded(error, [&] {
        Communicator& comm = world();
        check_peer(comm, to, tag, "sendrecv");
        check_peer(comm, from, tag, "sendrecv");
        comm.send_receive(bytes_at(static_cast<const std::byte*>(send_data), send_bytes, "sendrecv"), to,
                          bytes_at(static_cast<std::byte*>(receive_data), receive_bytes, "sendrecv"), from, tag);
    });
}

nng_status allreduce_sum_f32(void*, float* values, std::uint64_t count, nng_error* error) {
    return guarded(error, [&] {
        if (!values && count > 0)
            throw RunError("allreduce_sum_f32: " + std::to_string(count) + " floats at a null pointer");
        world().allreduce_sum(std::span<float>(values, static_cast<std::size_t>(count)));
    });
}

}  // namespace

const nng_comm* plugin_comm() {
    static const nng_comm table = {sizeof(nng_comm), nullptr, &rank, &size,     &isend,
                                   &irecv,           &wait,   &test, &sendrecv, &allreduce_sum_f32};
    return &table;
}

}  // namespace nngraph::dist
