// The communicator over Open MPI: the only file of nngraph that includes mpi.h, built as a module
// of its own (libnngraph_mpi.so) that the engine loads only under mpirun.
#include <mpi.h>

#include <climits>
#include <iostream>
#include <type_traits>

#include "dist/communicator.hpp"
#include "nngraph/error.hpp"
#include "nngraph/plugin.h"

namespace nngraph::dist {
namespace {

// MPI counts are ints.
constexpr std::size_t kMaxCount = INT_MAX;

int count_of(std::size_t n) {
    if (n > kMaxCount)
        throw RunError("an MPI message of " + std::to_string(n) + " elements is larger than MPI's int count allows");
    return static_cast<int>(n);
}

class MpiRequest : public Request {
public:
    explicit MpiRequest(MPI_Request request) : request_(request) {}
    ~MpiRequest() override {
        // A request dropped unwaited would let MPI write into a buffer that may be gone.
        if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    }
    void wait() override { MPI_Wait(&request_, MPI_STATUS_IGNORE); }
    bool test() override {
        int done = 0;
        MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
        return done != 0;
    }

private:
    MPI_Request request_;
};

class MpiWorld : public Communicator {
public:
    MpiWorld() {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (!initialized) {
            // Only the thread that runs the training loop calls MPI; OpenMP's threads never do.
            int provided = 0;
            if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
                throw RunError("MPI could not start (MPI_Init_thread failed)");
            }
            owns_mpi_ = true;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
    }
    ~MpiWorld() override {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owns_mpi_ && !finalized) MPI_Finalize();
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void allreduce_sum(std::span<float> values) override {
        MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    void allreduce_sum(std::span<double> values) override {
        MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    std::unique_ptr<Request> allreduce_sum_async(std::span<float> values) override {
        MPI_Request request = MPI_REQUEST_NULL;
        MPI_Iallreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                       &request);
        return std::make_unique<MpiRequest>(request);
    }
    void broadcast(std::span<std::byte> bytes, int root) override {
        MPI_Bcast(bytes.data(), count_of(bytes.size()), MPI_BYTE, root, MPI_COMM_WORLD);
    }
    void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
    void send(std::span<const std::byte> bytes, int to, int tag) override {
        MPI_Send(bytes.data(), count_of(bytes.size()), MPI_BYTE, to, tag, MPI_COMM_WORLD);
    }
    void receive(std::span<std::byte> bytes, int from, int tag) override {
        MPI_Recv(bytes.data(), count_of(bytes.size()), MPI_BYTE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    std::unique_ptr<Request> send_async(std::span<const std::byte> bytes, int to, int tag) override {
        MPI_Request request = MPI_REQUEST_NULL;
        MPI_Isend(bytes.data(), count_of(bytes.size()), MPI_BYTE, to, tag, MPI_COMM_WORLD, &request);
        return std::make_unique<MpiRequest>(request);
    }
    std::unique_ptr<Request> receive_async(std::span<std::byte> bytes, int from, int tag) override {
        MPI_Request request = MPI_REQUEST_NULL;
        MPI_Irecv(bytes.data(), count_of(bytes.size()), MPI_BYTE, from, tag, MPI_COMM_WORLD, &request);
        return std::make_unique<MpiRequest>(request);
    }
    void send_receive(std::span<const std::byte> out, int to, std::span<std::byte> in, int from, int tag) override {
        MPI_Sendrecv(out.data(), count_of(out.size()), MPI_BYTE, to, tag, in.data(), count_of(in.size()), MPI_BYTE,
                     from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }

private:
    void end_job(const std::string& message, int exit_status) override {
        std::cerr << "nngraph: rank " << rank_ << " of " << size_ << ": " << message << std::endl;
        MPI_Abort(MPI_COMM_WORLD, exit_status);
    }

    int rank_ = 0, size_ = 1;
    bool owns_mpi_ = false;
};

}  // namespace

}  // namespace nngraph::dist

extern "C" NNG_EXPORT nngraph::dist::Communicator* nngraph_mpi_world(std::uint32_t interface_version) {
    using namespace nngraph::dist;
    static_assert(std::is_same_v<decltype(&nngraph_mpi_world), MpiModuleEntry>);
    if (interface_version != kMpiModuleInterface) return nullptr;
    return new MpiWorld();
}
