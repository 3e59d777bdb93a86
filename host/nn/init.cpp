// Training hyper-parameters from the config, the backend-independent initial weights (Philox
// keyed by seed, layer and parameter: every backend starts from the same numbers) and the state
// tensor names shared by both backends.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "genrelab/common.h"
#include "genrelab/nn/network.h"
#include "genrelab/ops/low_precision.h"
#include "genrelab/ops/philox.h"

namespace genrelab::nn {

TrainHyper TrainHyper::from_config(const Config& config) {
  TrainHyper h;
  h.optimizer = config.get_string("train.optimizer");
  h.lr = config.get_number("train.lr");
  h.beta1 = config.get_number("train.beta1");
  h.beta2 = config.get_number("train.beta2");
  h.epsilon = config.get_number("train.epsilon");
  h.momentum = config.get_number("train.momentum");
  h.nesterov = config.get_bool("train.nesterov");
  h.weight_decay = config.get_number("train.weight_decay");
  h.l2 = config.get_number("train.l2");
  h.clip_norm = config.get_optional_number("train.clip_norm").value_or(0.0);
  h.label_smoothing = config.get_number("train.label_smoothing");
  h.init = config.get_string("train.init");
  h.precision = config.get_string("train.precision");
  h.loss_scale_init = config.get_number("train.loss_scale_init");
  h.loss_scale_growth_interval = config.get_int("train.loss_scale_growth_interval");
  h.deterministic = config.get_bool("train.deterministic");
  h.conv_engine = config.get_string("train.conv_engine");
  h.cudnn_search = config.get_string("train.cudnn_search");
  h.cudnn_benchmark_limit = config.get_int("train.cudnn_benchmark_limit");
  h.cuda_graph = config.get_bool("train.cuda_graph");
  h.cuda_graph_set = config.source_of("train.cuda_graph") != "default";
  h.fuse_conv_pool = config.get_bool("train.fuse_conv_pool");
  h.fuse_conv_pool_set = config.source_of("train.fuse_conv_pool") != "default";
  h.fuse_conv_epilogue = config.get_bool("train.fuse_conv_epilogue");
  h.fuse_conv_epilogue_set = config.source_of("train.fuse_conv_epilogue") != "default";
  h.sync_batchnorm = config.get_bool("train.sync_batchnorm");
  h.seed = uint32_t(config.get_int("train.seed"));
  if (h.optimizer == "adam" && h.weight_decay > 0)
    config.fail("train.weight_decay", "is decoupled weight decay, which adam does not take: use train.optimizer=adamw, or train.l2 for an L2 penalty");
  if (h.optimizer != "sgd" && (h.momentum > 0 || h.nesterov))
    config.fail(h.nesterov ? "train.nesterov" : "train.momentum", "applies to train.optimizer=sgd only (adam has beta1)");
  if (h.nesterov && h.momentum <= 0) config.fail("train.nesterov", "needs train.momentum > 0");
  if (h.cudnn_search == "find" && h.cudnn_benchmark_limit > 0)
    config.fail("train.cudnn_benchmark_limit",
                "applies to train.cudnn_search=probe; cuDNN's Find (train.cudnn_search=find) runs every algorithm");
  if (h.beta1 >= 1.0 || h.beta2 >= 1.0) config.fail(h.beta1 >= 1.0 ? "train.beta1" : "train.beta2", "must be below 1");
  return h;
}

std::string param_tensor_name(const LayerDesc& layer, const ParamSpec& param) {
  return std::to_string(layer.index) + "." + layer.name + "." + param.name;
}

int matmul_half_format(const std::string& precision) {
  if (precision == "bf16") return ops::kHalfBf16;
  if (precision == "fp16") return ops::kHalfFp16;
  if (precision == "fp32" || precision == "tf32") return ops::kHalfNone;
  throw ConfigError("train.precision: unknown precision '" + precision + "' (fp32 | tf32 | bf16 | fp16)");
}

std::vector<std::string> optimizer_slots(const std::string& optimizer) {
  if (optimizer == "adam" || optimizer == "adamw") return {"adam.m", "adam.v"};
  if (optimizer == "sgd") return {"sgd.velocity"};
  throw ConfigError("train.optimizer: unknown optimizer '" + optimizer + "' (adam | adamw | sgd)");
}

namespace {

// Standard normal from two uniform doubles of draw j (Box–Muller).
double normal(const PhiloxStream& s, uint64_t j) {
  const double u1 = s.uniform_double(2 * j), u2 = s.uniform_double(2 * j + 1);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * M_PI * u2);
}

// Keras Orthogonal(gain 1): QR of a normal (max, min) matrix with the signs of diag(R) made
// positive (= modified Gram–Schmidt), transposed when rows < cols.
std::vector<float> orthogonal(const PhiloxStream& s, int64_t rows, int64_t cols) {
  const int64_t m = std::max(rows, cols), k = std::min(rows, cols);
  std::vector<double> a(size_t(m * k));  // a: (m, k), orthonormalised column by column
  for (int64_t i = 0; i < m * k; ++i) a[size_t(i)] = normal(s, uint64_t(i));
  for (int64_t j = 0; j < k; ++j) {
    for (int64_t p = 0; p < j; ++p) {
      double dot = 0;
      for (int64_t i = 0; i < m; ++i) dot += a[size_t(i * k + p)] * a[size_t(i * k + j)];
      for (int64_t i = 0; i < m; ++i) a[size_t(i * k + j)] -= dot * a[size_t(i * k + p)];
    }
    double norm = 0;
    for (int64_t i = 0; i < m; ++i) norm += a[size_t(i * k + j)] * a[size_t(i * k + j)];
    norm = std::sqrt(norm);
    for (int64_t i = 0; i < m; ++i) a[size_t(i * k + j)] /= norm;
  }
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] = float(rows < cols ? a[size_t(c * k + r)] : a[size_t(r * k + c)]);
  return w;
}

}  // namespace

std::vector<NamedTensor> initial_weights(const ModelPlan& plan, const TrainHyper& hyper) {
  std::vector<NamedTensor> out;
  for (const auto& L : plan.layers) {
    for (size_t j = 0; j < L.params.size(); ++j) {
      const ParamSpec& p = L.params[j];
      NamedTensor t;
      t.name = param_tensor_name(L, p);
      t.dims = p.dims;
      t.data.assign(size_t(p.size()), 0.0f);
      // Stream: (seed, init; a = layer index, b = parameter index).
      const PhiloxStream s(hyper.seed, RngPurpose::init, uint32_t(L.index), uint32_t(j));
      Init init = p.init;
      if (init == Init::glorot_uniform) {  // the kernel default: train.init chooses
        if (hyper.init == "he_uniform") init = Init::he_uniform;
        else if (hyper.init == "he_normal") init = Init::he_normal;
        else GENRELAB_CHECK(hyper.init == "glorot_uniform", "unknown initialiser '", hyper.init, "'");
      }
      const int64_t n = p.size();
      switch (init) {
        case Init::glorot_uniform:
        case Init::he_uniform: {
          const double limit = init == Init::glorot_uniform ? std::sqrt(6.0 / double(p.fan_in + p.fan_out)) : std::sqrt(6.0 / double(p.fan_in));
          for (int64_t i = 0; i < n; ++i) t.data[size_t(i)] = float(s.uniform_range(uint64_t(i), -limit, limit));
          break;
        }
        case Init::he_normal: {
          // Keras: truncated normal (redrawn beyond 2 σ) with σ = √(2 / fan_in) / 0.8796…
          const double sd = std::sqrt(2.0 / double(p.fan_in)) / 0.87962566103423978;
          for (int64_t i = 0; i < n; ++i) {
            double z = 0;
            for (uint64_t a = 0; a < 16; ++a) {
              z = normal(s, uint64_t(i) * 16 + a);
              if (std::fabs(z) <= 2.0) break;
            }
            t.data[size_t(i)] = float(sd * std::clamp(z, -2.0, 2.0));
          }
          break;
        }
        case Init::orthogonal: {
          const int64_t rows = p.dims.front(), cols = n / rows;
          t.data = orthogonal(s, rows, cols);
          break;
        }
        case Init::ones: std::fill(t.data.begin(), t.data.end(), 1.0f); break;
        case Init::lstm_bias: {
          const int64_t u = n / 4;
          for (int64_t i = u; i < 2 * u; ++i) t.data[size_t(i)] = 1.0f;
          break;
        }
        case Init::zeros: break;
      }
      out.push_back(std::move(t));
    }
  }
  return out;
}

bool use_fused_conv_pool(const ModelPlan& plan, const TrainHyper& hyper, Device device) {
  if (!hyper.fuse_conv_pool) return false;
  std::string why;
  if (!conv_pool_fusable(plan, &why)) {
    // Each note is one write: `train` builds its network beside the data, whose progress also writes.
    if (hyper.fuse_conv_pool_set) std::cerr << ("note: train.fuse_conv_pool: " + why + "; its layers run one by one\n");
    return false;
  }
  if (device == Device::cpu && hyper.fuse_conv_pool_set)
    std::cerr << "note: train.fuse_conv_pool is meant for the GPU: the cpu backend computes the same model with it, "
                 "at about the same speed (the fused layer trades memory traffic for arithmetic; docs/network-gpu.md)\n";
  return true;
}

std::vector<ConvEpilogueRun> use_fused_conv_epilogues(const ModelPlan& plan, const TrainHyper& hyper, size_t first_free) {
  if (!hyper.fuse_conv_epilogue) return {};
  std::vector<ConvEpilogueRun> runs = conv_epilogue_runs(plan, first_free);
  if (runs.empty() && hyper.fuse_conv_epilogue_set)
    std::cerr << (std::string("note: train.fuse_conv_epilogue: the model has no conv2d followed by a maxpool2d whose "
                              "windows tile its output (stride = pool size, padding valid)") +
                  (first_free ? " beyond the first pair, which train.fuse_conv_pool fuses" : "") +
                  "; its layers run one by one\n");
  return runs;
}

std::unique_ptr<Network> make_network(Device device, const ModelPlan& plan, const TrainHyper& hyper) {
  if (device == Device::cpu) return make_cpu_network(plan, hyper);
#if GENRELAB_HAVE_CUDA
  return make_cuda_network(plan, hyper);
#else
  throw RuntimeError("this genrelab was built without the CUDA backend; use --device cpu");
#endif
}

}  // namespace genrelab::nn
