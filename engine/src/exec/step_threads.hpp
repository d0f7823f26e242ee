#pragma once

#include <omp.h>

namespace nngraph {

// OpenMP's thread count for one step: ops set it call by call (one thread for a small product),
// so a step starts from the executor's count and hands the caller's back as it found it.
class StepThreads {
public:
    explicit StepThreads(int threads) : caller_(omp_get_max_threads()) {
        if (threads > 0 && threads != caller_) omp_set_num_threads(threads);
    }
    ~StepThreads() {
        if (omp_get_max_threads() != caller_) omp_set_num_threads(caller_);
    }
    StepThreads(const StepThreads&) = delete;
    StepThreads& operator=(const StepThreads&) = delete;

private:
    const int caller_;
};

}  // namespace nngraph
