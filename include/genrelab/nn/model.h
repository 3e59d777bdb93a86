// Model planning: the `model.layers` list of an experiment turned into validated layer
// descriptions with inferred shapes and parameter lists, shared by both backends.
// Activations are channels-last like Keras: one example is (h, w, c); a batch is (n, h, w, c).
// Parameter layouts (canonical, used by both backends and by checkpoints):
//   conv2d kernel (filters, kh, kw, in_c) [cuDNN NHWC "KRSC"], bias (filters)
//   dense  kernel (in, units) [Keras], bias (units)
//   batchnorm gamma, beta, moving_mean, moving_var (c)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "genrelab/config.h"

namespace genrelab::nn {

struct Shape3 {
  int64_t h = 1, w = 1, c = 1;
  int64_t size() const { return h * w * c; }
  bool operator==(const Shape3& o) const { return h == o.h && w == o.w && c == o.c; }
  std::string str() const;  // "(128, 1206, 1)"
};

enum class Init { glorot_uniform, he_uniform, he_normal, zeros, ones };

struct ParamSpec {
  std::string name;           // "kernel", "bias", "gamma", ...
  std::vector<int64_t> dims;  // canonical layout (see the file comment)
  int64_t fan_in = 0, fan_out = 0;
  Init init = Init::zeros;
  bool trainable = true;      // false for batch-norm moving statistics
  bool decay = false;         // L2 / weight decay applies (kernels only)
  int64_t size() const;
};

struct LayerDesc {
  int index = 0;              // position in model.layers
  std::string type;           // "conv2d", "maxpool2d", "dense", ...
  std::string name;           // Keras-style display name: "conv2d_1", "dense_3"
  json spec;                  // the layer's JSON with every default filled in
  Shape3 in, out;
  std::vector<ParamSpec> params;
  int64_t param_count() const;
};

struct ModelPlan {
  Shape3 input;
  int64_t classes = 0;
  std::vector<LayerDesc> layers;
  int64_t param_count() const;
  int64_t trainable_count() const;
};

// Validates `model.layers` (unknown layer types or keys are ConfigErrors naming
// model.layers[i].key and the file) and infers every shape. A layer that cannot produce a valid
// shape is rejected with its index, its input shape and the reason. `"units": "classes"` in a
// dense layer means the number of classes. The last layer must produce (1, 1, classes).
ModelPlan plan_model(const Config& config, Shape3 input, int64_t classes);

// Keras-style table: layer (type), output shape, params; then totals.
std::string model_summary(const ModelPlan& plan);

// The registered layer types (for docs and tests that loop over them).
std::vector<std::string> layer_types();

}  // namespace genrelab::nn
