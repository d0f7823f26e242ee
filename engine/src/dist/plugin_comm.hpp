// The communicator as plugins see it: the C function table of plugin.h (nng_comm) over world().
#pragma once

#include "nngraph/plugin.h"

namespace nngraph::dist {

// The table the executor hands every op call. MPI starts on its first use, not before: a run whose
// ops never talk across ranks pays nothing for it.
const nng_comm* plugin_comm();

}  // namespace nngraph::dist
