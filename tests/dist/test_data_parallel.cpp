// The data-parallel pieces in one process: batch shares, the gradient buckets, the agreement check,
// the executor's gradient-ready hook.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "dist/data_parallel.hpp"
#include "dist/gradient_reducer.hpp"
#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "graph/model_file.hpp"
#include "nngraph/error.hpp"
#include "train/losses.hpp"

using namespace nngraph;

namespace {

// A job of `size` ranks whose other ranks all hold exactly this rank's buffers: a sum over ranks is
// the buffer times `size`. Enough to check what a rank puts into a collective.
class MirrorJob : public dist::Communicator {
public:
    MirrorJob(int rank, int size) : rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void allreduce_sum(std::span<float> v) override {
        for (float& x : v) x *= float(size_);
    }
    void allreduce_sum(std::span<double> v) override {
        for (double& x : v) x *= size_;
    }
    std::unique_ptr<dist::Request> allreduce_sum_async(std::span<float> v) override {
        launched.push_back(v.size());
        allreduce_sum(v);
        struct Done : dist::Request {
            void wait() override {}
        };
        return std::make_unique<Done>();
    }
    void broadcast(std::span<std::byte> bytes, int) override {
        if (!root_bytes.empty()) std::copy(root_bytes.begin(), root_bytes.end(), bytes.begin());
    }
    void barrier() override {}
    void send(std::span<const std::byte>, int, int) override {}
    void receive(std::span<std::byte>, int, int) override {}
    std::vector<std::byte> root_bytes;  // what rank 0 broadcasts; empty: the same as this rank
    std::vector<std::size_t> launched;  // the sizes of the non-blocking allreduces, in order

private:
    void end_job(const std::string&, int) override {}
    int rank_, size_;
};

}  // namespace

TEST_CASE("a global batch is split into contiguous shares as even as the ranks allow") {
    for (std::int64_t count : {1, 2, 7, 100, 101}) {
        for (int size : {1, 2, 3, 4}) {
            std::int64_t next = 0, smallest = count, largest = 0;
            for (int rank = 0; rank < size; ++rank) {
                const dist::Share s = dist::share_of(count, rank, size);
                CHECK(s.offset == next);
                next += s.count;
                smallest = std::min(smallest, s.count);
                largest = std::max(largest, s.count);
            }
            CAPTURE(count);
            CAPTURE(size);
            CHECK(next == count);
            CHECK(largest - smallest <= 1);
        }
    }
    CHECK(dist::share_of(100, 0, 3).count == 34);
    CHECK(dist::share_of(100, 2, 3).offset == 67);
    CHECK(dist::share_of(1, 2, 3).count == 0);
}

TEST_CASE("gradients go out in buckets, in reverse weight order, weighted by the rank's rows") {
    // Three ranks with the same mean gradient over 10 rows each: the global mean is that gradient.
    MirrorJob job(1, 3);
    std::vector<Tensor> grads;
    for (int w = 0; w < 3; ++w) {
        grads.emplace_back(DType::F32, Shape{4});
        for (int i = 0; i < 4; ++i) grads.back().data<float>()[i] = float(w * 10 + i) - 0.5f;
    }
    grads.emplace_back();  // a weight without gradient is left alone
    dist::GradientReducer reducer(job, grads, 8 * sizeof(float));
    CHECK(reducer.buckets() == 2);  // {2, 1} and {0}

    reducer.begin(10, 30);
    reducer.ready(0);  // the last bucket is complete, but the first is not: nothing starts yet
    CHECK(job.launched.empty());
    reducer.ready(3);
    reducer.ready(2);
    CHECK(job.launched.empty());
    reducer.ready(1);
    CHECK(job.launched == std::vector<std::size_t>{8, 4});
    reducer.finish();
    for (int w = 0; w < 3; ++w) {
        for (int i = 0; i < 4; ++i) CHECK(grads[w].data<float>()[i] == doctest::Approx(float(w * 10 + i) - 0.5f));
    }
    CHECK(grads[3].empty());

    reducer.begin(10, 30);
    reducer.ready(2);
    CHECK_THROWS_AS(reducer.finish(), RunError);
    CHECK_THROWS_AS(dist::GradientReducer(job, grads, 0), InputError);
}

TEST_CASE("ranks that disagree with rank 0 are named, with this rank's source") {
    const std::vector<dist::Fingerprint> mine = {{"model file", "'m.yaml'", 1}, {"training data", "(d)", 2}};
    MirrorJob same(1, 2);
    CHECK_NOTHROW(dist::check_ranks_agree(same, mine));

    MirrorJob other(1, 2);
    const std::uint64_t root[] = {1, 3};  // rank 0 read other data
    const auto bytes = std::as_bytes(std::span(root));
    other.root_bytes.assign(bytes.begin(), bytes.end());
    try {
        dist::check_ranks_agree(other, mine);
        FAIL("no error");
    } catch (const InputError& e) {
        CHECK(std::string(e.what()).find("rank 1 disagrees with rank 0 on the training data (d)") != std::string::npos);
    }
    CHECK(dist::fingerprint("ab", 2) != dist::fingerprint("ba", 2));
}

TEST_CASE("backward hands over each weight's gradient once, as soon as it is final, last layer first") {
    auto graph = Graph::from_spec(parse_model(R"(inputs: [{name: x, shape: [3]}]
nodes:
  - {name: h, op: Dense, inputs: [x], units: 4, activation: tanh}
  - {name: y, op: Dense, inputs: [h], units: 2}
outputs: [y]
training: {loss: mse}
)",
                                              "model.yaml", "."));
    Executor executor(graph, {1, 3});
    initialize_weights(*graph, 3, executor.weights());
    executor.set_loss(make_loss("mse"));
    Tensor x(DType::F32, {5, 3}), t(DType::F32, {5, 2});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = std::sin(float(i));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::cos(float(i));
    const std::int64_t rows[] = {0, 1, 2, 3, 4};
    const BatchRef batch{{&x}, {&t}, rows};
    std::vector<std::pair<std::string, std::vector<float>>> handed;  // weight name, gradient then
    executor.set_on_gradient_ready([&](WeightId w) {
        const Tensor& g = executor.weight_grads()[static_cast<std::size_t>(w)];
        handed.emplace_back(graph->weights()[static_cast<std::size_t>(w)].name,
                            std::vector<float>(g.data<float>(), g.data<float>() + g.numel()));
    });
    executor.run(batch, StepKind::Train);
    REQUIRE(handed.size() == graph->weights().size());
    for (const auto& [name, values] : handed) {
        CAPTURE(name);
        std::size_t w = 0;
        while (graph->weights()[w].name != name) ++w;
        const Tensor& final_grad = executor.weight_grads()[w];
        CHECK(std::equal(values.begin(), values.end(), final_grad.data<float>()));
        CHECK(std::count_if(handed.begin(), handed.end(), [&](const auto& h) { return h.first == name; }) == 1);
    }
    CHECK(handed.front().first.rfind("y.", 0) == 0);  // the last layer's gradients come first
    CHECK(handed.back().first.rfind("h.", 0) == 0);
}
