// The communicator of a job of one process.
#include <algorithm>
#include <cstring>
#include <deque>
#include <iostream>

#include "dist/communicator.hpp"
#include "nngraph/error.hpp"

namespace nngraph::dist {
namespace {

class Finished : public Request {
public:
    void wait() override {}
    bool test() override { return true; }
};

// A message the process sends itself: done once the send and the receive of the same tag have met.
struct Transfer {
    std::span<const std::byte> from;
    std::span<std::byte> to;
    int tag = 0;
    bool sending = false;  // which half came first
    bool done = false;
    bool abandoned = false;  // its request was dropped before the other half came: never deliver
};

class SelfRequest : public Request {
public:
    explicit SelfRequest(std::shared_ptr<Transfer> transfer) : transfer_(std::move(transfer)) {}
    ~SelfRequest() override { transfer_->abandoned = !transfer_->done; }
    void wait() override {
        // Nothing else can deliver it: waiting would never end.
        if (!transfer_->done)
            throw RunError("rank 0 waits for a message to itself with tag " + std::to_string(transfer_->tag) +
                           " whose " + (transfer_->sending ? "receive" : "send") + " was never started");
    }
    bool test() override { return transfer_->done; }

private:
    std::shared_ptr<Transfer> transfer_;
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
    void send(std::span<const std::byte> bytes, int to, int tag) override { send_async(bytes, to, tag)->wait(); }
    void receive(std::span<std::byte> bytes, int from, int tag) override { receive_async(bytes, from, tag)->wait(); }
    std::unique_ptr<Request> send_async(std::span<const std::byte> bytes, int to, int tag) override {
        check_peer(to);
        return post(sends_, receives_, Transfer{bytes, {}, tag, true});
    }
    std::unique_ptr<Request> receive_async(std::span<std::byte> bytes, int from, int tag) override {
        check_peer(from);
        return post(receives_, sends_, Transfer{{}, bytes, tag, false});
    }
    void send_receive(std::span<const std::byte> out, int to, std::span<std::byte> in, int from, int tag) override {
        auto sent = send_async(out, to, tag);
        receive_async(in, from, tag)->wait();
        sent->wait();
    }

private:
    void end_job(const std::string& message, int) override { std::cerr << "nngraph: " << message << std::endl; }

    // Talking to itself is the only exchange a job of one can have: it has no other rank to wait for.
    static void check_peer(int peer) {
        if (peer != 0) throw RunError("rank " + std::to_string(peer) + " does not exist in a job of one process");
    }

    using Queue = std::deque<std::shared_ptr<Transfer>>;
    // A new send or receive meets the oldest waiting other half of its tag, as MPI orders messages,
    // and is delivered; else it waits in its queue for that other half.
    static std::unique_ptr<Request> post(Queue& mine, Queue& others, const Transfer& half) {
        std::erase_if(others, [](const auto& t) { return t->abandoned; });
        auto match = std::find_if(others.begin(), others.end(), [&](const auto& t) { return t->tag == half.tag; });
        if (match == others.end()) {
            mine.push_back(std::make_shared<Transfer>(half));
            return std::make_unique<SelfRequest>(mine.back());
        }
        std::shared_ptr<Transfer> transfer = *match;
        others.erase(match);
        if (half.sending) {
            transfer->from = half.from;
        } else {
            transfer->to = half.to;
        }
        if (transfer->from.size() > transfer->to.size())
            throw RunError("rank 0 sends itself " + std::to_string(transfer->from.size()) + " bytes with tag " +
                           std::to_string(half.tag) + " into a receive of " + std::to_string(transfer->to.size()));
        if (!transfer->from.empty()) std::memcpy(transfer->to.data(), transfer->from.data(), transfer->from.size());
        transfer->done = true;
        return std::make_unique<SelfRequest>(transfer);
    }

    Queue sends_, receives_;
};

}  // namespace

Communicator& single_process() {
    static SingleProcess instance;
    return instance;
}

}  // namespace nngraph::dist
