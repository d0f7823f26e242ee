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
// the buffer times `size`. Enough to check what a rank puts into a collective. With `others` set,
// the other ranks add those buffers instead, one a float allreduce, in order.
class MirrorJob : public dist::Communicator {
public:
    MirrorJob(int rank, int size) : rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void allreduce_sum(std::span<float> v) override {
        blocking.push_back(v.size());
        mirror(v);
    }
    void allreduce_sum(std::span<double> v) override {
        for (double& x : v) x *= size_;
    }
    // Done after `tests_to_finish` calls of test(), as a transfer that MPI moves on only when polled.
    std::unique_ptr<dist::Request> allreduce_sum_async(std::span<float> v) override {
        launched.push_back(v.size());
        mirror(v);
        struct Polled : dist::Request {
            Polled(MirrorJob& job, int tests) : job(job), tests_left(tests) {}
            void wait() override { ++job.waits; }
            bool test() override { return --tests_left <= 0; }
            MirrorJob& job;
            int tests_left;
        };
        return std::make_unique<Polled>(*this, tests_to_finish);
    }
    void broadcast(std::span<std::byte> bytes, int) override {
        if (!root_bytes.empty()) std::copy(root_bytes.begin(), root_bytes.end(), bytes.begin());
    }
    void barrier() override {}
    void send(std::span<const std::byte>, int, int) override {}
    void receive(std::span<std::byte>, int, int) override {}
    std::unique_ptr<dist::Request> send_async(std::span<const std::byte>, int, int) override { return nullptr; }
    std::unique_ptr<dist::Request> receive_async(std::span<std::byte>, int, int) override { return nullptr; }
    void send_receive(std::span<const std::byte>, int, std::span<std::byte>, int, int) override {}
    std::vector<std::byte> root_bytes;  // what rank 0 broadcasts; empty: the same as this rank
    std::vector<std::vector<float>> others;
    std::vector<std::size_t> launched;  // the sizes of the non-blocking float allreduces, in order
    std::vector<std::size_t> blocking;  // the sizes of the blocking float allreduces, in order
    int tests_to_finish = 1;
    int waits = 0;  // wait() calls on requests

private:
    void mirror(std::span<float> v) {
        if (others.empty()) {
            for (float& x : v) x *= float(size_);
            return;
        }
        const std::vector<float> added = others.front();
        others.erase(others.begin());
        REQUIRE(added.size() == v.size());
        for (std::size_t i = 0; i < v.size(); ++i) v[i] += added[i];
    }
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

TEST_CASE("gradients go out in buckets, in reverse weight order, after the ranks' weights") {
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

    reducer.begin([] { return 10.0; });
    reducer.ready(0);  // the last bucket is complete, but the first is not: only the weights' sum starts
    CHECK(job.launched == std::vector<std::size_t>{1});
    reducer.ready(3);
    reducer.ready(2);
    CHECK(job.launched.size() == 1);
    reducer.ready(1);
    CHECK(job.launched == std::vector<std::size_t>{1, 8, 4});
    reducer.finish();
    for (int w = 0; w < 3; ++w) {
        for (int i = 0; i < 4; ++i) CHECK(grads[w].data<float>()[i] == doctest::Approx(float(w * 10 + i) - 0.5f));
    }
    CHECK(grads[3].empty());

    reducer.begin([] { return 10.0; });
    reducer.ready(2);
    CHECK_THROWS_AS(reducer.finish(), RunError);
    CHECK_THROWS_AS(dist::GradientReducer(job, grads, 0), InputError);
}

namespace {

// Three weights of 4 floats, in buckets {2, 1} and {0} of 8 floats; the mean over 3 mirrored
// ranks of 10 rows each is each gradient itself.
std::vector<Tensor> three_gradients() {
    std::vector<Tensor> grads;
    for (int w = 0; w < 3; ++w) {
        grads.emplace_back(DType::F32, Shape{4});
        for (int i = 0; i < 4; ++i) grads.back().data<float>()[i] = float(w * 10 + i) - 0.5f;
    }
    return grads;
}

void check_three_gradients(const std::vector<Tensor>& grads) {
    for (int w = 0; w < 3; ++w) {
        for (int i = 0; i < 4; ++i) CHECK(grads[w].data<float>()[i] == doctest::Approx(float(w * 10 + i) - 0.5f));
    }
}

}  // namespace

TEST_CASE("buckets in flight are polled at every ready gradient; those still running are waited for") {
    for (int tests_to_finish : {1, 100}) {
        CAPTURE(tests_to_finish);
        MirrorJob job(0, 3);
        job.tests_to_finish = tests_to_finish;
        std::vector<Tensor> grads = three_gradients();
        dist::GradientReducer reducer(job, grads, 8 * sizeof(float));
        reducer.begin([] { return 10.0; });
        for (std::size_t w = 3; w-- > 0;) reducer.ready(w);
        CHECK(job.launched == std::vector<std::size_t>{1, 8, 4});
        reducer.finish();
        // Done by the polls alone, no bucket is waited for after backward; else both are. The
        // weights' sum, which nothing polls, always is.
        CHECK(job.waits == (tests_to_finish == 1 ? 1 : 3));
        check_three_gradients(grads);
        CHECK(reducer.time().steps == 1);
        CHECK(reducer.time().exposed_seconds <= reducer.time().seconds);
    }
}

TEST_CASE("averaging after backward sends every bucket in blocking allreduces once backward is done") {
    MirrorJob job(2, 3);
    std::vector<Tensor> grads = three_gradients();
    dist::GradientReducer reducer(job, grads, 8 * sizeof(float), dist::Overlap::AfterBackward);
    for (int step = 1; step <= 2; ++step) {
        reducer.begin([] { return 10.0; });
        for (std::size_t w = 3; w-- > 0;) reducer.ready(w);
        CHECK(job.blocking.empty());
        reducer.finish();
        CHECK(job.launched.empty());
        CHECK(job.blocking == std::vector<std::size_t>{1, 8, 4});
        job.blocking.clear();
        check_three_gradients(grads);
        // All of it is exposed: nothing ran while backward did.
        CHECK(reducer.time().steps == step);
        CHECK(reducer.time().exposed_seconds == reducer.time().seconds);
    }
}

TEST_CASE("each rank's gradient weighs by what its loss averaged over: rows, or real tokens") {
    // This rank's mean is over 3 tokens; the other rank's, over 1 token, is 10 where this one's is 2.
    // The global mean over 4 tokens is (3 * 2 + 1 * 10) / 4 = 4, not the rows' (2 + 10) / 2 = 6.
    for (const dist::Overlap overlap : {dist::Overlap::DuringBackward, dist::Overlap::AfterBackward}) {
        MirrorJob job(0, 2);
        std::vector<Tensor> grads;
        grads.emplace_back(DType::F32, Shape{2});
        std::vector<float> other{10.0f, -10.0f};
        dist::GradientReducer reducer(job, grads, dist::kDefaultBucketBytes, overlap);
        for (const double this_weight : {3.0, 0.0}) {
            CAPTURE(this_weight);
            grads[0].data<float>()[0] = 2.0f;
            grads[0].data<float>()[1] = -2.0f;
            job.others = {{1.0f}, other};  // the other rank's weight, then its weighed gradient
            int asked = 0;
            reducer.begin([&] {
                ++asked;
                return this_weight;
            });
            reducer.ready(0);
            reducer.finish();
            CHECK(asked == 1);
            // A rank without rows (weight 0) leaves the other rank's mean.
            const float expected = this_weight == 3.0 ? 4.0f : 10.0f;
            CHECK(grads[0].data<float>()[0] == doctest::Approx(expected));
            CHECK(grads[0].data<float>()[1] == doctest::Approx(-expected));
        }
        // No rank counted anything: the gradients stay zero rather than 0 / 0.
        grads[0].data<float>()[0] = grads[0].data<float>()[1] = 0.0f;
        job.others = {{0.0f}, {0.0f, 0.0f}};
        reducer.begin([] { return 0.0; });
        reducer.ready(0);
        reducer.finish();
        CHECK(grads[0].data<float>()[0] == 0.0f);
        CHECK(grads[0].data<float>()[1] == 0.0f);
    }
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
