#include "train/loss_weight.hpp"

#include <algorithm>

namespace nngraph {
namespace {

class WeighingLoss final : public LossFunction {
public:
    WeighingLoss(std::shared_ptr<const LossFunction> loss, std::shared_ptr<double> weight)
        : loss_(std::move(loss)), weight_(std::move(weight)) {}
    const char* name() const override { return loss_->name(); }
    bool works_from_logits(nng_output_role role) const override { return loss_->works_from_logits(role); }
    Shape target_shape(const Shape& prediction_shape) const override { return loss_->target_shape(prediction_shape); }
    double evaluate(const LossCall& call) const override {
        *weight_ += loss_weight(call);
        return loss_->evaluate(call);
    }

private:
    std::shared_ptr<const LossFunction> loss_;
    std::shared_ptr<double> weight_;
};

}  // namespace

double loss_weight(const LossCall& call) {
    if (call.mask.empty()) return call.prediction.shape.empty() ? 1.0 : double(call.prediction.shape.front());
    return double(std::count_if(call.mask.begin(), call.mask.end(), [](std::uint8_t m) { return m != 0; }));
}

std::shared_ptr<const LossFunction> weighing(std::shared_ptr<const LossFunction> loss, std::shared_ptr<double> weight) {
    return std::make_shared<WeighingLoss>(std::move(loss), std::move(weight));
}

}  // namespace nngraph
