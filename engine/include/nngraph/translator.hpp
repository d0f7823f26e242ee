// Translating with an encoder-decoder model (SPEC section 7): sentences in, sentences out, decoded
// one position at a time over key/value caches (the encoder runs once per batch of sentences).
//
//   nngraph::Model model = nngraph::Model::load("graphs/translate_eng_fra.yaml");
//   model.load_weights("mt.safetensors");
//   nngraph::Translator translator(model, nngraph::vocabulary_path("mt.safetensors"));
//   std::vector<nngraph::Translation> out = translator.translate({"I am hungry."});
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace nngraph {

class Model;

struct TranslateOptions {
    int beam = 1;                  // 1: greedy; more: beam search with length-normalised scores
    std::int64_t batch_size = 64;  // sentences decoded together
};

struct Translation {
    std::string text;                // the target tokens joined by single spaces
    std::int64_t source_tokens = 0;  // tokens of the source sentence
    bool truncated = false;          // it had more than the model's source length; the rest was left out
};

class Translator {
public:
    // `model` with its weights loaded (they are copied: later changes to the model are not seen),
    // and the vocabularies saved beside them (vocabulary_path). Throws InputError when the model
    // is not a translation model or the vocabularies do not fit it.
    Translator(const Model& model, const std::filesystem::path& vocabulary_file);
    Translator(Translator&&) noexcept;
    Translator& operator=(Translator&&) noexcept;
    ~Translator();

    // Translates each sentence (UTF-8); an empty sentence (no tokens) translates to an empty one.
    // Throws InputError naming the sentence (1-based, "line N") for bytes that are not UTF-8.
    std::vector<Translation> translate(const std::vector<std::string>& sentences, const TranslateOptions& options = {});

    // The target ids (end token left out) for source ids (each at most source_length() long):
    // what translate() decodes, for scoring with BLEU.
    std::vector<std::vector<std::int32_t>> decode(const std::vector<std::vector<std::int32_t>>& sources, int beam = 1,
                                                  std::int64_t batch_size = 64);
    std::int64_t source_length() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace nngraph
