// Classifies movie reviews with a trained sentiment model, such as graphs/imdb_attention.yaml with
// the weights (and, beside them, the vocabulary) that `nngraph train --save` wrote:
//   classify MODEL.yaml WEIGHTS.safetensors "A wonderful film." "Two hours I will not get back."
// prints each sentence's probability of being positive.
#include <cstdio>
#include <string>
#include <vector>

#include <nngraph/nngraph.hpp>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL.yaml WEIGHTS.safetensors SENTENCE...\n", argv[0]);
        return 2;
    }
    try {
        nngraph::Model model = nngraph::Model::load(argv[1]);
        model.load_weights(argv[2]);
        const nngraph::Vocabulary vocabulary = nngraph::Vocabulary::load(nngraph::vocabulary_path(argv[2]));
        const std::vector<std::string> sentences(argv + 3, argv + argc);
        const nngraph::Tensor positive = model.predict_text(sentences, vocabulary);
        for (std::size_t i = 0; i < sentences.size(); ++i) {
            std::printf("%.4f  %s\n", positive.data<float>()[i], sentences[i].c_str());
        }
        return 0;
    } catch (const nngraph::Error& e) {
        std::fprintf(stderr, "classify: %s\n", e.what());
        return e.exit_status();
    }
}
