// The NaN/Inf guard of Network: gathers every layer's gradients and parameters, asks the backend
// for their non-finite counts in one call, and names the first offending layer from the output back.
// Under fp16 loss scaling only the weights and the scale itself are checked (see network.h).
#include <cmath>
#include <sstream>

#include "genrelab/nn/network.h"

namespace genrelab::nn {

bool Network::check_finite(std::string* where) {
  const ModelPlan& p = plan();
  // fp16 loss scaling: a non-finite gradient was an overflow, its step skipped (weights untouched).
  const double scale = loss_scale();
  const bool check_gradients = scale == 0.0;
  // tensors: for each layer, its gradients then its parameters; owner: (layer, is_gradient)
  std::vector<std::pair<const float*, int64_t>> tensors;
  std::vector<std::pair<size_t, bool>> owner;
  for (size_t li = 0; li < p.layers.size(); ++li) {
    const LayerDesc& L = p.layers[li];
    LayerImpl& impl = layer(li);
    const std::vector<float*> grads = impl.grads();
    const std::vector<float*> params = impl.params();
    size_t g = 0;
    for (size_t j = 0; j < L.params.size(); ++j) {
      if (L.params[j].trainable && g < grads.size()) {
        if (!check_gradients) {
          ++g;
          continue;
        }
        tensors.push_back({grads[g++], L.params[j].size()});
        owner.push_back({li, true});
      }
    }
    for (size_t j = 0; j < L.params.size() && j < params.size(); ++j) {
      tensors.push_back({params[j], L.params[j].size()});
      owner.push_back({li, false});
    }
  }
  if (scale != 0.0 && !(scale >= kMinLossScale)) {
    if (where) {
      std::ostringstream os;
      os << "the fp16 loss scale fell to " << scale << " (below 2^-14): the gradients overflow at every scale, so the "
         << "forward pass or the loss is non-finite; train.precision=bf16 needs no loss scale";
      *where = os.str();
    }
    return false;
  }
  if (tensors.empty()) return true;
  const std::vector<int64_t> bad = count_nonfinite(tensors);
  for (size_t li = p.layers.size(); li-- > 0;) {
    for (const bool gradient : {true, false}) {
      int64_t count = 0;
      for (size_t k = 0; k < tensors.size(); ++k)
        if (owner[k].first == li && owner[k].second == gradient) count += bad[k];
      if (count == 0) continue;
      if (where)
        *where = std::string("non-finite ") + (gradient ? "gradient" : "weights") + " in layer " + std::to_string(li) +
                 " (" + p.layers[li].name + "): " + std::to_string(count) + " NaN or infinite value" +
                 (count == 1 ? "" : "s");
      return false;
    }
  }
  return true;
}

}  // namespace genrelab::nn
