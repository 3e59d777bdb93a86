// Option parsing and the command registry behind include/genrelab/cli.h.
#include <algorithm>

#include "genrelab/cli.h"
#include "genrelab/common.h"
#include "genrelab/config.h"

namespace genrelab::cli {

namespace {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace

void register_command(Command command) {
  auto& r = registry();
  r.push_back(std::move(command));
  std::sort(r.begin(), r.end(), [](const Command& a, const Command& b) { return a.name < b.name; });
}

const std::vector<Command>& commands() { return registry(); }

OptionSpec set_option() { return {"--set", true, true, "override an experiment key, e.g. --set features.n_mels=64 (repeatable)"}; }
OptionSpec device_option() { return {"--device", true, false, "cuda | cpu (default: cuda when a GPU is usable)"}; }
OptionSpec config_option() { return {"--config", true, false, "experiment JSON file (default: the baseline settings)"}; }

Args::Args(const std::vector<std::string>& argv, const std::vector<OptionSpec>& options, const std::string& command)
    : command_(command) {
  auto find = [&](const std::string& name) -> const OptionSpec* {
    for (const auto& o : options)
      if (o.name == name) return &o;
    return nullptr;
  };
  bool only_positional = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& w = argv[i];
    if (only_positional || w.size() < 2 || w[0] != '-' || w == "-") { positional_.push_back(w); continue; }
    if (w == "--") { only_positional = true; continue; }
    if (w == "--help" || w == "-h") { help_ = true; continue; }
    std::string name = w, value;
    bool inline_value = false;
    if (const auto eq = w.find('='); eq != std::string::npos && w.compare(0, 2, "--") == 0) {
      name = w.substr(0, eq);
      value = w.substr(eq + 1);
      inline_value = true;
    }
    const OptionSpec* spec = find(name);
    if (!spec) {
      std::vector<std::string> names;
      for (const auto& o : options) names.push_back(o.name);
      const std::string guess = closest_match(name, names);
      usage_error("unknown option " + name + (guess.empty() ? "" : " (did you mean " + guess + "?)"));
    }
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) usage_error(name + " needs a value");
        value = argv[++i];
      }
      // An empty value ("--out ''", an unset variable) would read as the option's absence.
      if (value.empty()) usage_error(name + " needs a value, got an empty one");
      if (!spec->repeated && values_.count(name)) usage_error(name + " given twice");
      values_[name].push_back(value);
    } else {
      if (inline_value) usage_error(name + " takes no value");
      values_[name].push_back("");
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

std::vector<std::string> Args::all(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t Args::get_int(const std::string& name, int64_t fallback, int64_t minimum, int64_t maximum) const {
  const auto v = get(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    const long long n = std::stoll(*v, &used);
    if (used == v->size() && n >= minimum && n <= maximum) return n;
  } catch (const std::exception&) {
  }
  usage_error(name + " expects an integer " +
              (maximum == INT64_MAX ? "of at least " + std::to_string(minimum)
                                    : "from " + std::to_string(minimum) + " to " + std::to_string(maximum)) +
              ", got '" + *v + "'");
}

std::vector<int> Args::get_gpu_list(const std::string& name) const {
  std::vector<int> gpus;
  const auto list = get(name);
  if (!list) return gpus;
  size_t start = 0;
  for (;;) {
    const size_t comma = list->find(',', start);
    const std::string item = list->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    int g = -1;
    try {
      size_t used = 0;
      g = std::stoi(item, &used);
      if (used != item.size()) g = -1;
    } catch (const std::exception&) {
    }
    if (g < 0) usage_error(name + " expects GPU indices like 0,1,2, not '" + *list + "'");
    if (std::find(gpus.begin(), gpus.end(), g) != gpus.end()) usage_error(name + " lists GPU " + item + " twice");
    gpus.push_back(g);
    if (comma == std::string::npos) return gpus;
    start = comma + 1;
  }
}

void Args::usage_error(const std::string& message) const {
  throw ConfigError("genrelab " + command_ + ": " + message + " (see genrelab " + command_ + " --help)");
}

}  // namespace genrelab::cli
