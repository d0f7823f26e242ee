// `format: tsv_pairs`: translation pairs (SPEC section 7). The graph's first declared input reads
// the source ids (source_length), its second the decoder's input ids (start + target, target_length); the
// target is the target ids then end. All are padded at the end with 0. Vocabularies of
// source_words and target_words ids come from the training split; the validation split validates.
// `train_samples` and `validation_samples` keep a seeded random slice of each split; `test_sentences`
// the test split's first distinct source sentences. evaluate scores the test split, BLEU included.
#include <unordered_map>

#include "data/readers/reader.hpp"
#include "data/tensor_fit.hpp"
#include "data/tsv_pairs.hpp"
#include "nngraph/error.hpp"
#include "text/tokens.hpp"
#include "text/translation_vocabulary.hpp"
#include "translate/search.hpp"
#include "translate/translation_score.hpp"

namespace nngraph {
namespace {

// Every distinct token of one language under a dense index, with its count in the training split.
class TokenTable {
public:
    std::vector<std::uint32_t> indices_of(const std::vector<std::string>& tokens, bool training) {
        std::vector<std::uint32_t> indices;
        indices.reserve(tokens.size());
        for (const std::string& token : tokens) {
            auto found = indices_.find(token);
            if (found == indices_.end()) {
                found = indices_.emplace(token, static_cast<std::uint32_t>(counts_.size())).first;
                counts_.push_back({found->first, 0});  // the keys of an unordered_map never move
            }
            if (training) ++counts_[found->second].count;
            indices.push_back(found->second);
        }
        return indices;
    }
    TokenVocabulary vocabulary(std::int64_t size) const { return TokenVocabulary::from_counts(counts_, size); }
    // The id of every token index under `vocabulary`.
    std::vector<std::int32_t> ids(const TokenVocabulary& vocabulary) const {
        std::vector<std::int32_t> ids;
        ids.reserve(counts_.size());
        for (const auto& entry : counts_) ids.push_back(vocabulary.id_of(entry.token));
        return ids;
    }
    std::size_t size() const { return counts_.size(); }

private:
    std::unordered_map<std::string, std::uint32_t, StringHash, std::equal_to<>> indices_;
    std::vector<TokenVocabulary::TokenCount> counts_;
};

struct TokenizedPair {
    std::vector<std::uint32_t> source;  // TokenTable indices
    std::vector<std::uint32_t> target;
};

std::vector<TokenizedPair> tokenize_split(const std::vector<TranslationPair>& pairs, const std::string& path,
                                          bool training, TokenTable& source, TokenTable& target) {
    std::vector<TokenizedPair> out;
    out.reserve(pairs.size());
    for (const TranslationPair& pair : pairs) {
        try {
            out.push_back({source.indices_of(translation_tokens(pair.source), training),
                           target.indices_of(translation_tokens(pair.target), training)});
        } catch (const InputError& error) {
            throw InputError(path + ":" + std::to_string(pair.line) + ": " + error.what());
        }
    }
    return out;
}

std::vector<std::int32_t> lookup(const std::vector<std::uint32_t>& indices, const std::vector<std::int32_t>& ids) {
    std::vector<std::int32_t> out;
    out.reserve(indices.size());
    for (const std::uint32_t index : indices) out.push_back(ids[index]);
    return out;
}

// Where the graph's inputs, declared source first and decoder second, sit in its input order
// (which follows execution); both must read rows of their length.
struct InputSlots {
    std::size_t source = 0;
    std::size_t decoder = 1;
};

InputSlots input_slots(const DataSource& source, std::int64_t source_length, std::int64_t target_length) {
    const Graph& graph = source.graph;
    const auto& declared = graph.spec().inputs;
    if (declared.size() != 2) {
        throw InputError(
            source.file() +
            ": tsv_pairs data feeds two inputs (the source ids, then the decoder's input ids), but the model has " +
            std::to_string(declared.size()));
    }
    const std::int64_t lengths[2] = {source_length, target_length};
    const char* names[2] = {"source_length", "target_length"};
    std::size_t slots[2] = {0, 0};
    for (std::size_t i = 0; i < 2; ++i) {
        for (std::size_t slot = 0; slot < graph.inputs().size(); ++slot) {
            if (graph.tensor(graph.inputs()[slot]).name == declared[i].name) slots[i] = slot;
        }
        const GraphTensor& input = graph.tensor(graph.inputs()[slots[i]]);
        if (input.info.shape.size() != 2 || input.info.shape[1] != lengths[i]) {
            throw InputError(source.file() + ": tsv_pairs encodes " + names[i] + " " + std::to_string(lengths[i]) +
                             " ids, but input '" + input.name + "' has shape " + shape_to_string(input.info.shape));
        }
    }
    return {slots[0], slots[1]};
}

Dataset encode_split(const std::vector<TokenizedPair>& pairs, const TranslationVocabularies& vocabularies,
                     const std::vector<std::int32_t>& source_ids, const std::vector<std::int32_t>& target_ids,
                     const DataSource& source, const InputSlots& slots) {
    const auto rows = static_cast<std::int64_t>(pairs.size());
    Tensor encoder(DType::I32, {rows, vocabularies.source_length});
    Tensor decoder(DType::I32, {rows, vocabularies.target_length});
    Tensor targets(DType::I32, {rows, vocabularies.target_length});
    const auto source_width = static_cast<std::size_t>(vocabularies.source_length);
    const auto target_width = static_cast<std::size_t>(vocabularies.target_length);
    for (std::size_t r = 0; r < pairs.size(); ++r) {
        const std::vector<std::int32_t> target = lookup(pairs[r].target, target_ids);
        vocabularies.encode_source(lookup(pairs[r].source, source_ids),
                                   {encoder.data<std::int32_t>() + r * source_width, source_width});
        vocabularies.encode_decoder_input(target, {decoder.data<std::int32_t>() + r * target_width, target_width});
        vocabularies.encode_target(target, {targets.data<std::int32_t>() + r * target_width, target_width});
    }
    const Graph& graph = source.graph;
    Dataset d;
    d.inputs.resize(2);
    d.inputs[slots.source] =
        convert_dtype(encoder, graph.tensor(graph.inputs()[slots.source]).info.dtype, "source ids");
    d.inputs[slots.decoder] =
        convert_dtype(decoder, graph.tensor(graph.inputs()[slots.decoder]).info.dtype, "decoder input ids");
    d.targets.push_back(fit_targets(graph, 0, source.loss, std::move(targets), "target ids"));
    return d;
}

// The pairs of the first `count` distinct source sentences (all pairs when count is 0): a quicker
// test split whose BLEU still scores each sentence against all its references.
std::vector<TranslationPair> first_sources(const std::vector<TranslationPair>& pairs, std::int64_t count) {
    if (count <= 0) return pairs;
    std::unordered_map<std::string_view, bool> kept;
    std::vector<TranslationPair> out;
    for (const TranslationPair& pair : pairs) {
        auto [it, added] = kept.try_emplace(pair.source, static_cast<std::int64_t>(kept.size()) < count);
        if (it->second) out.push_back(pair);
    }
    return out;
}

// " (using 2000 and 500)" when train_samples or validation_samples keep a slice.
std::string subset_note(const DataSplits& splits, const TranslationPairs& pairs) {
    const auto validation = static_cast<std::size_t>(splits.validation ? splits.validation->size() : 0);
    if (static_cast<std::size_t>(splits.train.size()) == pairs.train.size() && validation == pairs.validation.size())
        return "";
    return " (using " + std::to_string(splits.train.size()) + " and " + std::to_string(validation) + ")";
}

DataSplits read_tsv_pairs_data(const DataSource& source) {
    const std::int64_t source_words = source.integer("source_words", 10000);
    const std::int64_t target_words = source.integer("target_words", 10000);
    const std::int64_t source_length = source.integer("source_length", 20);
    const std::int64_t target_length = source.integer("target_length", 20);
    if (source_length < 1 || target_length < 1)
        throw InputError(source.file() + ": data source_length and target_length must be at least 1");
    const InputSlots slots = input_slots(source, source_length, target_length);

    const std::string path = source.path->string();
    const TranslationPairs pairs = read_tsv_pairs(*source.path);
    if (pairs.train.empty()) throw InputError(path + ": no translation pairs in the training split");
    TokenTable source_tokens, target_tokens;
    const std::vector<TokenizedPair> train = tokenize_split(pairs.train, path, true, source_tokens, target_tokens);
    const std::vector<TokenizedPair> validation =
        tokenize_split(pairs.validation, path, false, source_tokens, target_tokens);
    const std::vector<TranslationPair> test_pairs = first_sources(pairs.test, source.integer("test_sentences", 0));
    const std::vector<TokenizedPair> test = tokenize_split(test_pairs, path, false, source_tokens, target_tokens);
    TranslationVocabularies vocabularies{source_tokens.vocabulary(source_words), target_tokens.vocabulary(target_words),
                                         source_length, target_length};
    const std::vector<std::int32_t> source_ids = source_tokens.ids(vocabularies.source);
    const std::vector<std::int32_t> target_ids = target_tokens.ids(vocabularies.target);

    DataSplits splits;
    splits.train = encode_split(train, vocabularies, source_ids, target_ids, source, slots);
    if (!validation.empty())
        splits.validation = encode_split(validation, vocabularies, source_ids, target_ids, source, slots);
    if (!test.empty()) splits.test = encode_split(test, vocabularies, source_ids, target_ids, source, slots);
    // BLEU over the test split's distinct source sentences, each against all its references.
    splits.test_scores = [vocabularies, groups = group_by_source(test_pairs)](Executor& model,
                                                                              std::int64_t batch_size) {
        const BleuScore bleu = score_translations(model, vocabularies, groups, cached_greedy, batch_size);
        return std::vector<std::pair<std::string, double>>{{"bleu", bleu.score}};
    };
    // The vocabularies stay those of the whole training split, so a slice's ids match a full run's.
    keep_subset(splits.train, source.integer("train_samples", 0), "train subset");
    if (splits.validation)
        keep_subset(*splits.validation, source.integer("validation_samples", 0), "validation subset");
    splits.description = "translation pairs (" + source.path->filename().string() +
                         "): " + std::to_string(pairs.train.size()) + " training, " +
                         std::to_string(pairs.validation.size()) + " validation pairs" + subset_note(splits, pairs) +
                         "; vocabularies of " + std::to_string(vocabularies.source.tokens().size()) + " source and " +
                         std::to_string(vocabularies.target.tokens().size()) + " target tokens";
    splits.save_vocabulary = [vocabularies](const std::filesystem::path& file) { vocabularies.save(file); };
    return splits;
}

}  // namespace

extern const DataReader kTsvPairsReader = {
    "tsv_pairs",
    {"source_words", "target_words", "source_length", "target_length", "train_samples", "validation_samples",
     "test_sentences"},
    {true, nullptr,
     "point nngraph at a .tsv or .tsv.gz of 'source<TAB>target' lines, such as ../shared/data/tatoeba_eng_fra.tsv.gz, "
     "with --data PATH or 'data: {path: PATH}' in the model file"},
    nullptr,
    read_tsv_pairs_data,
};

}  // namespace nngraph
