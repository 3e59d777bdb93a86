// Model planning: the layer registry (each type's keys, defaults and shape rule), validation of
// `model.layers` with errors naming model.layers[i].key, shape inference and the Keras-style summary.
#include "genrelab/nn/model.h"
#include "genrelab/ops/conv_epilogue.h"
#include "genrelab/ops/conv_pool.h"
#include "genrelab/ops/im2col.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include "genrelab/common.h"

namespace genrelab::nn {

namespace {

enum class KeyKind { integer, number, boolean, choice, int_or_pair, units, int_or_pair_or_null };

struct LayerKey {
  std::string name;
  KeyKind kind;
  json def;
  double min = -INFINITY, max = INFINITY;
  std::vector<std::string> choices;
  std::string doc;
};

using Fail = std::function<void(const std::string& key, const std::string& msg)>;

struct LayerType {
  std::string name;
  std::string keras;  // display class name
  std::vector<LayerKey> keys;
  // Infers the output shape and parameters; throws via `fail("", reason)` when impossible.
  std::function<void(LayerDesc&, int64_t classes, const Fail&)> plan;
};

const std::vector<std::string> kActivations = {"none", "linear", "relu", "elu", "leaky_relu", "tanh", "sigmoid", "softmax"};

LayerKey k_int(std::string n, json def, double mn, std::string doc, double mx = INFINITY) {
  return {std::move(n), KeyKind::integer, std::move(def), mn, mx, {}, std::move(doc)};
}
LayerKey k_num(std::string n, json def, double mn, double mx, std::string doc) {
  return {std::move(n), KeyKind::number, std::move(def), mn, mx, {}, std::move(doc)};
}
LayerKey k_bool(std::string n, bool def, std::string doc) { return {std::move(n), KeyKind::boolean, def, 0, 0, {}, std::move(doc)}; }
LayerKey k_choice(std::string n, std::string def, std::vector<std::string> c, std::string doc) {
  return {std::move(n), KeyKind::choice, std::move(def), 0, 0, std::move(c), std::move(doc)};
}
LayerKey k_pair(std::string n, json def, std::string doc, KeyKind kind = KeyKind::int_or_pair) {
  return {std::move(n), kind, std::move(def), 1, INFINITY, {}, std::move(doc)};
}

std::string show(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// (a, b) of an int-or-pair value (already validated).
std::pair<int64_t, int64_t> pair_of(const json& v) {
  if (v.is_array()) return {v[0].get<int64_t>(), v[1].get<int64_t>()};
  return {v.get<int64_t>(), v.get<int64_t>()};
}

bool is_int(const json& v) {
  if (v.is_number_integer()) return true;
  if (v.is_number_float()) { const double x = v.get<double>(); return std::isfinite(x) && x == std::floor(x); }
  return false;
}

// Checks one value; returns "" or the problem.
std::string key_problem(const LayerKey& k, const json& v) {
  auto want = [&](const std::string& what) { return "expected " + what + ", got " + show(v); };
  auto bounds = [&](double x, const std::string& what) -> std::string {
    if (x < k.min || x > k.max) {
      std::ostringstream os;
      os << what;
      if (std::isfinite(k.min) && std::isfinite(k.max)) os << " in [" << k.min << ", " << k.max << "]";
      else if (std::isfinite(k.min)) os << " >= " << k.min;
      return want(os.str());
    }
    return "";
  };
  switch (k.kind) {
    case KeyKind::integer:
      if (!is_int(v)) return want("an integer");
      return bounds(v.get<double>(), "an integer");
    case KeyKind::number:
      if (!v.is_number() || !std::isfinite(v.get<double>())) return want("a number");
      return bounds(v.get<double>(), "a number");
    case KeyKind::boolean: return v.is_boolean() ? "" : want("true or false");
    case KeyKind::choice: {
      std::string all;
      for (size_t i = 0; i < k.choices.size(); ++i) all += (i ? "|" : "") + k.choices[i];
      if (!v.is_string()) return want("one of " + all);
      const std::string s = v.get<std::string>();
      if (std::find(k.choices.begin(), k.choices.end(), s) != k.choices.end()) return "";
      const std::string guess = closest_match(s, k.choices);
      return want("one of " + all) + (guess.empty() ? "" : " (did you mean '" + guess + "'?)");
    }
    case KeyKind::int_or_pair_or_null:
      if (v.is_null()) return "";
      [[fallthrough]];
    case KeyKind::int_or_pair:
      if (is_int(v) && v.get<double>() >= 1) return "";
      if (v.is_array() && v.size() == 2 && is_int(v[0]) && is_int(v[1]) && v[0].get<double>() >= 1 && v[1].get<double>() >= 1)
        return "";
      return want("a positive integer or a pair [h, w] of them");
    case KeyKind::units:
      if (v.is_string() && v.get<std::string>() == "classes") return "";
      if (is_int(v) && v.get<double>() >= 1) return "";
      return want("a positive integer or \"classes\"");
  }
  return "";
}

ParamSpec param(std::string name, std::vector<int64_t> dims, Init init, int64_t fan_in = 0, int64_t fan_out = 0,
                bool trainable = true, bool decay = false) {
  ParamSpec p;
  p.name = std::move(name);
  p.dims = std::move(dims);
  p.init = init;
  p.fan_in = fan_in;
  p.fan_out = fan_out;
  p.trainable = trainable;
  p.decay = decay;
  return p;
}

// Output length of a window along one axis; 0 when the window does not fit ("valid").
int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t d, bool same) {
  if (same) return ceil_div(in, s);
  const int64_t eff = (k - 1) * d + 1;
  return in >= eff ? (in - eff) / s + 1 : 0;
}

void plan_window(LayerDesc& L, const Fail& fail, bool conv) {
  const Window2d g = window_of(L);
  const bool same = L.spec["padding"] == "same";
  const int64_t oh = window_out(L.in.h, g.kh, g.sh, g.dh, same);
  const int64_t ow = window_out(L.in.w, g.kw, g.sw, g.dw, same);
  if (oh < 1 || ow < 1) {
    std::ostringstream os;
    os << "a " << (g.kh - 1) * g.dh + 1 << "x" << (g.kw - 1) * g.dw + 1 << " window"
       << (g.dh > 1 || g.dw > 1 ? " (dilated)" : "") << " does not fit the " << L.in.h << "x" << L.in.w
       << " input with padding \"valid\" (use padding \"same\", a smaller " << (conv ? "kernel" : "size")
       << ", or fewer downsampling layers before it)";
    fail("", os.str());
  }
  L.out = {oh, ow, conv ? L.spec["filters"].get<int64_t>() : L.in.c};
}

std::vector<LayerType> make_registry() {
  std::vector<LayerType> r;
  const LayerKey padding = k_choice("padding", "valid", {"valid", "same"}, "valid (no padding, floors) | same (out = ceil(in / stride))");

  r.push_back({"conv2d", "Conv2D",
               {k_int("filters", nullptr, 1, "output channels"), k_pair("kernel", nullptr, "kernel size: k or [kh, kw]"),
                k_pair("stride", 1, "stride: s or [sh, sw]"), padding, k_pair("dilation", 1, "dilation: d or [dh, dw]"),
                k_choice("activation", "none", kActivations, "fused activation"),
                k_num("alpha", 0.3, 0, INFINITY, "elu / leaky_relu alpha of the fused activation (elu default 1.0)"),
                k_bool("use_bias", true, "add a bias per filter")},
               [](LayerDesc& L, int64_t, const Fail& fail) {
                 plan_window(L, fail, true);
                 const Window2d g = window_of(L);
                 const int64_t f = L.out.c, c = L.in.c;
                 L.params.push_back(param("kernel", {f, g.kh, g.kw, c}, Init::glorot_uniform, g.kh * g.kw * c, g.kh * g.kw * f, true, true));
                 if (L.spec["use_bias"].get<bool>()) L.params.push_back(param("bias", {f}, Init::zeros));
               }});
  for (const auto& [type, keras] : {std::pair<std::string, std::string>{"maxpool2d", "MaxPooling2D"}, {"avgpool2d", "AveragePooling2D"}}) {
    r.push_back({type, keras,
                 {k_pair("size", nullptr, "window: p or [ph, pw]"),
                  k_pair("stride", nullptr, "stride: s or [sh, sw]; null = size", KeyKind::int_or_pair_or_null), padding},
                 [](LayerDesc& L, int64_t, const Fail& fail) { plan_window(L, fail, false); }});
  }
  r.push_back({"global_avgpool", "GlobalAveragePooling2D", {}, [](LayerDesc& L, int64_t, const Fail&) { L.out = {1, 1, L.in.c}; }});
  r.push_back({"relu", "ReLU", {}, [](LayerDesc& L, int64_t, const Fail&) { L.out = L.in; }});
  r.push_back({"elu", "ELU", {k_num("alpha", 1.0, 0, INFINITY, "negative-side scale")},
               [](LayerDesc& L, int64_t, const Fail&) { L.out = L.in; }});
  r.push_back({"leaky_relu", "LeakyReLU", {k_num("alpha", 0.3, 0, INFINITY, "negative slope (Keras default 0.3)")},
               [](LayerDesc& L, int64_t, const Fail&) { L.out = L.in; }});
  r.push_back({"batchnorm", "BatchNormalization",
               {k_num("momentum", 0.99, 0, 1, "moving statistics: m = momentum·m + (1 − momentum)·batch"),
                k_num("epsilon", 1e-3, 1e-12, INFINITY, "added to the variance")},
               [](LayerDesc& L, int64_t, const Fail&) {
                 L.out = L.in;
                 const int64_t c = L.in.c;
                 L.params.push_back(param("gamma", {c}, Init::ones));
                 L.params.push_back(param("beta", {c}, Init::zeros));
                 L.params.push_back(param("moving_mean", {c}, Init::zeros, 0, 0, false));
                 L.params.push_back(param("moving_var", {c}, Init::ones, 0, 0, false));
               }});
  r.push_back({"dropout", "Dropout", {k_num("rate", nullptr, 0, 1, "fraction of activations zeroed in training")},
               [](LayerDesc& L, int64_t, const Fail& fail) {
                 if (L.spec["rate"].get<double>() >= 1.0) fail("rate", "must be below 1 (rate 1 drops everything)");
                 L.out = L.in;
               }});
  r.push_back({"flatten", "Flatten", {}, [](LayerDesc& L, int64_t, const Fail&) { L.out = {1, 1, L.in.size()}; }});
  r.push_back({"dense", "Dense",
               {{"units", KeyKind::units, nullptr, 1, INFINITY, {}, "outputs: an integer or \"classes\""},
                k_choice("activation", "none", kActivations, "fused activation (softmax only on the last layer)"),
                k_num("alpha", 0.3, 0, INFINITY, "elu / leaky_relu alpha of the fused activation (elu default 1.0)"),
                k_bool("use_bias", true, "add a bias per unit")},
               [](LayerDesc& L, int64_t classes, const Fail& fail) {
                 if (L.in.h != 1 || L.in.w != 1)
                   fail("", "dense needs a flat input (h = w = 1); put a flatten or global_avgpool layer before it");
                 const json& u = L.spec["units"];
                 const int64_t units = u.is_string() ? classes : u.get<int64_t>();
                 L.out = {1, 1, units};
                 L.params.push_back(param("kernel", {L.in.c, units}, Init::glorot_uniform, L.in.c, units, true, true));
                 if (L.spec["use_bias"].get<bool>()) L.params.push_back(param("bias", {units}, Init::zeros));
               }});
  for (const auto& [type, keras, gates] : {std::tuple<std::string, std::string, int64_t>{"gru", "GRU", 3}, {"lstm", "LSTM", 4}}) {
    const int64_t G = gates;
    const bool gru = type == "gru";
    r.push_back({type, keras,
                 {k_int("units", nullptr, 1, "hidden units per direction"), k_bool("bidirectional", false, "also run backwards, concatenate"),
                  k_bool("return_sequences", false, "output every time step (1, w, units·dirs) instead of the last (1, 1, units·dirs)"),
                  k_bool("use_bias", true, "gate biases")},
                 [G, gru](LayerDesc& L, int64_t, const Fail&) {
                   const int64_t u = L.spec["units"].get<int64_t>(), F = L.in.h * L.in.c, T = L.in.w;
                   const int64_t dirs = L.spec["bidirectional"].get<bool>() ? 2 : 1;
                   L.out = L.spec["return_sequences"].get<bool>() ? Shape3{1, T, u * dirs} : Shape3{1, 1, u * dirs};
                   for (int64_t d = 0; d < dirs; ++d) {
                     const std::string pre = d ? "backward_" : "";
                     L.params.push_back(param(pre + "kernel", {F, G * u}, Init::glorot_uniform, F, G * u, true, true));
                     L.params.push_back(param(pre + "recurrent_kernel", {u, G * u}, Init::orthogonal, u, G * u, true, true));
                     if (L.spec["use_bias"].get<bool>()) {
                       if (gru) L.params.push_back(param(pre + "bias", {2, G * u}, Init::zeros));
                       else L.params.push_back(param(pre + "bias", {G * u}, Init::lstm_bias));
                     }
                   }
                 }});
  }
  return r;
}

const std::vector<LayerType>& registry() {
  static const std::vector<LayerType> r = make_registry();
  return r;
}

std::string thousands(int64_t v) {
  std::string s = std::to_string(v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

}  // namespace

std::string Shape3::str() const {
  std::ostringstream os;
  os << "(" << h << ", " << w << ", " << c << ")";
  return os.str();
}

int64_t ParamSpec::size() const {
  int64_t s = 1;
  for (int64_t d : dims) s *= d;
  return s;
}

int64_t LayerDesc::param_count() const {
  int64_t s = 0;
  for (const auto& p : params) s += p.size();
  return s;
}

int64_t LayerDesc::forward_flops() const {
  if (type == "conv2d") {
    const Window2d g = window_of(*this);
    return 2 * out.size() * g.kh * g.kw * in.c;
  }
  if (type == "dense") return 2 * in.c * out.c;
  if (type == "gru" || type == "lstm") {
    const int64_t G = type == "gru" ? 3 : 4, u = spec["units"].get<int64_t>();
    const int64_t dirs = spec["bidirectional"].get<bool>() ? 2 : 1;
    return 2 * in.w * dirs * (in.h * in.c + u) * G * u;
  }
  return 0;
}

int64_t ModelPlan::param_count() const {
  int64_t s = 0;
  for (const auto& l : layers) s += l.param_count();
  return s;
}

int64_t ModelPlan::trainable_count() const {
  int64_t s = 0;
  for (const auto& l : layers)
    for (const auto& p : l.params) s += p.trainable ? p.size() : 0;
  return s;
}

int64_t ModelPlan::forward_flops() const {
  int64_t s = 0;
  for (const auto& l : layers) s += l.forward_flops();
  return s;
}

std::vector<std::string> layer_types() {
  std::vector<std::string> out;
  for (const auto& t : registry()) out.push_back(t.name);
  return out;
}

Window2d window_of(const LayerDesc& L) {
  Window2d g;
  if (L.type == "conv2d") {
    std::tie(g.kh, g.kw) = pair_of(L.spec["kernel"]);
    std::tie(g.sh, g.sw) = pair_of(L.spec["stride"]);
    std::tie(g.dh, g.dw) = pair_of(L.spec["dilation"]);
  } else if (L.type == "maxpool2d" || L.type == "avgpool2d") {
    std::tie(g.kh, g.kw) = pair_of(L.spec["size"]);
    std::tie(g.sh, g.sw) = pair_of(L.spec["stride"].is_null() ? L.spec["size"] : L.spec["stride"]);
  } else {
    GENRELAB_CHECK(false, "window_of: layer ", L.index, " (", L.type, ") has no window");
  }
  if (L.spec.value("padding", "valid") == "same") {
    auto pad = [](int64_t in, int64_t k, int64_t s, int64_t d, int64_t& lo, int64_t& hi) {
      const int64_t out = ceil_div(in, s);
      const int64_t total = std::max<int64_t>((out - 1) * s + (k - 1) * d + 1 - in, 0);
      lo = total / 2;
      hi = total - lo;
    };
    pad(L.in.h, g.kh, g.sh, g.dh, g.pad_top, g.pad_bottom);
    pad(L.in.w, g.kw, g.sw, g.dw, g.pad_left, g.pad_right);
  }
  return g;
}

bool conv_pool_fusable(const ModelPlan& plan, std::string* why) {
  auto no = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  if (plan.layers.size() < 2 || plan.layers[0].type != "conv2d" || plan.layers[1].type != "maxpool2d")
    return no("the model does not start with conv2d followed by maxpool2d");
  const LayerDesc& conv = plan.layers[0];
  const Window2d g = window_of(conv);
  if (g.kh * g.kw * conv.in.c > ops::kConvPoolMaxK)
    return no("the first conv2d's kernel volume " + std::to_string(g.kh * g.kw * conv.in.c) + " (kh·kw·channels) is above " +
              std::to_string(ops::kConvPoolMaxK));
  const Window2d pool = window_of(plan.layers[1]);
  if (pool.kh > ops::kConvPoolMaxWindow || pool.kw > ops::kConvPoolMaxWindow)
    return no("the first maxpool2d's window " + std::to_string(pool.kh) + "x" + std::to_string(pool.kw) +
              " is larger than " + std::to_string(ops::kConvPoolMaxWindow) + " in a direction");
  const int64_t limit = int64_t(1) << 31;
  const int64_t last_tap = ((g.kh - 1) * g.dh * conv.in.w + (g.kw - 1) * g.dw) * conv.in.c + conv.in.c;
  if (conv.in.size() >= limit || plan.layers[1].out.size() >= limit || last_tap >= limit)
    return no("one example's maps are too large for 32-bit indices");
  const int64_t positions = plan.layers[1].out.h * plan.layers[1].out.w;
  if (positions > ops::kConvPoolMaxPositions)
    return no("the pooled map's " + std::to_string(positions) + " positions per example are more than the fused GPU "
              "backward launches (" + std::to_string(ops::kConvPoolMaxPositions) + ")");
  return true;
}

std::vector<ConvEpilogueRun> conv_epilogue_runs(const ModelPlan& plan, size_t first) {
  std::vector<ConvEpilogueRun> runs;
  const auto& L = plan.layers;
  for (size_t i = first; i + 1 < L.size(); ++i) {
    if (L[i].type != "conv2d" || L[i + 1].type != "maxpool2d") continue;
    const LayerDesc& pool = L[i + 1];
    const Window2d p = window_of(pool);
    if (!ops::ConvEpilogueGeom::tiles(pool.in.h, pool.in.w, p.kh, p.kw, p.sh, p.sw, p.pad_top, p.pad_left, pool.out.h,
                                      pool.out.w) ||
        pool.out.size() >= (int64_t(1) << 31))
      continue;
    ConvEpilogueRun run;
    run.conv = i, run.pool = i + 1;
    run.h = pool.in.h, run.w = pool.in.w, run.c = pool.in.c, run.kh = p.kh, run.kw = p.kw;
    run.act = int(activation_of(L[i])), run.alpha = float(activation_alpha(L[i]));
    const FusedDropout drop = fused_dropout_at(plan, i + 2);
    if (drop.layer >= 0) run.dropout = drop.layer, run.rate = drop.rate, run.dropout_size = drop.size;
    run.name = joined_layer_names(plan, run.conv, run.last());
    runs.push_back(run);
    i = run.last();
  }
  return runs;
}

ops::ConvEpilogueGeom ConvEpilogueRun::geom(int lanes) const { return ops::ConvEpilogueGeom(h, w, c, kh, kw, lanes); }
bool ConvEpilogueRun::sign_coded() const { return ops::ConvEpilogueGeom::sign_coded(act, kh, kw); }

ops::EpilogueDropout ConvEpilogueRun::dropout_of(uint32_t seed, const ops::DropoutStep* step) const {
  return FusedDropout{dropout, rate, dropout_size}.of(seed, step);
}

std::string joined_layer_names(const ModelPlan& plan, size_t first, size_t last) {
  std::string name = plan.layers[first].name;
  for (size_t j = first + 1; j <= last; ++j) name += "+" + plan.layers[j].name;
  return name;
}

StageWork stage_work(const ModelPlan& plan, const std::string& stage, int64_t n, int moment_slots) {
  StageWork w;
  const double f4 = 4.0 * double(n);  // bytes of one float per example
  if (stage == "loss") {
    w.bytes = 2 * f4 * double(plan.classes);
    return w;
  }
  if (stage == "optimizer") {
    w.bytes = 4.0 * double(plan.trainable_count()) * (3 + 2 * moment_slots);
    return w;
  }
  const bool forward = stage.rfind("fwd ", 0) == 0;
  if (!forward && stage.rfind("bwd ", 0) != 0) return w;
  // The run's layers: consecutive, their names joined by "+" after the prefix.
  std::vector<std::string> names;
  for (size_t at = 4, plus; at <= stage.size(); at = plus + 1) {
    plus = std::min(stage.find('+', at), stage.size());
    names.push_back(stage.substr(at, plus - at));
  }
  size_t first = 0;
  while (first < plan.layers.size() && plan.layers[first].name != names[0]) ++first;
  const size_t last = first + names.size() - 1;
  if (last >= plan.layers.size()) return w;
  for (size_t k = 1; k < names.size(); ++k)
    if (plan.layers[first + k].name != names[k]) return w;
  double params = 0;
  for (size_t j = first; j <= last; ++j) {
    const double f = double(plan.layers[j].forward_flops()) * double(n);
    w.flops += forward ? f : (j == 0 ? f : 2 * f);
    params += 4.0 * double(plan.layers[j].param_count());
  }
  const double in = f4 * double(plan.layers[first].in.size()), out = f4 * double(plan.layers[last].out.size());
  w.bytes = forward ? in + params + out : out + 2 * params + (first == 0 ? 0.0 : in);
  return w;
}

FusedDropout fused_dropout_at(const ModelPlan& plan, size_t i) {
  if (i >= plan.layers.size() || plan.layers[i].type != "dropout") return {};
  const LayerDesc& d = plan.layers[i];
  return {int64_t(i), float(d.spec["rate"].get<double>()), d.out.size()};
}

ops::EpilogueDropout FusedDropout::of(uint32_t seed, const ops::DropoutStep* step) const {
  ops::EpilogueDropout d;
  d.on = step != nullptr;
  if (d.on) d.mask = ops::DropoutMask{seed, int(layer), rate, size, step};
  return d;
}

ops::ConvColsGeom conv_cols_geom(const LayerDesc& conv) {
  const Window2d c = window_of(conv);
  const int64_t limit = int64_t(1) << 31;
  GENRELAB_CHECK(conv.in.size() < limit && conv.out.size() < limit, "conv2d layer ", conv.index,
                 ": one example's maps are too large for 32-bit indices");
  ops::ConvColsGeom g;
  g.h = int32_t(conv.in.h), g.w = int32_t(conv.in.w), g.c = int32_t(conv.in.c);
  g.oh = int32_t(conv.out.h), g.ow = int32_t(conv.out.w);
  g.kh = int32_t(c.kh), g.kw = int32_t(c.kw), g.sh = int32_t(c.sh), g.sw = int32_t(c.sw);
  g.dh = int32_t(c.dh), g.dw = int32_t(c.dw), g.top = int32_t(c.pad_top), g.left = int32_t(c.pad_left);
  return g;
}

ops::ConvPoolGeom conv_pool_geom(const ModelPlan& plan) {
  GENRELAB_CHECK(conv_pool_fusable(plan), "conv_pool_geom: the plan's first layers cannot be fused");
  const LayerDesc& conv = plan.layers[0];
  const LayerDesc& pool = plan.layers[1];
  const Window2d c = window_of(conv), p = window_of(pool);
  ops::ConvPoolGeom g;
  g.h = int32_t(conv.in.h), g.w = int32_t(conv.in.w), g.c = int32_t(conv.in.c), g.f = int32_t(conv.out.c);
  g.kh = int32_t(c.kh), g.kw = int32_t(c.kw), g.sh = int32_t(c.sh), g.sw = int32_t(c.sw);
  g.dh = int32_t(c.dh), g.dw = int32_t(c.dw), g.top = int32_t(c.pad_top), g.left = int32_t(c.pad_left);
  g.oh = int32_t(conv.out.h), g.ow = int32_t(conv.out.w);
  g.ph = int32_t(p.kh), g.pw = int32_t(p.kw), g.psh = int32_t(p.sh), g.psw = int32_t(p.sw);
  g.ptop = int32_t(p.pad_top), g.pleft = int32_t(p.pad_left);
  g.qh = int32_t(pool.out.h), g.qw = int32_t(pool.out.w);
  g.set_taps();
  return g;
}

Act activation_of(const LayerDesc& L) {
  std::string a;
  if (L.type == "relu" || L.type == "elu" || L.type == "leaky_relu") a = L.type;
  else if (L.spec.contains("activation")) a = L.spec["activation"].get<std::string>();
  if (a == "relu") return Act::relu;
  if (a == "elu") return Act::elu;
  if (a == "leaky_relu") return Act::leaky_relu;
  if (a == "tanh") return Act::tanh;
  if (a == "sigmoid") return Act::sigmoid;
  if (a == "softmax") return Act::softmax;
  return Act::none;
}

double activation_alpha(const LayerDesc& L) {
  const Act a = activation_of(L);
  if (a != Act::elu && a != Act::leaky_relu) return 0.0;
  return L.spec.value("alpha", a == Act::elu ? 1.0 : 0.3);
}

ModelPlan plan_layers(const json& layers, Shape3 input, int64_t classes, const std::string& source) {
  auto fail_at = [&](const std::string& key, const std::string& msg) -> void {
    throw ConfigError(source + ": " + key + ": " + msg);
  };
  if (input.h < 1 || input.w < 1 || input.c < 1)
    throw ConfigError(source + ": input shape " + input.str() + " is empty");
  if (classes < 2) throw ConfigError(source + ": a classifier needs at least 2 classes, got " + std::to_string(classes));
  if (!layers.is_array() || layers.empty()) fail_at("model.layers", "expected a non-empty list of layer objects");

  ModelPlan plan;
  plan.input = input;
  plan.classes = classes;
  std::map<std::string, int> counts;
  Shape3 cur = input;
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string at = "model.layers[" + std::to_string(i) + "]";
    const json& obj = layers[i];
    if (!obj.is_object()) fail_at(at, "expected a layer object like {\"type\": \"conv2d\", ...}, got " + show(obj));
    if (!obj.contains("type") || !obj["type"].is_string())
      fail_at(at + ".type", "missing; every layer needs a \"type\" (one of " + [&] {
        std::string s;
        for (const auto& t : layer_types()) s += (s.empty() ? "" : "|") + t;
        return s;
      }() + ")");
    const std::string type = obj["type"].get<std::string>();
    const LayerType* lt = nullptr;
    for (const auto& t : registry())
      if (t.name == type) lt = &t;
    if (!lt) {
      const std::string guess = closest_match(type, layer_types());
      std::string all;
      for (const auto& t : layer_types()) all += (all.empty() ? "" : "|") + t;
      fail_at(at + ".type", "unknown layer type \"" + type + "\"" + (guess.empty() ? "" : " (did you mean '" + guess + "'?)") +
                                "; known types: " + all);
    }
    LayerDesc L;
    L.index = int(i);
    L.type = type;
    L.name = type + "_" + std::to_string(++counts[type]);
    L.in = cur;
    L.spec = json::object();
    L.spec["type"] = type;
    std::vector<std::string> names{"type"};
    for (const auto& k : lt->keys) names.push_back(k.name);
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (it.key() == "type") continue;
      const LayerKey* k = nullptr;
      for (const auto& kk : lt->keys)
        if (kk.name == it.key()) k = &kk;
      if (!k) {
        const std::string guess = closest_match(it.key(), names);
        std::string all;
        for (size_t j = 1; j < names.size(); ++j) all += (j > 1 ? ", " : "") + names[j];
        fail_at(at + "." + it.key(), "unknown key for a " + type + " layer" +
                                         (guess.empty() ? "" : " (did you mean '" + guess + "'?)") +
                                         (all.empty() ? "; it takes no keys" : "; its keys: " + all));
      }
      const std::string problem = key_problem(*k, it.value());
      if (!problem.empty()) fail_at(at + "." + it.key(), problem);
      // Integers written as 2.0 are stored as integers.
      json v = it.value();
      if (v.is_number_float() && (k->kind == KeyKind::integer || k->kind == KeyKind::int_or_pair ||
                                  k->kind == KeyKind::int_or_pair_or_null || k->kind == KeyKind::units))
        v = int64_t(v.get<double>());
      if (v.is_array())
        for (auto& e : v) e = int64_t(e.get<double>());
      L.spec[it.key()] = v;
    }
    for (const auto& k : lt->keys) {
      if (L.spec.contains(k.name)) continue;
      if (k.def.is_null() && k.kind != KeyKind::int_or_pair_or_null)
        fail_at(at + "." + k.name, "missing; a " + type + " layer needs \"" + k.name + "\" (" + k.doc + ")");
      L.spec[k.name] = k.def;
    }
    if ((type == "conv2d" || type == "dense") && !obj.contains("alpha") && L.spec["activation"] == "elu") L.spec["alpha"] = 1.0;
    if (L.spec.contains("activation") && L.spec["activation"] == "softmax" && i + 1 != layers.size())
      fail_at(at + ".activation", "softmax is only supported on the last layer (it is fused into the cross-entropy loss)");
    const Fail fail = [&](const std::string& key, const std::string& msg) {
      fail_at(key.empty() ? at : at + "." + key,
              "layer " + std::to_string(i) + " (" + type + ") on input " + cur.str() + ": " + msg);
    };
    lt->plan(L, classes, fail);
    cur = L.out;
    plan.layers.push_back(std::move(L));
  }
  const LayerDesc& last = plan.layers.back();
  const std::string at = "model.layers[" + std::to_string(last.index) + "]";
  if (last.type != "dense" || last.out.c != classes || activation_of(last) != Act::softmax)
    fail_at(at, "the last layer must be {\"type\": \"dense\", \"units\": \"classes\", \"activation\": \"softmax\"} (" +
                    std::to_string(classes) + " classes); it is " + show(layers.back()));
  return plan;
}

ModelPlan plan_model(const Config& config, Shape3 input, int64_t classes) {
  try {
    return plan_layers(config.at("model.layers"), input, classes, "");
  } catch (const ConfigError& e) {
    // Re-raise through Config::fail so the message names the file that set model.layers.
    std::string msg = e.what();
    if (msg.rfind(": ", 0) == 0) msg = msg.substr(2);
    const auto colon = msg.find(": ");
    const std::string key = msg.substr(0, colon);
    if (key.rfind("model.layers", 0) == 0 && colon != std::string::npos) config.fail(key, msg.substr(colon + 2));
    config.fail("model.layers", msg);
  }
}

int64_t feature_frames(const Config& config, int64_t samples) {
  const int64_t hop = config.get_int("features.hop_length"), n_fft = config.get_int("features.n_fft");
  if (config.get_bool("features.center")) return 1 + samples / hop;
  return samples < n_fft ? 0 : 1 + (samples - n_fft) / hop;
}

std::optional<Shape3> input_shape(const Config& config) {
  std::optional<int64_t> samples = config.get_optional_int("dataset.window_samples");
  if (!samples) samples = config.get_optional_int("dataset.clip_samples");
  if (!samples) return std::nullopt;
  return Shape3{config.get_int("features.n_mels"), feature_frames(config, *samples), 1};
}

std::string model_summary(const ModelPlan& plan) {
  // Keras rank of each output: flat after flatten/dense/global pooling, (time, features) after a
  // recurrent layer with return_sequences, images otherwise.
  std::ostringstream os;
  const int c1 = 34, c2 = 26, c3 = 12;
  auto pad = [](std::string s, int w) { s.resize(std::max<size_t>(s.size() + 1, size_t(w)), ' '); return s; };
  const std::string rule(c1 + c2 + c3, '_'), dbl(c1 + c2 + c3, '=');
  os << "Model: \"sequential\"\n" << rule << "\n"
     << pad(" Layer (type)", c1) << pad("Output Shape", c2) << "Param #\n" << dbl << "\n";
  std::map<std::string, std::string> keras;
  for (const auto& t : registry()) keras[t.name] = t.keras;
  int rank = 3;
  os << pad(" input (InputLayer)", c1) << pad("(None, " + std::to_string(plan.input.h) + ", " + std::to_string(plan.input.w) + ", " +
                                                  std::to_string(plan.input.c) + ")", c2) << "0\n";
  for (const auto& L : plan.layers) {
    if (L.type == "flatten" || L.type == "dense" || L.type == "global_avgpool") rank = 1;
    if (L.type == "gru" || L.type == "lstm") rank = L.spec["return_sequences"].get<bool>() ? 2 : 1;
    std::string shape;
    if (rank == 1) shape = "(None, " + std::to_string(L.out.size()) + ")";
    else if (rank == 2) shape = "(None, " + std::to_string(L.out.w) + ", " + std::to_string(L.out.c) + ")";
    else shape = "(None, " + std::to_string(L.out.h) + ", " + std::to_string(L.out.w) + ", " + std::to_string(L.out.c) + ")";
    os << pad(" " + L.name + " (" + keras[L.type] + ")", c1) << pad(shape, c2) << thousands(L.param_count()) << "\n";
  }
  const int64_t total = plan.param_count(), trainable = plan.trainable_count();
  os << dbl << "\n"
     << "Trainable params: " << thousands(trainable) << "\n"
     << "Non-trainable params: " << thousands(total - trainable) << "\n"
     << "Total params: " << thousands(total) << "\n";
  return os.str();
}

}  // namespace genrelab::nn
