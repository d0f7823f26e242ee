#include "translate/greedy_reference.hpp"

#include <algorithm>

#include "data/tensor_fit.hpp"
#include "nngraph/error.hpp"
#include "text/translation_vocabulary.hpp"

namespace nngraph {

TranslationInputs translation_inputs(const Graph& graph) {
    const auto& declared = graph.spec().inputs;
    if (declared.size() != 2 || graph.inputs().size() != 2) {
        throw InputError(graph.spec().file +
                         ": a translation model has two inputs (the source ids, then the decoder's input ids), not " +
                         std::to_string(declared.size()));
    }
    TranslationInputs slots;
    for (std::size_t slot = 0; slot < 2; ++slot) {
        const GraphTensor& input = graph.tensor(graph.inputs()[slot]);
        if (input.info.shape.size() != 2 || input.info.dtype != DType::I32) {
            throw InputError(graph.spec().file + ": translation input '" + input.name + "' is " +
                             std::string(dtype_name(input.info.dtype)) + " " + shape_to_string(input.info.shape) +
                             "; expected token ids, int32 (None, steps)");
        }
        if (input.name == declared[0].name) {
            slots.source = slot;
            slots.source_length = input.info.shape[1];
        } else {
            slots.decoder = slot;
            slots.target_length = input.info.shape[1];
        }
    }
    return slots;
}

std::vector<TargetIds> greedy_reference(Executor& model, const Tensor& source_ids, std::int64_t batch_size) {
    const Graph& graph = model.graph();
    const TranslationInputs slots = translation_inputs(graph);
    if (source_ids.rank() != 2 || source_ids.dim(1) != slots.source_length) {
        throw InputError("greedy decoding: source ids " + shape_to_string(source_ids.shape()) + " for a model of " +
                         std::to_string(slots.source_length) + " source steps");
    }
    const std::int64_t rows = source_ids.dim(0), steps = slots.target_length;
    const DType decoder_dtype = graph.tensor(graph.inputs()[slots.decoder]).info.dtype;
    const Tensor source =
        convert_dtype(source_ids, graph.tensor(graph.inputs()[slots.source]).info.dtype, "source ids");
    Tensor prefix(DType::I32, {rows, steps});
    std::fill_n(prefix.data<std::int32_t>(), prefix.numel(), TokenVocabulary::kPadId);
    for (std::int64_t r = 0; r < rows; ++r) prefix.data<std::int32_t>()[r * steps] = TokenVocabulary::kStartId;

    std::vector<TargetIds> out(static_cast<std::size_t>(rows));
    std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) order[static_cast<std::size_t>(r)] = r;
    for (std::int64_t begin = 0; begin < rows; begin += batch_size) {
        const std::int64_t count = std::min(batch_size, rows - begin);
        std::vector<bool> open(static_cast<std::size_t>(count), true);
        for (std::int64_t t = 0; t < steps; ++t) {
            const Tensor decoder = convert_dtype(prefix, decoder_dtype, "decoder input ids");
            BatchRef batch;
            batch.inputs.resize(2);
            batch.inputs[slots.source] = &source;
            batch.inputs[slots.decoder] = &decoder;
            batch.rows = std::span<const std::int64_t>(order.data() + begin, static_cast<std::size_t>(count));
            model.run(batch, StepKind::Infer);
            const TensorView probabilities = model.output(0);
            const std::int64_t words = probabilities.shape.back();
            bool any_open = false;
            for (std::int64_t r = 0; r < count; ++r) {
                if (!open[static_cast<std::size_t>(r)]) continue;
                const float* scores = probabilities.as<float>() + (r * steps + t) * words;
                const auto id = static_cast<std::int32_t>(std::max_element(scores, scores + words) - scores);
                if (id == TokenVocabulary::kEndId || id == TokenVocabulary::kPadId) {
                    open[static_cast<std::size_t>(r)] = false;
                    continue;
                }
                out[static_cast<std::size_t>(begin + r)].push_back(id);
                if (t + 1 < steps) prefix.data<std::int32_t>()[(begin + r) * steps + t + 1] = id;
                any_open = true;
            }
            if (!any_open) break;
        }
    }
    return out;
}

}  // namespace nngraph
