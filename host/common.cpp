// Out-of-line part of common.h: the message format of a failed GENRELAB_CHECK.
#include "genrelab/common.h"

namespace genrelab::detail {

void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << "internal check failed: " << expr << " at " << file << ":" << line;
  if (!msg.empty()) os << " (" << msg << ")";
  throw RuntimeError(os.str());
}

}  // namespace genrelab::detail
