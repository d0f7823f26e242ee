// A checkpoint's training state is refused, with the file and the field named, unless every field
// is what `train --save` can have written.
#include <doctest/doctest.h>

#include "nngraph/safetensors.hpp"
#include "temp_dir.hpp"
#include "train/checkpoint.hpp"

using namespace nngraph;
using namespace nngraph::testing;

namespace {

std::filesystem::path checkpoint_with(const TempDir& dir, const std::map<std::string, std::string>& changes) {
    TensorFile file;
    const float value[] = {1.0f};
    file.tensors["dense.kernel"] = Tensor::from<float>({1}, value);
    file.metadata = {{"format", "nngraph"}, {"epochs_done", "2"}, {"steps_done", "126"},
                     {"seed", "7"},         {"best", "0.75"},     {"monitor", "val_accuracy"}};
    for (const auto& [key, text] : changes) {
        if (text.empty())
            file.metadata.erase(key);
        else
            file.metadata[key] = text;
    }
    const std::filesystem::path path = dir / "checkpoint.safetensors";
    write_safetensors(path, file);
    return path;
}

std::string refusal(const std::filesystem::path& path) {
    try {
        read_training_state(path);
    } catch (const InputError& e) {
        return e.what();
    }
    return "(accepted)";
}

}  // namespace

TEST_CASE("a well-formed checkpoint's training state is read back") {
    TempDir dir;
    const TrainingState state = read_training_state(checkpoint_with(dir, {}));
    CHECK(state.epochs_done == 2);
    CHECK(state.steps_done == 126);
    CHECK(state.seed == 7);
    CHECK(state.best == doctest::Approx(0.75));
    CHECK(state.monitor == "val_accuracy");
    // ModelCheckpoint may monitor any log, a named metric's too.
    CHECK(read_training_state(checkpoint_with(dir, {{"monitor", "val_auc"}})).monitor == "val_auc");
    // Callback state comes back as numbers by key.
    const TrainingState with_callbacks =
        read_training_state(checkpoint_with(dir, {{"callbacks.EarlyStopping.0.wait", "2"}}));
    CHECK(with_callbacks.callbacks.numbers.at("callbacks.EarlyStopping.0.wait") == 2.0);
}

TEST_CASE("every field of a checkpoint's metadata is validated and the file named") {
    TempDir dir;
    struct Case {
        std::string key, text, message;
    };
    for (const Case& c : std::vector<Case>{
             {"epochs_done", "-5", "metadata 'epochs_done' is '-5'; expected a whole number from 0 to 1000000"},
             {"epochs_done", "3x", "metadata 'epochs_done' is '3x'"},
             {"epochs_done", "99999999999", "metadata 'epochs_done' is '99999999999'"},
             {"steps_done", "-1", "metadata 'steps_done' is '-1'; expected a whole number of 0 or more"},
             {"steps_done", "1", "2 epochs done in 1 steps"},
             {"seed", " 7", "metadata 'seed' is ' 7'"},
             {"best", "nan", "metadata 'best' is 'nan'; expected a finite number"},
             {"best", "inf", "metadata 'best' is 'inf'"},
             {"monitor", "val_loss; rm",
              "metadata 'monitor' is 'val_loss; rm'; expected the name of a log such as val_accuracy"},
             {"seed", "", "metadata 'seed' is missing"},
         }) {
        const std::filesystem::path path = checkpoint_with(dir, {{c.key, c.text}});
        const std::string message = refusal(path);
        CAPTURE(message);
        CHECK(message.find(path.string()) == 0);
        CHECK(message.find(c.message) != std::string::npos);
    }
}
