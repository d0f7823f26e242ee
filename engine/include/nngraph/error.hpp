// Errors the engine raises. Each kind maps to the command line's exit status (SPEC section 4):
// bad usage or bad input files exit 2, a failure while running exits 1.
#pragma once

#include <stdexcept>
#include <string>

namespace nngraph {

class Error : public std::runtime_error {
public:
    Error(const std::string& what, int exit_status) : std::runtime_error(what), exit_status_(exit_status) {}
    int exit_status() const { return exit_status_; }

private:
    int exit_status_;
};

// Bad usage or a bad input file (model, weights, data, plugin): the user can fix it. Exit status 2.
class InputError : public Error {
public:
    explicit InputError(const std::string& what) : Error(what, 2) {}
};

// Something failed while running (an op raised, a file could not be written). Exit status 1.
class RunError : public Error {
public:
    explicit RunError(const std::string& what) : Error(what, 1) {}
};

}  // namespace nngraph
