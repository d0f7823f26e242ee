// Times the LSTM op through the plugin ABI (OpRunner) at a chosen thread count: forward in inference and in training,
// backward, and the stepwise (masked) path, with the op's own phase counters (time-major input, weight reorders, the
// primitive, outputs and gradient write-back). For comparison it also times oneDNN's bare lstm_forward / lstm_backward
// on the same problem, with the layouts they pick and no conversions at all; and, when the
// Embedding and Dropout plugins are built, a whole imdb_lstm training step through the executor.
//
//   bench_lstm [--batch 64] [--steps 200] [--features 32] [--units 100] [--threads 2] [--repeat 20]
//
// On a machine shared with other work, `chrt -f 10 bench_lstm ...` (real-time priority, as root)
// keeps the two threads from being descheduled mid-step; without it, 2-thread timings mostly
// measure the neighbours.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "exec/executor.hpp"
#include "exec/weights.hpp"
#include "gradcheck.hpp"
#include "graph/model_file.hpp"
#include "train/losses.hpp"

namespace {

using nngraph::DType;
using nngraph::Tensor;

struct Options {
    std::int64_t batch = 64, steps = 200, features = 32, units = 100;
    int threads = 2, repeat = 20;
};

// One LSTM op with random input, weights and output gradients, called with `threads` threads.
class Driver {
public:
    Driver(const std::string& attributes, const Options& o, bool masked)
        : runner_("LSTM", attributes, {{DType::F32, {o.batch, o.steps, o.features}}}, {masked}, true),
          threads_(o.threads) {
        nngraph::testing::fill_uniform(runner_.inputs()[0], -1, 1, 1);
        if (masked) {  // left padded, as Keras's pad_sequences makes: a quarter to none of each row
            std::uint8_t* m = runner_.input_masks()[0].data<std::uint8_t>();
            for (std::int64_t n = 0; n < o.batch; ++n) {
                for (std::int64_t t = 0; t < o.steps; ++t) m[n * o.steps + t] = t >= (n % 4) * o.steps / 16;
            }
        }
        for (const Tensor& out : runner_.outputs()) {
            grad_outputs_.emplace_back(DType::F32, out.shape());
            nngraph::testing::fill_uniform(grad_outputs_.back(), -1, 1, 2);
        }
    }
    void forward(bool training) { runner_.forward(training, 1, false, threads_); }
    void backward() { runner_.backward(grad_outputs_, 1, {}, threads_); }

private:
    nngraph::testing::OpRunner runner_;
    int threads_;
    std::vector<Tensor> grad_outputs_;
};

double cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) * 1e3 + double(t.tv_nsec) / 1e6;
}

// Milliseconds of `repeat` calls of f: the median and the fastest wall time, and the median CPU
// time of the process (with one thread, the cost of the call even on a busy machine). `before`
// runs untimed ahead of each call.
struct Timing {
    double median, fastest, cpu;
};
Timing time_ms(
    int repeat, const std::function<void()>& f, const std::function<void()>& before = [] {}) {
    std::vector<double> ms, cpu;
    for (int i = 0; i < repeat; ++i) {
        before();
        const double cpu_start = cpu_ms();
        const auto start = std::chrono::steady_clock::now();
        f();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
        cpu.push_back(cpu_ms() - cpu_start);
    }
    std::sort(ms.begin(), ms.end());
    std::sort(cpu.begin(), cpu.end());
    return {ms[ms.size() / 2], ms.front(), cpu[cpu.size() / 2]};
}
void print_timing(const char* what, const Timing& t) {
    std::printf("%s: %.3f ms median, %.3f ms fastest, %.3f ms CPU\n", what, t.median, t.fastest, t.cpu);
}

std::map<std::string, std::int64_t> counters() { return nngraph::testing::built_plugins().counters(); }

// The op's phase counters between two snapshots, in ms per call (the mean of the timed calls).
void print_phases(const std::map<std::string, std::int64_t>& before, const std::map<std::string, std::int64_t>& after,
                  const char* prefix, int calls) {
    for (const auto& [name, value] : after) {
        if (name.rfind(prefix, 0) != 0 || name.size() < 3 || name.substr(name.size() - 3) != "_ns") continue;
        const auto base = before.find(name);
        const double ms = double(value - (base == before.end() ? 0 : base->second)) / 1e6 / calls;
        std::printf("    %-28s %8.3f ms\n", name.c_str(), ms);
    }
}

// oneDNN's LSTM alone on the same problem: tnc data, weights already in the layouts it picks.
void bare_onednn(const Options& o) {
    using namespace dnnl;
    using tag = memory::format_tag;
    const auto f32 = memory::data_type::f32;
    engine eng(engine::kind::cpu, 0);
    stream s(eng);
    const memory::desc src({o.steps, o.batch, o.features}, f32, tag::tnc),
        dst({o.steps, o.batch, o.units}, f32, tag::tnc);
    const memory::desc wl({1, 1, o.features, 4, o.units}, f32, tag::any),
        wi({1, 1, o.units, 4, o.units}, f32, tag::any);
    const memory::desc bias({1, 1, 4, o.units}, f32, tag::ldgo);
    const lstm_forward::primitive_desc fwd_pd(
        {prop_kind::forward_training, rnn_direction::unidirectional_left2right, src, {}, {}, wl, wi, bias, dst, {}, {}},
        eng);
    const lstm_forward::primitive_desc inf_pd({prop_kind::forward_inference,
                                               rnn_direction::unidirectional_left2right,
                                               src,
                                               {},
                                               {},
                                               wl,
                                               wi,
                                               bias,
                                               dst,
                                               {},
                                               {}},
                                              eng);
    const lstm_backward::primitive_desc bwd_pd({prop_kind::backward,
                                                rnn_direction::unidirectional_left2right,
                                                src,
                                                {},
                                                {},
                                                wl,
                                                wi,
                                                bias,
                                                dst,
                                                {},
                                                {},
                                                src,
                                                {},
                                                {},
                                                wl,
                                                wi,
                                                bias,
                                                dst,
                                                {},
                                                {}},
                                               eng, fwd_pd);
    auto mem = [&](const memory::desc& d) {
        memory m(d, eng);
        std::memset(m.get_data_handle(), 0, d.get_size());
        return m;
    };
    memory x = mem(src), y = mem(dst), b = mem(bias), ws = mem(fwd_pd.workspace_desc());
    memory fwl = mem(fwd_pd.weights_layer_desc()), fwi = mem(fwd_pd.weights_iter_desc());
    memory iwl = mem(inf_pd.weights_layer_desc()), iwi = mem(inf_pd.weights_iter_desc());
    memory bwl = mem(bwd_pd.weights_layer_desc()), bwi = mem(bwd_pd.weights_iter_desc());
    memory dwl = mem(bwd_pd.diff_weights_layer_desc()), dwi = mem(bwd_pd.diff_weights_iter_desc()), db = mem(bias);
    memory dx = mem(src), dy = mem(dst);
    lstm_forward fwd(fwd_pd), inf(inf_pd);
    lstm_backward bwd(bwd_pd);
    const auto infer = [&] {
        inf.execute(s, {{DNNL_ARG_SRC_LAYER, x},
                        {DNNL_ARG_WEIGHTS_LAYER, iwl},
                        {DNNL_ARG_WEIGHTS_ITER, iwi},
                        {DNNL_ARG_BIAS, b},
                        {DNNL_ARG_DST_LAYER, y}});
        s.wait();
    };
    const auto forward = [&] {
        fwd.execute(s, {{DNNL_ARG_SRC_LAYER, x},
                        {DNNL_ARG_WEIGHTS_LAYER, fwl},
                        {DNNL_ARG_WEIGHTS_ITER, fwi},
                        {DNNL_ARG_BIAS, b},
                        {DNNL_ARG_DST_LAYER, y},
                        {DNNL_ARG_WORKSPACE, ws}});
        s.wait();
    };
    const auto backward = [&] {
        bwd.execute(s, {{DNNL_ARG_SRC_LAYER, x},
                        {DNNL_ARG_WEIGHTS_LAYER, bwl},
                        {DNNL_ARG_WEIGHTS_ITER, bwi},
                        {DNNL_ARG_BIAS, b},
                        {DNNL_ARG_DST_LAYER, y},
                        {DNNL_ARG_WORKSPACE, ws},
                        {DNNL_ARG_DIFF_SRC_LAYER, dx},
                        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl},
                        {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},
                        {DNNL_ARG_DIFF_BIAS, db},
                        {DNNL_ARG_DIFF_DST_LAYER, dy}});
        s.wait();
    };
    for (int i = 0; i < 2; ++i) {  // warm-up: oneDNN sets up its kernels on the first calls
        infer();
        forward();
        backward();
    }
    const Timing t_inf = time_ms(o.repeat, infer), t_fwd = time_ms(o.repeat, forward);
    const Timing t_bwd = time_ms(o.repeat, backward, forward);
    const bool same_fwd = fwd_pd.weights_layer_desc() == memory::desc({1, 1, o.features, 4, o.units}, f32, tag::ldigo);
    const bool same_bwd = bwd_pd.weights_layer_desc() == memory::desc({1, 1, o.features, 4, o.units}, f32, tag::ldigo);
    std::printf("bare oneDNN lstm (weights in the layouts it picks: ldigo in forward %s, in backward %s)\n",
                same_fwd ? "yes" : "no", same_bwd ? "yes" : "no");
    print_timing("  inference", t_inf);
    print_timing("  forward_training", t_fwd);
    print_timing("  backward", t_bwd);
}

// SPEC's imdb_lstm model: one training step (forward, loss, backward; the optimizer's update is
// not included) and one inference step through the executor, on random tokens.
void imdb_lstm(const Options& o) {
    const auto& registry = nngraph::testing::built_plugins();
    if (!registry.find("Embedding") || !registry.find("Dropout")) {
        std::printf("imdb_lstm: skipped (the Embedding or Dropout plugin is not built)\n");
        return;
    }
    const std::string model = "input: {shape: [" + std::to_string(o.steps) + R"(], dtype: int32}
layers:
  - {op: Embedding, input_dim: 5000, output_dim: )" +
                              std::to_string(o.features) + R"(}
  - {op: Dropout, rate: 0.5}
  - {op: LSTM, units: )" + std::to_string(o.units) +
                              R"(}
  - {op: Dense, units: 350, activation: relu}
  - {op: Dropout, rate: 0.5}
  - {op: Dense, units: 1, activation: sigmoid}
training: {loss: binary_crossentropy}
)";
    const auto graph = nngraph::Graph::from_spec(nngraph::parse_model(model, "imdb_lstm.yaml", "."));
    nngraph::Executor executor(graph, {o.threads, 7});
    nngraph::initialize_weights(*graph, 7, executor.weights());
    executor.set_loss(nngraph::make_loss("binary_crossentropy"));
    Tensor tokens(DType::I32, {o.batch, o.steps}), labels(DType::F32, {o.batch, 1});
    nngraph::testing::fill_uniform(tokens, 0, 5000, 1);
    nngraph::testing::fill_uniform(labels, 0, 2, 2);
    const nngraph::BatchRef batch{{&tokens}, {&labels}, {}};
    for (int i = 0; i < 2; ++i) {
        executor.run(batch, nngraph::StepKind::Train);
        executor.run(batch, nngraph::StepKind::Infer);
    }
    const auto before = counters();
    const Timing train = time_ms(o.repeat, [&] { executor.run(batch, nngraph::StepKind::Train); });
    const auto after = counters();
    const Timing infer = time_ms(o.repeat, [&] { executor.run(batch, nngraph::StepKind::Infer); });
    std::printf("imdb_lstm through the executor\n");
    print_timing("  training step", train);
    print_timing("  inference step", infer);
    std::printf("  of which the LSTM op in the training steps (its phase counters):\n");
    print_phases(before, after, "lstm.", o.repeat);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const long value = std::stol(argv[i + 1]);
        if (flag == "--batch")
            o.batch = value;
        else if (flag == "--steps")
            o.steps = value;
        else if (flag == "--features")
            o.features = value;
        else if (flag == "--units")
            o.units = value;
        else if (flag == "--threads")
            o.threads = static_cast<int>(value);
        else if (flag == "--repeat")
            o.repeat = static_cast<int>(value);
        else {
            std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
            return 2;
        }
    }
    std::printf("LSTM batch %lld, %lld steps, %lld features, %lld units, %d threads, %d timed calls each\n",
                static_cast<long long>(o.batch), static_cast<long long>(o.steps), static_cast<long long>(o.features),
                static_cast<long long>(o.units), o.threads, o.repeat);
    omp_set_num_threads(o.threads);
    bare_onednn(o);

    const std::string attributes = "{units: " + std::to_string(o.units) + "}";
    for (const bool masked : {false, true}) {
        Driver d(attributes, o, masked);
        const char* path = masked ? "masked (stepwise)" : "unmasked (oneDNN)";
        // Warm-up: primitives created, buffers grown. The phase counters then average the timed calls.
        for (int i = 0; i < 2; ++i) {
            d.forward(false);
            d.forward(true);
            d.backward();
        }
        auto before = counters();
        const Timing inference = time_ms(o.repeat, [&] { d.forward(false); });
        auto after = counters();
        std::printf("op %s\n", path);
        print_timing("  forward inference", inference);
        print_phases(before, after, "lstm.forward", o.repeat);
        before = counters();
        const Timing training = time_ms(o.repeat, [&] { d.forward(true); });
        after = counters();
        print_timing("  forward training", training);
        print_phases(before, after, "lstm.forward", o.repeat);
        // A backward consumes oneDNN's workspace: each one follows a forward, untimed (forward
        // calls leave the backward phases alone).
        before = counters();
        const Timing backward = time_ms(
            o.repeat, [&] { d.backward(); }, [&] { d.forward(true); });
        after = counters();
        print_timing("  backward", backward);
        print_phases(before, after, "lstm.backward", o.repeat);
    }
    imdb_lstm(o);
    const auto c = counters();
    std::printf("oneDNN primitives created %lld, cache hits %lld, buffer allocations %lld\n",
                static_cast<long long>(c.at("onednn.primitives_created")),
                static_cast<long long>(c.at("onednn.cache_hits")),
                static_cast<long long>(c.at("onednn.buffer_allocations")));
    return 0;
}
