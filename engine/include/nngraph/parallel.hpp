// Loops spread over OpenMP threads, for plugins (included by sdk.hpp) and the engine alike. Each
// runs on the calling thread alone when asked for one thread, since entering an OpenMP region
// costs a few hundred nanoseconds even with one thread (more inside another region); pair them
// with Exec::threads_for. A plugin built without OpenMP runs them on its calling thread.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nngraph/arithmetic.hpp"

namespace nng {

// body(i) for every i in [0, count): on `threads` OpenMP threads (static schedule).
template <class Body>
void parallel_for(std::int64_t count, int threads, Body&& body) {
    if (threads <= 1 || count <= 1) {
        for (std::int64_t i = 0; i < count; ++i) body(i);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (std::int64_t i = 0; i < count; ++i) body(i);
}

// body(begin, end) once on each of `threads` OpenMP threads, the ranges [begin, end) cutting
// [0, count) into near-equal runs in thread order (split_point): for loops whose body wants its
// run whole (a vectorised function over a range, a stream drawn in blocks).
template <class Body>
void parallel_ranges(std::int64_t count, int threads, Body&& body) {
    if (threads <= 1 || count <= 1) {
        body(std::int64_t{0}, count);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int thread = omp_get_thread_num(), team = omp_get_num_threads();
        body(split_point(count, team, thread), split_point(count, team, thread + 1));
    }
#else
    body(std::int64_t{0}, count);
#endif
}

}  // namespace nng
