// The `genrelab` command line: subcommands register themselves (one file per command family in
// host/cli/), and a small option parser that rejects unknown options with a "did you mean".
// Conventions (SPEC §3): stdout carries data, stderr carries messages; exit 0 success, 1 runtime
// error, 2 usage or configuration error (ConfigError).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace genrelab::cli {

struct OptionSpec {
  std::string name;          // "--out"
  bool takes_value = false;  // "--out DIR" / "--out=DIR"
  bool repeated = false;     // "--set" may be given many times
  std::string help;
};

class Args {
 public:
  // Parses `argv` (the words after the command name) against `options`; "--help"/"-h" are
  // always known. Throws ConfigError for an unknown option or a missing value.
  Args(const std::vector<std::string>& argv, const std::vector<OptionSpec>& options, const std::string& command);

  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  std::vector<std::string> all(const std::string& name) const;
  // The integer value of `name`, `fallback` when absent; a usage error naming the option when it
  // is not an integer in [minimum, maximum].
  int64_t get_int(const std::string& name, int64_t fallback, int64_t minimum, int64_t maximum = INT64_MAX) const;
  // The GPU indices of a list option such as --gpus 0,1,2 (empty when absent); a usage error
  // naming the option for anything but distinct non-negative integers separated by commas.
  std::vector<int> get_gpu_list(const std::string& name) const;
  bool help() const { return help_; }

  // Usage errors (exit 2) naming the command.
  [[noreturn]] void usage_error(const std::string& message) const;

 private:
  std::string command_;
  std::vector<std::string> positional_;
  std::map<std::string, std::vector<std::string>> values_;
  bool help_ = false;
};

struct Command {
  std::string name;     // "train", "data check"
  std::string summary;  // one line for `genrelab --help`
  std::string usage;    // full --help text (usage line, arguments, options)
  std::vector<OptionSpec> options;
  std::function<int(const Args&)> run;  // returns the exit code
};

void register_command(Command command);
const std::vector<Command>& commands();

// `static CommandRegistrar reg{{...}};` in a host/cli/*.cpp file adds a subcommand.
struct CommandRegistrar {
  explicit CommandRegistrar(Command command) { register_command(std::move(command)); }
};

// Options most computing commands share.
OptionSpec set_option();     // --set key=value (repeated)
OptionSpec device_option();  // --device cuda|cpu
OptionSpec config_option();  // --config EXPERIMENT.json

}  // namespace genrelab::cli
