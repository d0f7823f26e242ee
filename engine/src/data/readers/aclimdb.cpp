// `format: aclimdb`: the IMDB movie reviews (SPEC section 5), encoded to `maxlen` ids of the
// `num_words` most frequent words; the test split validates. `train_samples` and
// `validation_samples` keep a seeded random slice of each split.
#include <utility>

#include "data/readers/reader.hpp"
#include "data/tensor_fit.hpp"
#include "nngraph/error.hpp"

namespace nngraph {
namespace {

DataSplits read_aclimdb(const DataSource& source) {
    ImdbOptions options;
    options.path = *source.path;
    options.num_words = source.integer("num_words", options.num_words);
    options.maxlen = source.integer("maxlen", options.maxlen);
    options.cache_dir = source.cache_dir;
    const GraphTensor& input = source.single_input("IMDB");
    if (input.info.shape.size() != 2 || input.info.shape[1] != options.maxlen) {
        throw InputError(source.file() + ": the IMDB reviews are encoded to maxlen " + std::to_string(options.maxlen) +
                         " ids, but input '" + input.name + "' has shape " + shape_to_string(input.info.shape));
    }
    ImdbData imdb = load_imdb(options);
    DataSplits splits;
    splits.train.inputs.push_back(convert_dtype(imdb.train.tokens, input.info.dtype, "IMDB tokens"));
    splits.train.targets.push_back(
        fit_targets(source.graph, 0, source.loss, std::move(imdb.train.labels), "IMDB labels"));
    Dataset validation;
    validation.inputs.push_back(convert_dtype(imdb.test.tokens, input.info.dtype, "IMDB tokens"));
    validation.targets.push_back(fit_targets(source.graph, 0, source.loss, std::move(imdb.test.labels), "IMDB labels"));
    splits.validation = std::move(validation);
    keep_subset(splits.train, source.integer("train_samples", 0), "train subset");
    keep_subset(*splits.validation, source.integer("validation_samples", 0), "validation subset");
    splits.description = "IMDB (" + options.path.filename().string() + "): " + std::to_string(splits.train.size()) +
                         " training reviews, " + std::to_string(splits.validation->size()) + " validation reviews" +
                         (imdb.from_cache ? ", from the cache" : "");
    if (!imdb.cache_note.empty()) splits.description += " (" + imdb.cache_note + ")";
    splits.save_vocabulary = [vocabulary = std::move(imdb.vocabulary)](const std::filesystem::path& file) {
        vocabulary.save(file);
    };
    return splits;
}

}  // namespace

extern const DataReader kAclImdbReader = {
    "aclimdb",
    {"num_words", "maxlen", "train_samples", "validation_samples"},
    {true, "NNGRAPH_DATA",
     "download the Large Movie Review Dataset, https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz (84 "
     "MB), "
     "and point nngraph at the archive or its unpacked aclImdb folder with one of: --data PATH, 'data: {path: PATH}' "
     "in the model file, or the environment variable NNGRAPH_DATA=PATH"},
    nullptr,
    read_aclimdb,
};

}  // namespace nngraph
