// Run directories, metrics, summaries, SVG plots and `genrelab report`.
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "genrelab/io.h"
#include "genrelab/plots.h"
#include "genrelab/run.h"
#include "test_util.h"

using namespace genrelab;

namespace {
EpochMetrics epoch(int e, double train_acc, double test_acc, std::optional<double> valid = std::nullopt) {
  EpochMetrics m;
  m.epoch = e;
  m.train_loss = 2.0 / e;
  m.train_accuracy = train_acc;
  m.test_loss = 2.5 / e;
  m.test_accuracy = test_acc;
  if (valid) { m.valid_accuracy = valid; m.valid_loss = 1.0; }
  m.seconds = 1.5;
  m.samples_per_second = 100;
  m.evaluate_seconds = 0.25 * e;
  return m;
}

// Parses an SVG with Python's XML parser; returns "" when well-formed.
std::string xml_problem(const std::string& path) {
  const std::string py = test::python().empty() ? "python3" : test::python();
  std::string out;
  const int rc = test::run_command(py + " -c 'import sys,xml.dom.minidom as m; d=m.parse(sys.argv[1]); "
                                         "assert d.documentElement.tagName==\"svg\"' " + path + " 2>&1", &out);
  return rc == 0 ? "" : out;
}
}  // namespace

TEST_CASE("run directories are unique even when created in the same second", "[run]") {
  const auto parent = test::temp_dir("rundirs");
  std::vector<std::string> paths(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] { paths[size_t(i)] = RunDir::create(parent.string(), "exp").path(); });
  for (auto& t : threads) t.join();
  CHECK(std::set<std::string>(paths.begin(), paths.end()).size() == 8);
  for (const auto& p : paths) CHECK(p.find((parent / "exp-").string()) == 0);
}

TEST_CASE("an atomic write shows the old file or the whole new one, never a part", "[run]") {
  const auto dir = test::temp_dir("atomic");
  const std::string path = (dir / "result.bin").string();
  write_file_atomic(path, "old");
  {
    AtomicFileWriter file(path);
    file.write("ne", 2);
    CHECK(read_file(path) == "old");  // not renamed over yet
    file.write("w!", 2);
    CHECK(std::filesystem::exists(path + ".tmp"));
  }  // abandoned (as an error on the way would): the temporary is removed
  CHECK(read_file(path) == "old");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  AtomicFileWriter file(path);
  file.write("ne", 2);
  file.write("w!", 2);
  file.commit();
  CHECK(read_file(path) == "new!");
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  CHECK_THROWS_WITH(file.commit(), Catch::Contains(path));
}

TEST_CASE("metrics round trip through metrics.jsonl", "[run]") {
  const auto parent = test::temp_dir("metrics");
  const RunDir run = RunDir::create(parent.string(), "m");
  std::vector<EpochMetrics> ms = {epoch(1, 0.5, 0.4), epoch(2, 0.7, 0.6, 0.65)};
  run.write_metrics(ms);
  CHECK_FALSE(std::filesystem::exists(run.file("metrics.jsonl.tmp")));
  const auto back = run.read_metrics();
  REQUIRE(back.size() == 2);
  CHECK(back[1].test_accuracy == 0.6);
  CHECK(back[1].valid_accuracy.value() == 0.65);
  CHECK_FALSE(back[0].valid_accuracy.has_value());
  CHECK(back[1].evaluate_seconds == 0.5);
  // Every line is one JSON object with the documented keys.
  std::ifstream in(run.file("metrics.jsonl"));
  std::string line;
  std::getline(in, line);
  const json j = json::parse(line);
  for (const char* k : {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_second",
                        "evaluate_seconds"})
    CHECK(j.contains(k));
  // A line without evaluate_seconds (written before it was recorded) still reads, as 0.
  json old = j;
  old.erase("evaluate_seconds");
  CHECK(metrics_from_json(old, "old run").evaluate_seconds == 0);
}

TEST_CASE("summary picks the best epoch on test or on valid", "[run]") {
  const ConfusionMatrix cm = {{8, 2}, {1, 9}};
  const RunSummary s = summarize({epoch(1, 0.5, 0.4), epoch(2, 0.6, 0.7), epoch(3, 0.8, 0.65)}, cm, {"a", "b"}, 12.0, "cpu");
  CHECK(s.best_epoch == 2);
  CHECK(s.best_test_accuracy == 0.7);
  CHECK(s.final_test_accuracy == 0.65);
  CHECK(s.best_epoch_selected_by == "test");
  CHECK(s.per_class_accuracy == std::vector<double>{0.8, 0.9});
  const RunSummary v = summarize({epoch(1, 0.5, 0.9, 0.3), epoch(2, 0.6, 0.5, 0.8)}, cm, {"a", "b"}, 1.0, "cpu");
  CHECK(v.best_epoch == 2);  // selected on valid, not on the flattering test accuracy
  CHECK(v.best_test_accuracy == 0.5);
  const json j = to_json(s);
  for (const char* k : {"best_test_accuracy", "best_epoch", "final_test_accuracy", "per_class_accuracy", "confusion_matrix",
                        "classes", "wall_seconds", "time_seconds", "device", "versions"})
    CHECK(j.contains(k));
  CHECK(j["per_class_accuracy"]["b"] == 0.9);
}

TEST_CASE("plots are well-formed SVG", "[run][python]") {
  const auto dir = test::temp_dir("plots");
  const std::string curves = (dir / "curves.svg").string(), conf = (dir / "confusion.svg").string(),
                    bars = (dir / "bars.svg").string();
  std::ofstream(curves) << curves_svg({epoch(1, 0.5, 0.4), epoch(2, 0.7, 0.6, 0.65)}, "exp <&> \"1\"");
  std::ofstream(conf) << confusion_svg({{3, 1, 0}, {0, 4, 0}, {2, 0, 2}}, {"blues", "rock & roll", "jazz"}, "confusion");
  std::ofstream(bars) << bar_chart_svg({"a", "b"}, {0.5, 0.9}, "acc");
  CHECK(xml_problem(curves).empty());
  CHECK(xml_problem(conf).empty());
  CHECK(xml_problem(bars).empty());
  std::ifstream in(conf);
  const std::string svg((std::istreambuf_iterator<char>(in)), {});
  CHECK(svg.find(">4</text>") != std::string::npos);  // counts are printed in the cells
  CHECK(svg.find("rock &amp; roll") != std::string::npos);
}

TEST_CASE("report collects runs into markdown csv and svg", "[run][cli][python]") {
  const auto parent = test::temp_dir("report");
  for (int i = 0; i < 2; ++i) {
    const RunDir run = RunDir::create(parent.string(), i == 0 ? "baseline" : "noaug");
    run.write_json("config.json", json{{"name", i == 0 ? "baseline" : "noaug"}, {"train", {{"epochs", 2}}}});
    run.write_json("run.json", json{{"overrides", i == 0 ? json::array() : json::array({"train.lr=0.01"})}});
    run.write_metrics({epoch(1, 0.5, 0.4), epoch(2, 0.7, i == 0 ? 0.6 : 0.55)});
    if (i == 0) run.write_json("summary.json", to_json(summarize(run.read_metrics(), {{1}}, {"a"}, 3.0, "cpu")));
  }
  // A run stopped before its first epoch has no accuracy to show (not 0 %).
  const RunDir empty = RunDir::create(parent.string(), "stopped");
  empty.write_json("config.json", json{{"name", "stopped"}, {"train", {{"epochs", 2}}}});
  std::string out;
  const int rc = test::run_command(test::genrelab_binary() + " report " + parent.string() + " 2>/dev/null", &out);
  REQUIRE(rc == 0);
  CHECK(out.find("| baseline |") != std::string::npos);
  CHECK(out.find("`train.lr=0.01`") != std::string::npos);
  CHECK(out.find("60.0 %") != std::string::npos);
  CHECK(out.find("incomplete") != std::string::npos);
  CHECK(out.find(" | stopped | - | - | - | - | 0/2 | 0.0 | no epochs |") != std::string::npos);
  std::ifstream csv(parent / "report.csv");
  std::string header, line;
  std::getline(csv, header);
  CHECK(header == "run,experiment,overrides,best_test_accuracy,best_epoch,final_test_accuracy,epochs,seconds,status");
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line.substr(line.find(',')));  // without the timestamped run name
  CHECK(lines == std::vector<std::string>{",baseline,,0.6,2,0.6,2,3,finished",
                                          ",noaug,train.lr=0.01,0.55,2,0.55,2,3,incomplete",
                                          ",stopped,,,,,0,0,no epochs"});
  CHECK(xml_problem((parent / "report.svg").string()).empty());
  CHECK(test::run_command(test::genrelab_binary() + " report /nonexistent 2>/dev/null") == 1);  // an unreadable input
  // A run whose summary holds a value of the wrong type is skipped, the file and the key named.
  const RunDir garbled = RunDir::create(parent.string(), "garbled");
  garbled.write_json("config.json", json{{"name", "garbled"}});
  garbled.write_json("summary.json", json{{"best_test_accuracy", "high"}});
  std::string err;
  CHECK(test::run_command(test::genrelab_binary() + " report " + parent.string() + " 2>&1 >/dev/null", &err) == 0);
  CHECK(err.find(garbled.file("summary.json") + ": 'best_test_accuracy' holds \"high\", a value of the wrong type") !=
        std::string::npos);
}

TEST_CASE("sweep writes a Slurm array with one experiment per index", "[run][cli]") {
  const auto dir = test::temp_dir("slurm");
  const std::string exps = test::source_dir() + "/experiments/ablations/noise-only.json " + test::source_dir() +
                           "/experiments/ablations/log-mel.json";
  const std::string script = (dir / "sweep.sbatch").string();
  REQUIRE(test::run_command(test::genrelab_binary() + " sweep " + exps + " --set train.epochs=3 --slurm " + script +
                            " --out " + dir.string() + " 2>/dev/null") == 0);
  CHECK(test::run_command("bash -n " + script) == 0);
  std::ifstream in(script);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  CHECK(text.find("#SBATCH --array=0-1") != std::string::npos);
  CHECK(text.find("#SBATCH --gres=gpu:1") != std::string::npos);
  CHECK(text.find("noise-only.json'  # 0") != std::string::npos);
  CHECK(text.find("log-mel.json'  # 1") != std::string::npos);
  CHECK(text.find("--set 'train.epochs=3'") != std::string::npos);
  // Which experiment does array task 1 run? Evaluate the script's array in bash.
  std::string picked;
  test::run_command("bash -c 'SLURM_ARRAY_TASK_ID=1; eval \"$(sed -n \"/^experiments=(/,/^)/p\" " + script +
                        ")\"; echo ${experiments[$SLURM_ARRAY_TASK_ID]}'", &picked);
  CHECK(picked.find("log-mel.json") != std::string::npos);
  // A bad experiment is refused before anything is written.
  CHECK(test::run_command(test::genrelab_binary() + " sweep /nonexistent.json --slurm " + script + " 2>/dev/null") == 2);
  // Slurm writes the tasks' logs in the runs' folder and does not create it: the sweep does.
  const std::string sweep = test::genrelab_binary() + " sweep " + exps + " --slurm " + script;
  REQUIRE(test::run_command(sweep + " --out " + (dir / "new" / "runs").string() + " 2>/dev/null") == 0);
  CHECK(std::filesystem::is_directory(dir / "new" / "runs"));
  // A ${VAR} in output.dir is not read when --out replaces it; experiments writing to different
  // folders need --out.
  CHECK(test::run_command(sweep + " --set 'output.dir=${GENRELAB_TEST_UNSET_VAR}' --out " + dir.string() +
                          " 2>/dev/null") == 0);
  std::string err;
  CHECK(test::run_command(test::genrelab_binary() + " sweep " + exps + " --set train.epochs=3 --slurm " + script +
                              " --set 'output.dir=${GENRELAB_TEST_UNSET_VAR}' 2>&1 >/dev/null",
                          &err) == 2);
  CHECK(err.find("GENRELAB_TEST_UNSET_VAR") != std::string::npos);
  // --device cpu asks Slurm for no GPU and trains on the CPU.
  REQUIRE(test::run_command(sweep + " --out " + dir.string() +
                            " --device cpu --time 1-02:00:00 --job-name ab.c_1 "
                            "--cpus-per-task 4 2>/dev/null") == 0);
  std::ifstream cpu_in(script);
  const std::string cpu((std::istreambuf_iterator<char>(cpu_in)), {});
  CHECK(cpu.find("--gres") == std::string::npos);
  CHECK(cpu.find("--device cpu --out") != std::string::npos);
  CHECK(cpu.find("#SBATCH --time=1-02:00:00\n") != std::string::npos);
  CHECK(cpu.find("#SBATCH --job-name=ab.c_1\n") != std::string::npos);
  CHECK(cpu.find("#SBATCH --cpus-per-task=4\n") != std::string::npos);
  // Values an #SBATCH line cannot hold, and Slurm options without --slurm, are usage errors
  // naming the option; the script is left as it was.
  for (const std::string& bad :
       {std::string("--slurm " + script + " --job-name 'my job'"),
        std::string("--slurm " + script + " --cpus-per-task abc"),
        std::string("--slurm " + script + " --time '2 hours'"), std::string("--slurm " + script + " --partition 'a b'"),
        std::string("--slurm " + script + " --gpus 0,1"), std::string("--slurm " + script + " --device cpu --nodes 2"),
        std::string("--slurm " + script + " --device gpu"), std::string("--device gpu"), std::string("--time 01:00:00"),
        std::string("--job-name x")}) {
    err.clear();
    const int rc = test::run_command(
        test::genrelab_binary() + " sweep " + exps + " --out " + dir.string() + " " + bad + " 2>&1 >/dev/null", &err);
    INFO(bad << ": " << err);
    CHECK(rc == 2);
    const size_t at = bad.rfind("--");  // the last option named
    const std::string option = bad.substr(at, bad.find(' ', at) - at);
    CHECK(err.find(option) != std::string::npos);
  }
  std::ifstream after_in(script);
  CHECK(std::string((std::istreambuf_iterator<char>(after_in)), {}) == cpu);
}

TEST_CASE("sweep writes a data-parallel Slurm array with srun over nodes and GPUs", "[run][cli]") {
  const auto dir = test::temp_dir("slurm-dp");
  const std::string exp = test::source_dir() + "/experiments/ablations/log-mel.json";
  const std::string script = (dir / "dp.sbatch").string();
  const std::string sweep = test::genrelab_binary() + " sweep " + exp + " --out " + dir.string();
  REQUIRE(test::run_command(sweep + " --slurm " + script + " --nodes 2 --gpus-per-node 4 --time 02:00:00 2>/dev/null") ==
          0);
  CHECK(test::run_command("bash -n " + script) == 0);
  std::ifstream in(script);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string binary = std::filesystem::canonical(test::genrelab_binary()).string();
  const std::string out = std::filesystem::absolute(dir).lexically_normal().string();
  const std::string exp_abs = std::filesystem::absolute(exp).lexically_normal().string();
  CHECK(text ==
        "#!/bin/bash\n"
        "# GenreLab sweep: one Slurm array task per experiment file (written by genrelab sweep --slurm).\n"
        "# Each task trains data-parallel on 2 node(s) x 4 GPU(s): one rank per GPU, from "
        "SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID.\n"
        "#SBATCH --job-name=genrelab-sweep\n"
        "#SBATCH --array=0-0\n"
        "#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=4\n"
        "#SBATCH --gres=gpu:4\n"
        "#SBATCH --cpus-per-task=8\n"
        "#SBATCH --output=" + out + "/slurm-%A_%a.log\n"
        "#SBATCH --time=02:00:00\n"
        "set -euo pipefail\n"
        "\n"
        "experiments=(\n"
        "  '" + exp_abs + "'  # 0\n"
        ")\n"
        "overrides=( )\n"
        "\n"
        "experiment=${experiments[$SLURM_ARRAY_TASK_ID]}\n"
        "echo \"genrelab sweep: array task $SLURM_ARRAY_TASK_ID runs $experiment on $(hostname)\" >&2\n"
        "exec srun --kill-on-bad-exit=1 '" + binary + "' train \"$experiment\" \"${overrides[@]}\" --device cuda --out '" +
            out + "'\n");
  // --gpus-per-node alone: one node; the single-GPU form keeps one task and no srun.
  REQUIRE(test::run_command(sweep + " --slurm " + script + " --gpus-per-node 2 2>/dev/null") == 0);
  std::ifstream in2(script);
  const std::string one_node((std::istreambuf_iterator<char>(in2)), {});
  CHECK(one_node.find("#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=2\n#SBATCH --gres=gpu:2\n") != std::string::npos);
  REQUIRE(test::run_command(sweep + " --slurm " + script + " 2>/dev/null") == 0);
  std::ifstream in3(script);
  const std::string single((std::istreambuf_iterator<char>(in3)), {});
  CHECK(single.find("#SBATCH --gres=gpu:1\n#SBATCH --ntasks=1\n") != std::string::npos);
  CHECK(single.find("srun") == std::string::npos);
  CHECK(single.find("--nodes") == std::string::npos);
  // Bad counts, and the options without --slurm, are usage errors naming the option.
  const std::string slurm = "--slurm " + script;
  for (const std::string& bad : std::vector<std::string>{slurm + " --nodes 0", slurm + " --nodes two",
                                                        slurm + " --gpus-per-node -1", slurm + " --gpus-per-node 2.5",
                                                        "--nodes 2", "--gpus-per-node 4"}) {
    std::string err;
    const int rc = test::run_command(sweep + " " + bad + " 2>&1 >/dev/null", &err);
    INFO(bad << ": " << err);
    CHECK(rc == 2);
    const std::string option = bad.find("--nodes") != std::string::npos ? "--nodes" : "--gpus-per-node";
    CHECK(err.find(option) != std::string::npos);
  }
}
