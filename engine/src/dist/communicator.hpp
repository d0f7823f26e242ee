// The communicator: everything the engine says to other processes of a data-parallel job, behind
// one small interface. MPI is spoken in mpi_communicator.cpp alone; a run without mpirun gets the
// single-process implementation. Plugins reach it through the SDK (plugin_comm.hpp), never through MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

namespace nngraph::dist {

// A transfer started by a non-blocking call; its buffer must stay alive until it is done.
class Request {
public:
    virtual ~Request() = default;
    virtual void wait() = 0;
    // Whether it is done, without blocking. Also lets MPI progress the transfer, which Open MPI
    // does only inside MPI calls.
    virtual bool test() = 0;
};

class Communicator {
public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;

    // In place: every rank ends with the element-wise sum over all ranks.
    virtual void allreduce_sum(std::span<float> values) = 0;
    virtual void allreduce_sum(std::span<double> values) = 0;
    virtual std::unique_ptr<Request> allreduce_sum_async(std::span<float> values) = 0;
    // In place: every rank ends with `root`'s bytes.
    virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
    virtual void barrier() = 0;
    virtual void send(std::span<const std::byte> bytes, int to, int tag) = 0;
    virtual void receive(std::span<std::byte> bytes, int from, int tag) = 0;
    // Non-blocking point-to-point: a receive matches the send of the same peer and tag, in order.
    virtual std::unique_ptr<Request> send_async(std::span<const std::byte> bytes, int to, int tag) = 0;
    virtual std::unique_ptr<Request> receive_async(std::span<std::byte> bytes, int from, int tag) = 0;
    // Sends to `to` while receiving from `from`: a ring step that cannot deadlock.
    virtual void send_receive(std::span<const std::byte> out, int to, std::span<std::byte> in, int from, int tag) = 0;
    // Ends the whole job: prints `message` naming this rank, and every process exits with `exit_status`.
    [[noreturn]] void abort(const std::string& message, int exit_status) {
        end_job(message, exit_status);
        std::_Exit(exit_status);
    }

protected:
    virtual void end_job(const std::string& message, int exit_status) = 0;
};

// The job this process belongs to: the MPI world when mpirun launched it (its environment says so),
// else a job of one. Made on first use and kept until exit.
Communicator& world();

// A job of one process: collectives leave their buffers as they are. Shared, stateless.
Communicator& single_process();

// The MPI world lives in a module of its own (libnngraph_mpi.so, mpi_communicator.cpp), loaded
// only under mpirun, so that libnngraph needs no MPI library to run one process. The module
// exports kMpiModuleEntry of type MpiModuleEntry: it returns a new world (initialising MPI), or null
// when it was built for another kMpiModuleInterface; it throws RunError when MPI cannot start.
inline constexpr std::uint32_t kMpiModuleInterface = 1;
inline constexpr const char* kMpiModuleEntry = "nngraph_mpi_world";
using MpiModuleEntry = Communicator* (*)(std::uint32_t interface_version);
// Loads the module and makes the world; the module stays loaded until exit. Throws RunError naming
// the module's path and what failed (missing Open MPI libraries, another interface, MPI's start).
Communicator& load_mpi_world();

}  // namespace nngraph::dist
