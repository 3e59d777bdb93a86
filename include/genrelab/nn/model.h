// Model planning: the `model.layers` list of an experiment turned into validated layer
// descriptions with inferred shapes and parameter lists, shared by both backends.
// Activations are channels-last like Keras: one example is (h, w, c); a batch is (n, h, w, c).
// Parameter layouts (canonical, used by both backends and by checkpoints):
//   conv2d kernel (filters, kh, kw, in_c) [cuDNN NHWC "KRSC"], bias (filters)
//   dense  kernel (in, units) [Keras], bias (units)
//   batchnorm gamma, beta, moving_mean, moving_var (c)
//   gru    kernel (features, 3·units), recurrent_kernel (units, 3·units), bias (2, 3·units)
//          [Keras reset_after=True; gate blocks z, r, h; bias row 0 = input, row 1 = recurrent]
//   lstm   kernel (features, 4·units), recurrent_kernel (units, 4·units), bias (4·units)
//          [Keras; gate blocks i, f, c, o]
//   bidirectional recurrent layers add backward_kernel, backward_recurrent_kernel, backward_bias.
// Recurrent layers run over the time axis = the w (frames) axis: an input (h, w, c) is read as
// w time steps of h·c features, feature index hh·c + cc (x[t][f] = in[hh][t][cc]); the output is
// (1, w, units·dirs) with return_sequences, else (1, 1, units·dirs) (dirs = 2 when bidirectional,
// forward and backward halves concatenated like Keras merge_mode="concat").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "genrelab/config.h"

namespace genrelab::ops {
struct ConvPoolGeom;  // ops/conv_pool.h
struct ConvColsGeom;  // ops/im2col.h
struct ConvEpilogueGeom;  // ops/conv_epilogue.h
struct EpilogueDropout;   // ops/nn_activation.h
struct DropoutStep;       // ops/nn_activation.h
}

namespace genrelab::nn {

struct Shape3 {
  int64_t h = 1, w = 1, c = 1;
  int64_t size() const { return h * w * c; }
  bool operator==(const Shape3& o) const { return h == o.h && w == o.w && c == o.c; }
  bool operator!=(const Shape3& o) const { return !(*this == o); }
  std::string str() const;  // "(128, 1206, 1)"
};

// orthogonal: Keras's recurrent-kernel default; lstm_bias: zeros with the forget-gate block at
// one (Keras unit_forget_bias=True).
enum class Init { glorot_uniform, he_uniform, he_normal, zeros, ones, orthogonal, lstm_bias };

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
  // Multiply-adds × 2 of one example's forward pass (conv2d, dense, gru, lstm; 0 for the rest).
  int64_t forward_flops() const;
};

struct ModelPlan {
  Shape3 input;
  int64_t classes = 0;
  std::vector<LayerDesc> layers;
  int64_t param_count() const;
  int64_t trainable_count() const;
  int64_t forward_flops() const;  // per example
};

// Validates `model.layers` (unknown layer types or keys are ConfigErrors naming
// model.layers[i].key and the file) and infers every shape. A layer that cannot produce a valid
// shape is rejected with its index, its input shape and the reason. `"units": "classes"` in a
// dense layer means the number of classes. The last layer must be dense(classes) with softmax.
ModelPlan plan_model(const Config& config, Shape3 input, int64_t classes);
// The same from a bare layer list (tests, tools); `source` names where the list came from.
ModelPlan plan_layers(const json& layers, Shape3 input, int64_t classes, const std::string& source = "model.layers");

// Mel frames of `samples` audio samples under the config's features: 1 + samples / hop when
// features.center, else 1 + (samples − n_fft) / hop (0 when shorter than n_fft).
int64_t feature_frames(const Config& config, int64_t samples);
// The network input (n_mels, frames, 1) of one training example: frames of
// dataset.window_samples when set, else of dataset.clip_samples; nullopt when neither is set.
std::optional<Shape3> input_shape(const Config& config);

// Keras-style table: layer (type), output shape, params; then totals.
std::string model_summary(const ModelPlan& plan);

// The registered layer types (for docs and tests that loop over them).
std::vector<std::string> layer_types();

// Geometry of a window layer (conv2d, maxpool2d, avgpool2d) with its padding resolved the
// TensorFlow/Keras way: "valid" pads nothing and floors; "same" gives out = ceil(in / stride) and
// pads total = max((out − 1)·stride + (k − 1)·dilation + 1 − in, 0), top/left = total / 2 (the odd
// element goes to the bottom/right).
struct Window2d {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
};
Window2d window_of(const LayerDesc& layer);
// A conv2d layer's im2col geometry (its Keras padding as the zeros outside the map).
ops::ConvColsGeom conv_cols_geom(const LayerDesc& conv);

// train.fuse_conv_pool: true when the plan starts with conv2d → maxpool2d and the conv's kernel
// volume kh·kw·c is at most ops::kConvPoolMaxK (the first conv on a spectrogram: one channel) and
// the pool window at most ops::kConvPoolMaxWindow in each direction, so a backend may run the two
// as one (ops/conv_pool.h). `why` (when given) says why not.
bool conv_pool_fusable(const ModelPlan& plan, std::string* why = nullptr);
// The fused pair's geometry (layers 0 and 1 of a fusable plan).
ops::ConvPoolGeom conv_pool_geom(const ModelPlan& plan);

// A dropout layer right after a fused pass, which the pass applies too: its index (−1: none), rate
// and elements per example.
struct FusedDropout {
  int64_t layer = -1;
  float rate = 0;
  int64_t size = 0;
  // Whether a pass applies it (training with a non-zero rate), and the dropout as the functors
  // take it: on when `step` (the per-step key, host or device memory) is given.
  bool drops(bool training) const { return training && layer >= 0 && rate > 0.0f; }
  ops::EpilogueDropout of(uint32_t seed, const ops::DropoutStep* step) const;
  // The scaling of a training backward's gradient (the dropout's 1 / (1 − rate); 1 when it drops nothing).
  float backward_scale() const { return drops(true) ? 1.0f / (1.0f - rate) : 1.0f; }
};
// The dropout layer at index i of the plan, if layer i is one (else layer −1).
FusedDropout fused_dropout_at(const ModelPlan& plan, size_t i);
// The names of layers first … last joined by "+", a fused run's name (its NVTX ranges and stages).
std::string joined_layer_names(const ModelPlan& plan, size_t first, size_t last);
// The least work of one stage of a training step of n examples, the stage named as its NVTX range
// ("fwd conv2d_2+maxpool2d_2+dropout_2", "bwd dense_1", "loss", "optimizer"; a run of fused
// layers is one stage). flops: the products' (forward: the layers' forward_flops; backward: twice
// that, the input and the parameter gradients, once for the step's first layer, which has no input
// gradient). bytes, as float32: a forward pass reads the run's input and parameters and writes its
// output; a backward pass reads the output's gradient and the parameters and writes the input's
// gradient (not for the first layer) and the parameters' gradients; the loss reads the logits and
// writes their gradient; the optimizer reads each trainable parameter, its gradient and its
// `moment_slots` moments and writes the parameter and the moments. A name it does not know: {0, 0}.
struct StageWork {
  double flops = 0, bytes = 0;
};
StageWork stage_work(const ModelPlan& plan, const std::string& stage, int64_t n, int moment_slots);

// The fused conv+pool's dropout (layer 2, when it is one): the fused layer applies it too.
inline FusedDropout conv_pool_dropout(const ModelPlan& plan) { return fused_dropout_at(plan, 2); }
// The fused conv+pool's last layer: 2 when it applies that dropout, else 1 (the pool).
inline size_t conv_pool_last(const ModelPlan& plan) { return conv_pool_dropout(plan).layer >= 0 ? 2 : 1; }

// train.fuse_conv_epilogue: a conv2d followed by a maxpool2d whose windows tile its output (stride
// = window, "valid"), and by a dropout after that when there is one: a backend may run the conv's
// bias + activation, the pooling and the dropout as one pass (ops/conv_epilogue.h).
struct ConvEpilogueRun {
  size_t conv = 0, pool = 0;
  int64_t dropout = -1;                         // the dropout layer, or −1
  int64_t h = 0, w = 0, c = 0, kh = 1, kw = 1;  // the conv output and the pooling windows
  int act = 0;                                  // the conv's activation (ops::kAct*) and its alpha
  float alpha = 0;
  float rate = 0;                               // the dropout's rate and elements per example (0 without)
  int64_t dropout_size = 0;
  std::string name;                             // the layers' names joined by "+" (its NVTX ranges)
  size_t last() const { return dropout >= 0 ? size_t(dropout) : pool; }
  int64_t pooled_size() const { return (h / kh) * (w / kw) * c; }  // per example
  ops::ConvEpilogueGeom geom(int lanes) const;  // for calls of `lanes` channels
  bool sign_coded() const;  // the argmax bytes carry pooled > 0 (ConvEpilogueGeom::sign_coded)
  // Whether a pass applies the dropout (training with a non-zero rate), and the dropout as the
  // functors take it: on when `step` (the per-step key, host or device memory) is given.
  bool drops(bool training) const { return training && rate > 0.0f; }
  ops::EpilogueDropout dropout_of(uint32_t seed, const ops::DropoutStep* step) const;
};
// The plan's runs, from layer `first` on (the layers before it are fused otherwise: train.fuse_conv_pool).
std::vector<ConvEpilogueRun> conv_epilogue_runs(const ModelPlan& plan, size_t first);

// Element-wise activation codes shared with the functors in ops/nn_activation.h.
enum class Act : int { none = 0, relu, elu, leaky_relu, tanh, sigmoid, softmax };
Act activation_of(const LayerDesc& layer);  // the layer's fused activation ("activation" key or its type)
double activation_alpha(const LayerDesc& layer);  // elu / leaky_relu alpha (0 otherwise)

}  // namespace genrelab::nn
