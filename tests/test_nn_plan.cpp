// Model planning: the baseline's shapes and parameter counts (Keras's numbers for the article's
// model), recurrent shapes, the summary table, and the errors for bad layer lists.
#include <fstream>

#include "genrelab/common.h"
#include "genrelab/config.h"
#include "genrelab/nn/model.h"
#include "test_util.h"

using namespace genrelab;
using namespace genrelab::nn;

namespace {
std::string plan_error(const json& layers, Shape3 in = {8, 8, 1}, int64_t classes = 3) {
  try {
    plan_layers(layers, in, classes);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}
const json kHead = json::parse(R"([{"type": "flatten"}, {"type": "dense", "units": "classes", "activation": "softmax"}])");
json with_head(json layers) {
  for (const auto& h : kHead) layers.push_back(h);
  return layers;
}
}  // namespace

TEST_CASE("nn plan of the baseline matches the Keras model", "[nn]") {
  const Config config;  // defaults = the article's model
  const ModelPlan plan = plan_model(config, {128, 1206, 1}, 10);
  CHECK(plan.param_count() == 15637450);
  CHECK(plan.trainable_count() == 15637450);
  // Every layer's output shape and parameter count, as Keras's model.summary() prints them.
  const std::vector<std::tuple<std::string, Shape3, int64_t>> want = {
      {"conv2d_1", {127, 1205, 64}, 320},   {"maxpool2d_1", {63, 602, 64}, 0},  {"dropout_1", {63, 602, 64}, 0},
      {"conv2d_2", {62, 601, 128}, 32896},  {"maxpool2d_2", {31, 300, 128}, 0}, {"dropout_2", {31, 300, 128}, 0},
      {"conv2d_3", {30, 299, 256}, 131328}, {"maxpool2d_3", {7, 74, 256}, 0},   {"dropout_3", {7, 74, 256}, 0},
      {"conv2d_4", {6, 73, 512}, 524800},   {"maxpool2d_4", {1, 12, 512}, 0},   {"dropout_4", {1, 12, 512}, 0},
      {"flatten_1", {1, 1, 6144}, 0},       {"dense_1", {1, 1, 2048}, 12584960}, {"dense_2", {1, 1, 1024}, 2098176},
      {"dense_3", {1, 1, 256}, 262400},     {"dense_4", {1, 1, 10}, 2570}};
  REQUIRE(plan.layers.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("layer " << i);
    CHECK(plan.layers[i].name == std::get<0>(want[i]));
    CHECK(plan.layers[i].out.str() == std::get<1>(want[i]).str());
    CHECK(plan.layers[i].param_count() == std::get<2>(want[i]));
  }
  CHECK(plan.layers[12].out.c == 6144);
  CHECK(plan.layers[0].params[0].dims == std::vector<int64_t>{64, 2, 2, 1});
  CHECK(plan.layers[13].params[0].dims == std::vector<int64_t>{6144, 2048});
  const std::string table = model_summary(plan);
  CHECK(table.find("(None, 6144)") != std::string::npos);
  CHECK(table.find("(None, 127, 1205, 64)") != std::string::npos);
  CHECK(table.size() > 25);
  CHECK(table.substr(table.size() - 25) == "Total params: 15,637,450\n");
}

TEST_CASE("nn plan input shape comes from the features config", "[nn]") {
  Config c;
  CHECK_FALSE(input_shape(c).has_value());
  c.apply_override("dataset.clip_samples=617400");
  CHECK(input_shape(c)->str() == "(128, 1206, 1)");
  c.apply_override("dataset.window_samples=66150");  // 3 s windows: 1 + 66150 / 512 = 130 frames
  CHECK(input_shape(c)->str() == "(128, 130, 1)");
  c.apply_override("features.center=false");  // 1 + (66150 - 1024) / 512 = 128
  CHECK(input_shape(c)->w == 128);
}

TEST_CASE("nn plan same padding strides and dilation follow Keras", "[nn]") {
  const json layers = with_head(json::parse(R"([
    {"type": "conv2d", "filters": 4, "kernel": [3, 2], "stride": 2, "padding": "same"},
    {"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"},
    {"type": "conv2d", "filters": 2, "kernel": 3, "dilation": 2, "padding": "same", "use_bias": false},
    {"type": "avgpool2d", "size": [2, 1]}
  ])"));
  const ModelPlan p = plan_layers(layers, {11, 9, 3}, 5);
  CHECK(p.layers[0].out.str() == "(6, 5, 4)");  // ceil(11/2), ceil(9/2)
  const Window2d g = window_of(p.layers[0]);     // total pad h = (6-1)*2+3-11 = 2, w = (5-1)*2+2-9 = 1
  CHECK(g.pad_top == 1);
  CHECK(g.pad_bottom == 1);
  CHECK(g.pad_left == 0);
  CHECK(g.pad_right == 1);
  CHECK(p.layers[1].out.str() == "(3, 3, 4)");
  CHECK(p.layers[2].out.str() == "(3, 3, 2)");
  CHECK(p.layers[2].param_count() == 3 * 3 * 4 * 2);
  CHECK(p.layers[3].out.str() == "(1, 3, 2)");  // valid floors: (3 - 2) / 2 + 1 = 1
  CHECK(p.layers[0].spec["activation"] == "none");
  CHECK(p.layers[3].spec["stride"].is_null());
}

TEST_CASE("nn plan recurrent layers read frames as time", "[nn]") {
  const json layers = json::parse(R"([
    {"type": "conv2d", "filters": 8, "kernel": 3, "padding": "same"},
    {"type": "gru", "units": 16, "bidirectional": true, "return_sequences": true},
    {"type": "lstm", "units": 12},
    {"type": "dense", "units": "classes", "activation": "softmax"}
  ])");
  const ModelPlan p = plan_layers(layers, {6, 20, 1}, 4);
  CHECK(p.layers[1].out.str() == "(1, 20, 32)");
  // GRU per direction: kernel 48·48 + recurrent 16·48 + bias 2·48 (Keras reset_after=True).
  CHECK(p.layers[1].param_count() == 2 * (48 * 48 + 16 * 48 + 2 * 48));
  CHECK(p.layers[2].out.str() == "(1, 1, 12)");
  // LSTM: kernel 32·48 + recurrent 12·48 + bias 48 (Keras's count for LSTM(12) on 32 features).
  CHECK(p.layers[2].param_count() == 32 * 48 + 12 * 48 + 48);
  const std::string table = model_summary(p);
  CHECK(table.find("(None, 20, 32)") != std::string::npos);
}

TEST_CASE("nn plan rejects bad layers with index key and reason", "[nn]") {
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "conv2d", "filter": 4, "kernel": 2}])"))),
             Catch::Contains("model.layers[0].filter") && Catch::Contains("did you mean 'filters'"));
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "conv2d", "filters": "4", "kernel": 2}])"))),
             Catch::Contains("model.layers[0].filters") && Catch::Contains("expected an integer"));
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "conv2d", "kernel": 2}])"))),
             Catch::Contains("model.layers[0].filters") && Catch::Contains("missing"));
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "conv2d", "filters": 4, "kernel": 2, "padding": "sam"}])"))),
             Catch::Contains("did you mean 'same'"));
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "maxpool"}])"))),
             Catch::Contains("model.layers[0].type") && Catch::Contains("did you mean 'maxpool2d'"));
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "dropout", "rate": 1.0}])"))), Catch::Contains("model.layers[0].rate"));
  // A 6x6 pool on a 5-wide map (the baseline's last pool on a too-short input).
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "relu"}, {"type": "maxpool2d", "size": 6}])")), {8, 5, 2}),
             Catch::Contains("model.layers[1]") && Catch::Contains("layer 1 (maxpool2d) on input (8, 5, 2)") &&
                 Catch::Contains("6x6 window does not fit"));
  CHECK_THAT(plan_error(json::parse(R"([{"type": "flatten"}, {"type": "dense", "units": 3}])")),
             Catch::Contains("model.layers[1]") && Catch::Contains("last layer must be"));
  CHECK_THAT(plan_error(json::parse(R"([{"type": "flatten"}, {"type": "dense", "units": 4, "activation": "softmax"}])")),
             Catch::Contains("last layer must be"));
  CHECK_THAT(plan_error(json::parse(R"([{"type": "dense", "units": 4}, {"type": "dense", "units": "classes", "activation": "softmax"}])")),
             Catch::Contains("model.layers[0]") && Catch::Contains("flat input"));
  CHECK_THAT(plan_error(with_head(json::parse(R"([{"type": "flatten"}, {"type": "dense", "units": 4, "activation": "softmax"}])"))),
             Catch::Contains("model.layers[1].activation") && Catch::Contains("only supported on the last layer"));
  CHECK_THAT(plan_error(json::parse(R"([{"type": "flatten", "units": 3}, {"type": "dense", "units": "classes", "activation": "softmax"}])")),
             Catch::Contains("model.layers[0].units") && Catch::Contains("takes no keys"));
}

TEST_CASE("nn plan errors name the experiment file", "[nn]") {
  const auto dir = test::temp_dir("nn-plan");
  const auto file = (dir / "bad.json").string();
  std::ofstream(file) << R"({"model": {"layers": [{"type": "conv2d", "filters": 4, "kernel": 2, "stirde": 2},
                             {"type": "flatten"}, {"type": "dense", "units": "classes", "activation": "softmax"}]}})";
  const Config c = Config::load(file);
  std::string msg;
  try {
    plan_model(c, {8, 8, 1}, 3);
  } catch (const ConfigError& e) {
    msg = e.what();
  }
  CHECK_THAT(msg, Catch::StartsWith(file + ": model.layers[0].stirde") && Catch::Contains("did you mean 'stride'"));
}

TEST_CASE("nn plan layer registry covers every documented type", "[nn]") {
  const std::vector<std::string> want = {"conv2d", "maxpool2d", "avgpool2d", "global_avgpool", "relu", "elu", "leaky_relu",
                                         "batchnorm", "dropout", "flatten", "dense", "gru", "lstm"};
  CHECK(layer_types() == want);
}

TEST_CASE("nn model summary command prints the baseline table", "[nn][cli]") {
  const auto dir = test::temp_dir("nn-cli");
  const auto file = (dir / "exp.json").string();
  std::ofstream(file) << R"({"dataset": {"root": "${GTZAN_ROOT_SURELY_UNSET}"}})";
  std::string out;
  int rc = test::run_command(test::genrelab_binary() + " model summary " + file + " --set dataset.clip_samples=617400 2>/dev/null", &out);
  CHECK(rc == 0);
  REQUIRE(out.size() > 25);
  CHECK(out.substr(out.size() - 25) == "Total params: 15,637,450\n");
  rc = test::run_command(test::genrelab_binary() + " model summary " + file + " 2>&1", &out);
  CHECK(rc == 2);
  CHECK_THAT(out, Catch::Contains("dataset.clip_samples") && Catch::Contains("--frames"));
  rc = test::run_command(test::genrelab_binary() + " model summary " + file + " --frames 40 --set dataset.classes=a,b,c 2>&1", &out);
  CHECK(rc == 2);  // the baseline's pools do not fit 40 frames
  CHECK_THAT(out, Catch::Contains("model.layers[") && Catch::Contains("does not fit"));
}

TEST_CASE("nn stage work counts a stage's products and least float traffic by hand", "[nn]") {
  const ModelPlan p = plan_layers(json::parse(R"([
    {"type": "conv2d", "filters": 6, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "batchnorm"}, {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
    {"type": "dense", "units": "classes", "activation": "softmax"}])"),
                                  {6, 8, 2}, 4);
  const std::string conv = p.layers[0].name, bn = p.layers[1].name, pool = p.layers[2].name, dense = p.layers[4].name;
  const int64_t n = 8;
  // conv: (6, 8, 2) → (6, 8, 6), 3 × 3 kernel: 2 · 288 outputs · 18 multiply-adds = 10 368 FLOPs an
  // example; 54·2 + 6 = 114 parameters. Its input is 96 floats an example, its output 288.
  StageWork w = stage_work(p, "fwd " + conv, n, 2);
  CHECK(w.flops == 10368.0 * 8);
  CHECK(w.bytes == 4.0 * (8 * 96 + 114 + 8 * 288));
  w = stage_work(p, "bwd " + conv, n, 2);  // the first layer: no input gradient
  CHECK(w.flops == 10368.0 * 8);
  CHECK(w.bytes == 4.0 * (8 * 288 + 2 * 114));
  // dense: 72 → 4, 2 · 72 · 4 = 576 FLOPs an example, 292 parameters.
  w = stage_work(p, "bwd " + dense, n, 2);
  CHECK(w.flops == 2.0 * 576 * 8);
  CHECK(w.bytes == 4.0 * (8 * 4 + 2 * 292 + 8 * 72));
  // A fused run: conv + batchnorm (4 · 6 parameters: gamma, beta and the moving statistics)
  // + pool, from the conv's input to the pool's (3, 4, 6) output.
  w = stage_work(p, "fwd " + conv + "+" + bn + "+" + pool, n, 2);
  CHECK(w.flops == 10368.0 * 8);
  CHECK(w.bytes == 4.0 * (8 * 96 + 114 + 24 + 8 * 72));
  w = stage_work(p, "bwd " + bn + "+" + pool, n, 2);  // no products; not the first layer
  CHECK(w.flops == 0);
  CHECK(w.bytes == 4.0 * (8 * 72 + 2 * 24 + 8 * 288));
  // The loss: 4 logits in, 4 gradients out; Adam: weight, gradient and 2 moments in, 3 out per
  // trainable parameter (114 + 12 + 292 = 418).
  CHECK(p.trainable_count() == 418);
  CHECK(stage_work(p, "loss", n, 2).bytes == 4.0 * 8 * 4 * 2);
  CHECK(stage_work(p, "optimizer", n, 2).bytes == 4.0 * 418 * 7);
  CHECK(stage_work(p, "optimizer", n, 1).bytes == 4.0 * 418 * 5);
  // Unknown or non-consecutive names: nothing.
  for (const std::string& bad : std::vector<std::string>{"fwd nothing", "fwd " + conv + "+" + dense,
                                                         "all-reduce " + conv, "fwd ", "bwd " + pool + "+"}) {
    INFO(bad);
    CHECK(stage_work(p, bad, n, 2).flops == 0);
    CHECK(stage_work(p, bad, n, 2).bytes == 0);
  }
}
