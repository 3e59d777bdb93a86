// `genrelab report RUNS_DIR`: one table of every run below a folder (markdown on stdout and in
// RUNS_DIR/report.md, CSV in report.csv) and a bar chart of test accuracy (report.svg).
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/io.h"
#include "genrelab/plots.h"
#include "genrelab/run.h"

namespace fs = std::filesystem;

namespace genrelab::cli {
namespace {

struct Row {
  std::string run, experiment, overrides, status;
  double best = 0, final_acc = 0, seconds = 0;
  int best_epoch = 0, epochs = 0, planned_epochs = 0;
};

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string pct(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %%", 100.0 * v);
  return buf;
}

// A field of one of a run's JSON files (`fallback` when absent); a value of another type is the
// run directory's damage, named with the file (RunDir::damaged).
template <typename T>
T field(const RunDir& run, const char* file, const json& doc, const char* key, T fallback) {
  if (!doc.is_object() || !doc.contains(key)) return fallback;
  try {
    return doc[key].get<T>();
  } catch (const json::exception&) {
    throw run.damaged(file, std::string("'") + key + "' holds " + doc[key].dump() + ", a value of the wrong type");
  }
}

int run_report(const Args& args) {
  if (args.positional().size() != 1) args.usage_error("expects one RUNS_DIR");
  const std::string root = args.positional()[0];
  if (!fs::is_directory(root)) throw RuntimeError("genrelab report: " + root + " is not a folder");
  std::vector<Row> rows;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied))
    if (e.is_regular_file() && e.path().filename() == "config.json") dirs.push_back(e.path().parent_path());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    Row r;
    r.run = fs::relative(d, root).string();
    try {
      const RunDir run = RunDir::open(d.string());
      const json cfg = run.read_json("config.json");
      r.experiment = field(run, "config.json", cfg, "name", std::string("?"));
      r.planned_epochs = field(run, "config.json", cfg.value("train", json::object()), "epochs", 0);
      if (run.has("run.json"))
        for (const auto& o : field(run, "run.json", run.read_json("run.json"), "overrides", std::vector<std::string>{}))
          r.overrides += (r.overrides.empty() ? "" : " ") + o;
      const auto metrics = run.read_metrics();
      r.epochs = int(metrics.size());
      if (run.has("summary.json")) {
        const json s = run.read_json("summary.json");
        r.best = field(run, "summary.json", s, "best_test_accuracy", 0.0);
        r.best_epoch = field(run, "summary.json", s, "best_epoch", 0);
        r.final_acc = field(run, "summary.json", s, "final_test_accuracy", 0.0);
        r.seconds = field(run, "summary.json", s, "wall_seconds", 0.0);
        r.status = "finished";
      } else if (!metrics.empty()) {
        const RunSummary s = summarize(metrics, {}, {}, 0, "");
        r.best = s.best_test_accuracy;
        r.best_epoch = s.best_epoch;
        r.final_acc = s.final_test_accuracy;
        for (const auto& m : metrics) r.seconds += m.seconds;
        r.status = "incomplete";
      } else {
        r.status = "no epochs";
      }
    } catch (const std::exception& e) {
      std::cerr << "genrelab report: skipping " << d.string() << ": " << e.what() << "\n";
      continue;
    }
    rows.push_back(r);
  }
  if (rows.empty()) throw RuntimeError("genrelab report: no run directories (with config.json) under " + root);

  std::ostringstream md, csv;
  md << "| run | experiment | overrides | best test acc. | best epoch | final test acc. | epochs | time (s) | status |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  csv << "run,experiment,overrides,best_test_accuracy,best_epoch,final_test_accuracy,epochs,seconds,status\n";
  std::vector<std::string> labels;
  std::vector<double> values;
  for (const auto& r : rows) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", r.seconds);
    // A run without epochs has no accuracy: "-" in the table, empty in the CSV, no bar.
    const bool scored = r.epochs > 0;
    md << "| " << r.run << " | " << r.experiment << " | " << (r.overrides.empty() ? "-" : "`" + r.overrides + "`")
       << " | " << (scored ? pct(r.best) : "-") << " | " << (scored ? std::to_string(r.best_epoch) : "-") << " | "
       << (scored ? pct(r.final_acc) : "-") << " | " << r.epochs << "/" << r.planned_epochs << " | " << secs << " | "
       << r.status << " |\n";
    const auto number = [&](auto v) { return scored ? json(v).dump() : std::string(); };
    csv << csv_field(r.run) << "," << csv_field(r.experiment) << "," << csv_field(r.overrides) << "," << number(r.best)
        << "," << number(r.best_epoch) << "," << number(r.final_acc) << "," << r.epochs << "," << r.seconds << ","
        << r.status << "\n";
    if (!scored) continue;
    labels.push_back(r.experiment + (r.overrides.empty() ? "" : " " + r.overrides));
    values.push_back(r.final_acc);
  }
  write_file_atomic((fs::path(root) / "report.md").string(), md.str());
  write_file_atomic((fs::path(root) / "report.csv").string(), csv.str());
  write_file_atomic((fs::path(root) / "report.svg").string(), bar_chart_svg(labels, values, "final test accuracy"));
  std::cout << md.str();
  std::cerr << "genrelab report: " << rows.size() << " runs; wrote report.md, report.csv, report.svg in " << root << "\n";
  return 0;
}

CommandRegistrar reg{{"report", "table (markdown, CSV) and bar chart of every run under a folder",
                      "usage: genrelab report RUNS_DIR\n\n"
                      "Collects every run directory below RUNS_DIR (experiment, --set overrides, best and final test\n"
                      "accuracy, epochs, time) into RUNS_DIR/report.md, report.csv and report.svg; prints the table.\n",
                      {}, run_report}};

}  // namespace
}  // namespace genrelab::cli
