#include "data/tensor_fit.hpp"

#include <cmath>
#include <limits>
#include <type_traits>

#include "train/losses.hpp"

namespace nngraph {
namespace {

template <class From, class To>
void convert_values(const Tensor& in, Tensor& out, const std::string& what) {
    const From* src = in.data<From>();
    To* dst = out.data<To>();
    for (std::int64_t i = 0; i < in.numel(); ++i) {
        if constexpr (std::is_integral_v<To>) {
            const long double v = static_cast<long double>(src[i]);
            if (v != std::floor(v) || v < static_cast<long double>(std::numeric_limits<To>::min()) ||
                v > static_cast<long double>(std::numeric_limits<To>::max())) {
                throw InputError(what + ": value " + std::to_string(static_cast<double>(src[i])) + " at element " +
                                 std::to_string(i) + " does not fit " + std::string(dtype_name(out.dtype())));
            }
        }
        dst[i] = static_cast<To>(src[i]);
    }
}

template <class From>
void convert_from(const Tensor& in, Tensor& out, const std::string& what) {
    switch (out.dtype()) {
        case DType::F32:
            convert_values<From, float>(in, out, what);
            break;
        case DType::I32:
            convert_values<From, std::int32_t>(in, out, what);
            break;
        case DType::I64:
            convert_values<From, std::int64_t>(in, out, what);
            break;
        case DType::U8:
            convert_values<From, std::uint8_t>(in, out, what);
            break;
    }
}

}  // namespace

Tensor convert_dtype(const Tensor& tensor, DType dtype, const std::string& what) {
    if (tensor.dtype() == dtype) return tensor;
    Tensor out(dtype, tensor.shape());
    switch (tensor.dtype()) {
        case DType::F32:
            convert_from<float>(tensor, out, what);
            break;
        case DType::I32:
            convert_from<std::int32_t>(tensor, out, what);
            break;
        case DType::I64:
            convert_from<std::int64_t>(tensor, out, what);
            break;
        case DType::U8:
            convert_from<std::uint8_t>(tensor, out, what);
            break;
    }
    return out;
}

Tensor fit_targets(const Graph& graph, std::size_t index, const std::string& loss, Tensor values,
                   const std::string& what) {
    Tensor targets = convert_dtype(values, DType::F32, what);
    if (loss.empty()) return targets;
    const TensorId output = graph.outputs().at(index);
    Shape prediction = graph.tensor(output).info.shape;
    const std::int64_t rows = targets.rank() ? targets.dim(0) : 0;
    prediction[0] = rows;
    Shape wanted = make_loss(loss)->target_shape(prediction);
    const std::int64_t per_row = rows ? targets.numel() / rows : 0;
    const std::int64_t wanted_per_row = rows ? shape_numel(wanted) / rows : 0;
    if (per_row == wanted_per_row) {
        targets.reshape(wanted);
        return targets;
    }
    // Class ids for a one-hot loss.
    if (loss == "categorical_crossentropy" && per_row == 1) {
        const std::int64_t classes = wanted.back();
        Tensor one_hot(DType::F32, wanted);
        for (std::int64_t r = 0; r < rows; ++r) {
            const float id = targets.data<float>()[r];
            if (id < 0 || id >= float(classes) || id != std::floor(id)) {
                throw InputError(what + ": row " + std::to_string(r) + " holds " + std::to_string(id) +
                                 ", not a class id below " + std::to_string(classes));
            }
            one_hot.data<float>()[r * classes + static_cast<std::int64_t>(id)] = 1.0f;
        }
        return one_hot;
    }
    Shape shown = wanted;
    shown[0] = -1;
    throw InputError(what + " has shape " + shape_to_string(targets.shape()) + ", but " + loss + " on output '" +
                     graph.tensor(output).name + "' needs targets of shape " + shape_to_string(shown));
}

}  // namespace nngraph
