// Keras's Dropout: in a training step each element (or each element of the noise shape, broadcast
// over the input) is kept with probability 1 - rate and scaled by 1 / (1 - rate), else zeroed;
// outside training (or in a deterministic gradient run) the input passes unchanged.
//
// The mask comes from nngraph's counter-based random bits: mask element j keeps iff 32 bits of
// random_bits(seed, j / 2) (the low half for even j, the high half for odd j) are at least
// rate * 2^32. Element j depends only on (seed, j), so the draw splits across threads freely and
// a seed always gives the same mask, whatever the thread count. j counts from the global batch's
// first row (nng_context.batch_offset), so data-parallel ranks draw the single-process mask, and
// on one rank's share of the steps it counts from the step's global position, so sequence-parallel
// ranks draw it too.
//
// Backward reads the mask forward saved (one byte an element of the noise shape) instead of
// drawing it again: a byte is cheaper to read than 32 random bits are to make, and the gradient
// then uses exactly the mask forward used, whatever the context of the backward call.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "nngraph/cpu.hpp"
#include "nngraph/sdk.hpp"

namespace {

using nng::Dims;
using nng::OpError;

constexpr std::int64_t kParallelElements = 1 << 15;

// mask[2p] and mask[2p + 1] for pairs p in [begin, end), from the random pair first_pair + p, as the
// file comment says. Cloned for AVX-512, where the 64-bit multiplies of the random bits vectorise;
// integer arithmetic gives the same bits on every path.
NNG_LOOP_CLONES void draw_pairs(std::uint64_t seed, std::uint64_t threshold, std::uint8_t* mask,
                                std::int64_t first_pair, std::int64_t begin, std::int64_t end) {
    for (std::int64_t p = begin; p < end; ++p) {
        const std::uint64_t r = nng::random_bits(seed, static_cast<std::uint64_t>(first_pair + p));
        mask[2 * p] = (r & 0xffffffffu) >= threshold;
        mask[2 * p + 1] = (r >> 32) >= threshold;
    }
}

// mask[j] = 1 (keep) or 0 (drop) for j < n: mask element first + j, on the calling thread.
void draw_range(std::uint64_t seed, std::uint64_t threshold, std::uint8_t* mask, std::int64_t n, std::int64_t first) {
    if (n > 0 && first % 2) {  // the high half of a pair whose low half is another call's
        mask[0] = (nng::random_bits(seed, static_cast<std::uint64_t>(first / 2)) >> 32) >= threshold;
        ++mask, --n, ++first;
    }
    const std::int64_t pairs = n / 2, first_pair = first / 2;
    draw_pairs(seed, threshold, mask, first_pair, 0, pairs);
    if (n % 2)
        mask[n - 1] =
            (nng::random_bits(seed, static_cast<std::uint64_t>(first_pair + pairs)) & 0xffffffffu) >= threshold;
}

// The same over `threads` threads.
void draw_mask(std::uint64_t seed, std::uint64_t threshold, std::uint8_t* mask, std::int64_t n, std::int64_t first,
               int threads) {
    nng::parallel_ranges(n, threads, [&](std::int64_t begin, std::int64_t end) {
        draw_range(seed, threshold, mask + begin, end - begin, first + begin);
    });
}

// How the mask (noise shape) maps onto the input: the input's dims with adjacent dims merged
// where both are broadcast or both are not, and the mask's stride along each (0 where broadcast).
struct Broadcast {
    int rank = 0;
    std::int64_t dims[NNG_MAX_RANK] = {};
    std::int64_t mask_strides[NNG_MAX_RANK] = {};

    // From the call's input (or its gradient) and the noise_shape attribute, null when not given
    // (no allocation): the mask has the input's dims but where noise_shape says 1.
    Broadcast(const nng::TensorRef& input, const Dims* noise_shape) {
        for (int k = 0; k < input.rank(); ++k) {
            const std::int64_t d = input.dim(k);
            if (d == 1) continue;  // a dim of 1 moves nothing
            const bool full = !noise_shape || (*noise_shape)[static_cast<std::size_t>(k)] != 1;
            if (rank > 0 && (mask_strides[rank - 1] != 0) == full) {
                dims[rank - 1] *= d;
            } else {
                dims[rank] = d;
                mask_strides[rank] = full ? 1 : 0;
                ++rank;
            }
        }
        if (rank == 0) {
            dims[0] = 1;
            mask_strides[0] = 1;
            rank = 1;
        }
        // Row-major strides of the mask over the merged dims (its broadcast dims count as 1).
        std::int64_t stride = 1;
        for (int k = rank - 1; k >= 0; --k) {
            if (mask_strides[k] == 0) continue;
            mask_strides[k] = stride;
            stride *= dims[k];
        }
        mask_elements = stride;
    }

    std::int64_t mask_elements = 1;
};

// v where keep is 1, +0 where it is 0: a select by bit mask, so that the loops below have no
// branch (a random mask defeats branch prediction) and vectorise, and a dropped inf or NaN still
// gives 0 as Keras's select does.
inline float kept_or_zero(float v, std::uint8_t keep) {
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & (0u - static_cast<std::uint32_t>(keep)));
}

// d[i] = m[i] ? s[i] * scale : 0 for i < width: one row whose mask is not broadcast. Cloned for
// AVX2 and AVX-512, which widen the mask bytes to lanes in one instruction.
NNG_LOOP_CLONES void masked_row(const float* s, const std::uint8_t* m, float scale, float* d, std::int64_t width) {
#pragma omp simd
    for (std::int64_t i = 0; i < width; ++i) d[i] = kept_or_zero(s[i] * scale, m[i]);
}

// Forward with a mask element per input element: each thread draws its share of the mask and
// applies it a block at a time, while the block's mask bytes are in cache.
void draw_and_apply(std::uint64_t seed, std::uint64_t threshold, std::uint8_t* mask, std::int64_t first, const float* x,
                    float scale, float* y, std::int64_t n, int threads) {
    constexpr std::int64_t kBlock = 4096;
    nng::parallel_ranges(n, threads, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t b = begin; b < end; b += kBlock) {
            const std::int64_t length = std::min(kBlock, end - b);
            draw_range(seed, threshold, mask + b, length, first + b);
            masked_row(x + b, mask + b, scale, y + b, length);
        }
    });
}

// d[i] = s[i] * scale where the mask keeps, 0 where it drops, for i < width: a row with a mask
// element each (`step` 1) or one for the whole row (`step` 0).
void masked_run(const float* s, const std::uint8_t* m, std::int64_t step, float scale, float* d, std::int64_t width) {
    if (step) {
        masked_row(s, m, scale, d, width);
    } else if (m[0]) {
#pragma omp simd
        for (std::int64_t i = 0; i < width; ++i) d[i] = s[i] * scale;
    } else {
        std::fill(d, d + width, 0.0f);
    }
}

// dst[i] = mask[i's mask element] ? src[i] * scale : 0, for forward (x to y) and backward (dy to dx).
void apply_mask(const float* src, const std::uint8_t* mask, const Broadcast& b, float scale, float* dst, int threads) {
    const int last = b.rank - 1;
    const std::int64_t width = b.dims[last], step = b.mask_strides[last];
    if (last == 0) {  // one row, the whole input: the threads split it
        nng::parallel_ranges(width, threads, [&](std::int64_t begin, std::int64_t end) {
            masked_run(src + begin, mask + begin * step, step, scale, dst + begin, end - begin);
        });
        return;
    }
    std::int64_t rows = 1;
    for (int k = 0; k < last; ++k) rows *= b.dims[k];
    nng::parallel_ranges(rows, threads, [&](std::int64_t begin, std::int64_t end) {
        // The odometer over the outer dims, started at row `begin`.
        std::int64_t index[NNG_MAX_RANK] = {};
        std::int64_t offset = 0;
        for (std::int64_t rest = begin, k = last - 1; k >= 0; --k) {
            index[k] = rest % b.dims[k];
            rest /= b.dims[k];
            offset += index[k] * b.mask_strides[k];
        }
        for (std::int64_t row = begin; row < end; ++row) {
            const float* s = src + row * width;
            float* d = dst + row * width;
            masked_run(s, mask + offset, step, scale, d, width);
            for (std::int64_t k = last - 1; k >= 0; --k) {
                offset += b.mask_strides[k];
                if (++index[k] < b.dims[k]) break;
                offset -= index[k] * b.mask_strides[k];
                index[k] = 0;
            }
        }
    });
}

void copy(const nng::TensorRef& from, const nng::TensorRef& to, int threads) {
    const auto* src = static_cast<const char*>(from.raw());
    auto* dst = static_cast<char*>(to.raw());
    const std::int64_t bytes = static_cast<std::int64_t>(to.nbytes());
    // Runs of whole cache lines, so that no line is written by two threads.
    constexpr std::int64_t kLine = 64;
    nng::parallel_ranges(nng::ceil_div(bytes, kLine), threads, [&](std::int64_t first_line, std::int64_t end_line) {
        const std::int64_t begin = first_line * kLine, end = std::min(end_line * kLine, bytes);
        std::memcpy(dst + begin, src + begin, static_cast<std::size_t>(end - begin));
    });
}

struct Dropout {
    static constexpr const char* kName = "Dropout";
    static constexpr const char* kDoc =
        "Zeroes a fraction `rate` of the input in training and scales the rest by 1 / (1 - rate)";
    static constexpr int kMinInputs = 1, kMaxInputs = 1;
    static constexpr nng_attr_spec kAttributes[] = {
        nng::required(nng::float_attr("rate", nullptr, "fraction of the input units to drop, in [0, 1]")),
        nng::nullable(nng::ints_attr("noise_shape", "null",
                                     "shape of the keep mask, broadcast over the input (null items: the input's dim)")),
        nng::nullable(nng::int_attr("seed", "null", "mixed into the step's seed")),
    };

    explicit Dropout(const nng::Attrs& attrs)
        : rate_(attrs.get_float("rate")),
          has_noise_shape_(!attrs.is_null("noise_shape")),
          has_seed_(!attrs.is_null("seed")),
          seed_(has_seed_ ? attrs.get_int("seed") : 0) {
        nng::check_attr(rate_ >= 0.0 && rate_ <= 1.0, "rate",
                        "a fraction between 0 and 1, got " + std::to_string(rate_));
        if (has_noise_shape_) noise_shape_ = attrs.get_ints("noise_shape");
        for (std::size_t k = 0; k < noise_shape_.size(); ++k) {
            nng::check_attr(noise_shape_[k] == -1 || noise_shape_[k] > 0, "noise_shape",
                            "positive dimensions or null, got " + std::to_string(noise_shape_[k]) + " at index " +
                                std::to_string(k));
        }
        // Keep iff 32 random bits >= rate * 2^32: probability 1 - rate to 2^-32 (rate 1 keeps nothing).
        threshold_ = static_cast<std::uint64_t>(std::llround(std::ldexp(rate_, 32)));
        scale_ = rate_ < 1.0 ? static_cast<float>(1.0 / (1.0 - rate_)) : 0.0f;
    }

    // The mask's shape for an input of these dims: noise_shape with nulls filled in (Keras's
    // _get_concrete_noise_shape); each of its dims must be the input's or 1.
    Dims noise_dims(const Dims& input) const {
        if (!has_noise_shape_) return input;
        if (noise_shape_.size() != input.size()) {
            throw OpError("noise_shape " + nng::dims_string(noise_shape_) + " has " +
                              std::to_string(noise_shape_.size()) + " dims but the input " + nng::dims_string(input) +
                              " has " + std::to_string(input.size()),
                          "noise_shape");
        }
        Dims noise(input.size());
        for (std::size_t k = 0; k < input.size(); ++k) noise[k] = noise_shape_[k] == -1 ? input[k] : noise_shape_[k];
        for (std::size_t k = 0; k < input.size(); ++k) {
            if (noise[k] != input[k] && noise[k] != 1 && input[k] != nng::kDynamic) {
                throw OpError("noise_shape " + nng::dims_string(noise) + " does not broadcast to the input " +
                                  nng::dims_string(input) + ": dim " + std::to_string(k) + " must be " +
                                  std::to_string(input[k]) + " or 1",
                              "noise_shape");
            }
        }
        return noise;
    }

    void infer(nng::InferContext& ctx) {
        ctx.expect_dtype(0, NNG_F32, "float32");
        const Dims input = ctx.input_dims(0);
        const Dims noise = noise_dims(input);
        const int y = ctx.add_output(NNG_F32, input);
        ctx.pass_mask(y, 0);
        const bool saves = ctx.training() && rate_ > 0.0;
        keep_ = ctx.buffer<std::uint8_t>("keep mask", saves ? nng::product(noise) : 0, nng::Lifetime::Saved);
        // 1 when forward dropped (a random step), 0 when it passed the input.
        dropped_ = ctx.buffer<std::uint8_t>("dropped", saves ? 1 : 0, nng::Lifetime::Saved);
        ctx.set_backward_needs(0);
        ctx.identity_in_inference(0);  // Keras's Dropout passes its input through when not training
        // A noise shape may share draws across the steps, which a share of them cannot see.
        if (!has_noise_shape_ && input.size() >= 3) ctx.set_sequence_role(NNG_SEQUENCE_POSITIONWISE);
        ctx.set_batch_slicing(NNG_SLICING_FREE);
        if (ctx.counting_work()) {
            // One multiply a value each way: x and y (dy and dx) moved, the keep mask written, then read.
            const nng::Work pass = nng::elementwise_work(nng::product(input), 1, 2) + nng::Work{0, nng::product(noise)};
            ctx.count_work(pass, pass);
        }
    }

    void forward(nng::Exec& exec) {
        const nng::TensorRef x = exec.input(0), y = exec.output(0);
        const int threads = exec.threads_for(x.numel(), kParallelElements);
        const bool drop = exec.random_active() && rate_ > 0.0;
        if (exec.training() && rate_ > 0.0) exec.buffer(dropped_)[0] = drop ? 1 : 0;
        if (!drop) {
            copy(x, y, threads);
            return;
        }
        const Broadcast b(x, noise_shape());
        const std::uint64_t seed =
            has_seed_ ? nng::derive_seed(exec.seed(), static_cast<std::uint64_t>(seed_)) : exec.seed();
        std::uint8_t* keep = exec.buffer(keep_);
        // A mask drawn per batch row starts where this call's rows start in the global batch; one
        // shared over the batch (noise dim 0 of 1) is the same for every part of it.
        const Dims input = x.dims();
        const bool shared_over_batch = input.empty() || (has_noise_shape_ && noise_shape_[0] == 1) || input[0] == 0;
        const int draw_threads = exec.threads_for(b.mask_elements, kParallelElements);
        const auto shard = exec.sequence_shard();
        const std::int64_t first = shared_over_batch ? 0 : exec.batch_offset() * (b.mask_elements / input[0]);
        if (!shard && b.rank == 1 && b.mask_strides[0] == 1) {  // a mask element per input element
            draw_and_apply(seed, threshold_, keep, first, x.f32(), scale_, y.f32(), x.numel(), threads);
            return;
        }
        if (shard)
            draw_share(*shard, seed, keep, input, exec.batch_offset(), draw_threads);
        else
            draw_mask(seed, threshold_, keep, b.mask_elements, first, draw_threads);
        apply_mask(x.f32(), keep, b, scale_, y.f32(), threads);
    }

    void backward(nng::Exec& exec) {
        const nng::TensorRef dx = exec.grad_input(0);
        if (!dx) return;
        const nng::TensorRef dy = exec.grad_output(0);
        const int threads = exec.threads_for(dx.numel(), kParallelElements);
        if (!dy) {
            std::memset(dx.raw(), 0, dx.nbytes());
            return;
        }
        if (rate_ == 0.0 || exec.buffer(dropped_)[0] == 0) {
            copy(dy, dx, threads);
            return;
        }
        apply_mask(dy.f32(), exec.buffer(keep_), Broadcast(dx, noise_shape()), scale_, dx.f32(), threads);
    }

    const Dims* noise_shape() const { return has_noise_shape_ ? &noise_shape_ : nullptr; }

    // The mask of one rank's share of the steps (input (batch, local steps, ...), no noise shape):
    // each of its pieces of consecutive global steps drawn where the whole sequence has it.
    void draw_share(const nngraph::SequenceShard& shard, std::uint64_t seed, std::uint8_t* keep, const Dims& input,
                    std::int64_t batch_offset, int threads) const {
        const std::int64_t per_step = nng::product(input, 2), local = input[1], piece = shard.piece_steps();
        for (std::int64_t row = 0; row < input[0]; ++row) {
            for (std::int64_t s = 0; s < local; s += piece) {
                const std::int64_t first =
                    ((batch_offset + row) * shard.global_steps() + shard.global_position(s)) * per_step;
                draw_mask(seed, threshold_, keep + (row * local + s) * per_step, piece * per_step, first, threads);
            }
        }
    }

    double rate_;
    bool has_noise_shape_, has_seed_;
    std::int64_t seed_;
    Dims noise_shape_;
    std::uint64_t threshold_ = 0;
    float scale_ = 1.0f;
    nng::Buffer<std::uint8_t> keep_, dropped_;
};

}  // namespace

NNG_PLUGIN("dropout", "0.1.0", nng::op<Dropout>())
