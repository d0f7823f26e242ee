// Keras's MaxPooling1D and AveragePooling1D: a max or a mean over windows of pool_size steps,
// moved by strides, on oneDNN's pooling primitives.
//
// Keras's output lengths: "valid" floor((steps - pool_size) / strides) + 1, "same"
// floor((steps - 1) / strides) + 1, with the padding split as TensorFlow and JAX split it (the
// smaller half first). Averages count only the steps inside the input
// (pooling_avg_exclude_padding), as Keras's backends do; max windows never pick a padded step.
// Max pooling in training keeps oneDNN's workspace (where each max came from) as a saved buffer
// for backward, which routes each window's gradient to that one step as Keras's backends do.
//
// Keras's windowed poolings do not support masking: a mask that arrives is neither used nor
// passed on.
#include "nngraph/onednn.hpp"
#include "pooling.hpp"

namespace nngraph_pooling {
namespace {

namespace onednn = nng::onednn;
using nng::Dims;
using nng::OpError;

constexpr onednn::Tag kForwardTag{"pooling.forward"};
constexpr onednn::Tag kBackwardTag{"pooling.backward"};

std::int64_t single(const std::vector<std::int64_t>& values, const char* attribute) {
    nng::check_attr(values.size() == 1, attribute, "one integer (or a list of one) for 1D pooling");
    nng::check_attr(values[0] > 0, attribute, "a positive integer, got " + std::to_string(values[0]));
    return values[0];
}

// The geometry of one call: the oneDNN views of input and output as (batch, features, steps)
// whatever the data format (channels_last is oneDNN's nwc), and the padding before and after.
struct Window {
    onednn::View src, dst;
    std::int64_t padding_l, padding_r;
};

class Pooling1D {
public:
    // Keras 3 gives MaxPooling1D pool_size=2; AveragePooling1D requires it there, and takes the same
    // default here (Keras 2's), so that files written either way load.
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::ints_attr("pool_size", "2", "window length in steps"),
        nng::nullable(nng::ints_attr("strides", "null", "window step (null: pool_size)")),
        nng::string_attr("padding", "valid", "valid|same",
                         "valid: whole windows only; same: pad to ceil(steps / strides) outputs"),
        kDataFormatAttr,
    };

    Pooling1D(const nng::Attrs& attrs, dnnl::algorithm algorithm)
        : algorithm_(algorithm),
          pool_size_(single(attrs.get_ints("pool_size"), "pool_size")),
          strides_(attrs.is_null("strides") ? pool_size_ : single(attrs.get_ints("strides"), "strides")),
          same_(attrs.get_string("padding") == "same"),
          channels_first_(parse_channels_first(attrs)) {}

    // Keras's compute_pooling_output_shape along the steps axis.
    std::int64_t output_steps(std::int64_t steps) const {
        if (steps < 0) return steps;
        if (same_) return (steps - 1) / strides_ + 1;
        return steps < pool_size_ ? 0 : (steps - pool_size_) / strides_ + 1;
    }

    void infer(nng::InferContext& ctx) {
        const Layout in = infer_input(ctx, channels_first_);
        const std::int64_t out_steps = output_steps(in.steps);
        if (out_steps == 0) {
            throw OpError("pooling " + std::to_string(in.steps) + " steps of the input " +
                              nng::dims_string(ctx.input_dims(0)) + " with pool_size " + std::to_string(pool_size_) +
                              ", strides " + std::to_string(strides_) +
                              " and padding 'valid' leaves no output step: the computed output shape " +
                              nng::dims_string(in.dims(0)) + " would be empty",
                          "pool_size");
        }
        const Dims out = in.dims(out_steps);
        ctx.add_output(NNG_F32, out);
        // pool_size adds (or comparisons) an output value; the input read and the output written,
        // backward the other way round.
        if (ctx.counting_work()) {
            const std::int64_t outputs = nng::product(out), inputs = in.batch * in.steps * in.features;
            const nng::Work pass{outputs * pool_size_, 4 * (inputs + outputs)};
            ctx.count_work(pass, pass);
        }
        std::int64_t workspace_bytes = 0;
        if (algorithm_ == dnnl::algorithm::pooling_max && ctx.training() && in.batch > 0) {
            // Where each max came from; its size is what oneDNN asks for.
            const dnnl::pooling_forward::primitive_desc pd = forward_pd(window(in, out_steps, nullptr, nullptr), true);
            workspace_bytes = static_cast<std::int64_t>(pd.workspace_desc().get_size());
        }
        workspace_ = ctx.buffer<std::uint8_t>("workspace", workspace_bytes, nng::Lifetime::Saved);
        ctx.set_backward_needs(0);  // backward reads only the gradient and (max) the workspace
        ctx.set_batch_slicing(NNG_SLICING_FREE);
    }

    void forward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        const nng::TensorRef x = exec.input(0), y = exec.output(0);
        const Layout in = Layout::of(x, channels_first_);
        const Window w = window(in, channels_first_ ? y.dim(2) : y.dim(1), x.raw(), y.raw());
        const bool training = exec.training();
        const onednn::Cached& c = onednn::cached<dnnl::pooling_forward>(key(kForwardTag, w, training),
                                                                        [&] { return forward_pd(w, training); });
        std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, onednn::memory_of(w.src)},
                                                   {DNNL_ARG_DST, onednn::memory_of(w.dst)}};
        if (uses_workspace(training)) args.emplace(DNNL_ARG_WORKSPACE, workspace(exec, c));
        onednn::execute(c, std::move(args));
    }

    void backward(nng::Exec& exec) {
        onednn::set_num_threads(exec.num_threads());
        nng::TensorRef dx, dy;
        if (!gradients_to_compute(exec, dx, dy)) return;
        const Layout in = Layout::of(dx, channels_first_);
        const Window w = window(in, channels_first_ ? dy.dim(2) : dy.dim(1), dx.raw(), dy.raw());
        const onednn::Cached& c = onednn::cached<dnnl::pooling_backward>(key(kBackwardTag, w, true), [&] {
            const dnnl::pooling_backward::desc desc(algorithm_, onednn::desc_of(w.src), onednn::desc_of(w.dst),
                                                    {strides_}, {pool_size_}, {w.padding_l}, {w.padding_r});
            return dnnl::pooling_backward::primitive_desc(desc, onednn::attributes(), onednn::engine(),
                                                          forward_pd(w, true));
        });
        std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_DIFF_SRC, onednn::memory_of(w.src)},
                                                   {DNNL_ARG_DIFF_DST, onednn::memory_of(w.dst)}};
        if (uses_workspace(true)) args.emplace(DNNL_ARG_WORKSPACE, workspace(exec, c));
        onednn::execute(c, std::move(args));
    }

private:
    bool uses_workspace(bool training) const { return training && algorithm_ == dnnl::algorithm::pooling_max; }

    Window window(const Layout& in, std::int64_t out_steps, void* src, void* dst) const {
        // Keras's "same": total padding (out - 1) * strides + pool_size - steps, the smaller half first.
        const std::int64_t total =
            same_ ? std::max<std::int64_t>((out_steps - 1) * strides_ + pool_size_ - in.steps, 0) : 0;
        const auto as_bfs = [&](void* data, std::int64_t steps) {
            constexpr auto f32 = dnnl::memory::data_type::f32;
            if (channels_first_) return onednn::view(data, f32, {in.batch, in.features, steps});
            return onednn::view(data, f32, {in.batch, steps, in.features}).permuted({0, 2, 1});
        };
        return {as_bfs(src, in.steps), as_bfs(dst, out_steps), total / 2, total - total / 2};
    }

    dnnl::pooling_forward::primitive_desc forward_pd(const Window& w, bool training) const {
        const dnnl::pooling_forward::desc desc(
            training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference, algorithm_,
            onednn::desc_of(w.src), onednn::desc_of(w.dst), {strides_}, {pool_size_}, {w.padding_l}, {w.padding_r});
        return dnnl::pooling_forward::primitive_desc(desc, onednn::attributes(), onednn::engine());
    }

    onednn::Key key(onednn::Tag tag, const Window& w, bool training) const {
        return onednn::Key(tag).add(algorithm_, training, w.src, w.dst, strides_, pool_size_, w.padding_l, w.padding_r);
    }

    // The saved buffer as oneDNN's workspace, after checking it is as large as this primitive wants.
    dnnl::memory workspace(const nng::Exec& exec, const onednn::Cached& c) const {
        const dnnl::memory::desc desc = c.pd.workspace_desc();
        const auto bytes = static_cast<std::size_t>(exec.count(workspace_));
        if (bytes < desc.get_size()) {
            throw OpError("the saved pooling workspace holds " + std::to_string(bytes) + " bytes; oneDNN wants " +
                          std::to_string(desc.get_size()));
        }
        return onednn::memory_of(desc, exec.buffer(workspace_));
    }

    dnnl::algorithm algorithm_;
    std::int64_t pool_size_, strides_;
    bool same_, channels_first_;
    nng::Buffer<std::uint8_t> workspace_;
};

struct MaxPooling1D : Pooling1D {
    static constexpr const char* kName = "MaxPooling1D";
    static constexpr const char* kDoc = "Max over windows of pool_size steps";
    explicit MaxPooling1D(const nng::Attrs& attrs) : Pooling1D(attrs, dnnl::algorithm::pooling_max) {}
};

struct AveragePooling1D : Pooling1D {
    static constexpr const char* kName = "AveragePooling1D";
    static constexpr const char* kDoc = "Mean over windows of pool_size steps (padding excluded)";
    explicit AveragePooling1D(const nng::Attrs& attrs)
        : Pooling1D(attrs, dnnl::algorithm::pooling_avg_exclude_padding) {}
};

}  // namespace

const nng_op_def* max_pooling_op() { return nng::op<MaxPooling1D>(); }
const nng_op_def* average_pooling_op() { return nng::op<AveragePooling1D>(); }

}  // namespace nngraph_pooling
