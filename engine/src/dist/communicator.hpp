// The communicator: everything the engine says to other processes of a data-parallel job, behind
// one small interface. MPI is spoken in mpi_communicator.cpp alone; a run without mpirun gets the
// single-process implementation. Plugins will reach it through the SDK, never through MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

namespace nngraph::dist {

// A collective started by a non-blocking call; its buffer must stay alive until wait() returns.
class Request {
public:
    virtual ~Request() = default;
    virtual void wait() = 0;
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
// The MPI world; initialises MPI. Throws RunError when MPI cannot start.
std::unique_ptr<Communicator> make_mpi_world();

}  // namespace nngraph::dist
