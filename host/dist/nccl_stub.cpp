// make_nccl_communicator for binaries built without NCCL (or without CUDA): says so.
#include "dist_impl.h"
#include "genrelab/common.h"

namespace genrelab::dist {

#if !GENRELAB_HAVE_NCCL_V
std::unique_ptr<Communicator> make_nccl_communicator(const World& world, const std::string&, double) {
  throw RuntimeError("this genrelab was built without NCCL, so " + std::to_string(world.size) +
                     " GPU ranks cannot train together; build with NCCL (docs/scale-out.md) or run one process");
}
#endif

}  // namespace genrelab::dist
