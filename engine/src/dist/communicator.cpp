#include "dist/communicator.hpp"

#include <cstdlib>

namespace nngraph::dist {
namespace {

// Open MPI's mpirun sets this in every process it launches; without it MPI is never started, so a
// plain run pays nothing for MPI and needs no daemon.
bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

}  // namespace

Communicator& world() {
    if (!launched_by_mpirun()) return single_process();
    return load_mpi_world();
}

}  // namespace nngraph::dist
