// Checkpoints: a network's state() plus what a trainer needs to resume (epoch, step, RNG
// counters, its own extras) in one binary file — magic, format version, a JSON header, raw
// little-endian float32 tensors, a checksum — written atomically. docs/checkpoint-format.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "genrelab/config.h"
#include "genrelab/nn/model.h"
#include "genrelab/nn/network.h"

namespace genrelab::nn {

constexpr char kCheckpointMagic[9] = "GLABCKPT";  // 8 bytes on disk, no terminator
// The version written; versions 1 (FNV-1a checksum) and 2 (XXH3) are read.
constexpr uint32_t kCheckpointVersion = 2;

struct CheckpointMeta {
  int64_t epoch = 0;             // completed epochs
  int64_t step = 0;              // optimisation steps taken
  json rng = json::object();     // RNG keys and counters (seeds, shuffle epoch, augmentation epoch...)
  json extra = json::object();   // anything else the trainer wants back (best epoch, metrics...)
};

struct Checkpoint {
  json header;                       // the whole JSON header as stored
  CheckpointMeta meta;
  std::vector<NamedTensor> tensors;  // in stored order
};

// The checksum a checkpoint of format `version` stores after its first `n` bytes: XXH3-64 (seed 0)
// from version 2 on, FNV-1a 64 in version 1.
uint64_t checkpoint_checksum(uint32_t version, const void* data, size_t n);

// The JSON description of a plan stored in checkpoints (and compared on load).
json plan_to_json(const ModelPlan& plan);

// Writes `tensors` (normally Network::state()) with the plan, the hyper-parameters and `meta`.
void save_checkpoint(const std::string& path, const ModelPlan& plan, const TrainHyper& hyper,
                     const std::vector<NamedTensor>& tensors, const CheckpointMeta& meta);

// Reads and verifies a checkpoint (magic, version, header, sizes, checksum). Throws RuntimeError
// naming the file and what is wrong (truncated, not a checkpoint, newer version, corrupt).
Checkpoint load_checkpoint(const std::string& path);

// Throws RuntimeError naming `path` and the first difference between the checkpoint's model and
// `plan` (input shape, classes, layer count, a layer's type, shape or parameters).
void check_checkpoint_plan(const Checkpoint& ckpt, const ModelPlan& plan, const std::string& path);

// load_checkpoint + check_checkpoint_plan + network.load_state, errors naming the file.
CheckpointMeta restore_checkpoint(const std::string& path, Network& network);

}  // namespace genrelab::nn
