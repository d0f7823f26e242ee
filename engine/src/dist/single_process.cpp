// The communicator of a job of one process.
#include <iostream>

#include "dist/communicator.hpp"
#include "nngraph/error.hpp"

namespace nngraph::dist {
namespace {

class Finished : public Request {
public:
    void wait() override {}
};

class SingleProcess : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void allreduce_sum(std::span<float>) override {}
    void allreduce_sum(std::span<double>) override {}
    std::unique_ptr<Request> allreduce_sum_async(std::span<float>) override { return std::make_unique<Finished>(); }
    void broadcast(std::span<std::byte>, int root) override { check_peer(root); }
    void barrier() override {}
    void send(std::span<const std::byte>, int to, int) override { check_peer(to); }
    void receive(std::span<std::byte>, int from, int) override { check_peer(from); }

private:
    void end_job(const std::string& message, int) override { std::cerr << "nngraph: " << message << std::endl; }

    // Talking to itself is the only exchange a job of one can have: it has no other rank to wait for.
    static void check_peer(int peer) {
        if (peer != 0) throw RunError("rank " + std::to_string(peer) + " does not exist in a job of one process");
    }
};

}  // namespace

Communicator& single_process() {
    static SingleProcess instance;
    return instance;
}

}  // namespace nngraph::dist
