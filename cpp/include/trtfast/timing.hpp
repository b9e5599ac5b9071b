// Timing an engine apart from any session, for benchmarks: the device time of its work and the
// host time of enqueueing it, plainly and as a CUDA graph. Never on a call's path.
#pragma once

#include <string>
#include <vector>

#include "trtfast/executor.hpp"
#include "trtfast/signature.hpp"

// Exported from libtrtfast_core.so to the bindings and the adapters, which hide their own symbols.
#pragma GCC visibility push(default)

namespace trtfast {

struct EngineTimings {
  // Device time of each run (microseconds): CUDA events around work queued behind a closed
  // host-side gate, so the host's launch latency is not counted, only the GPU's.
  std::vector<double> gpu_us;
  bool gpu_from_graph = false;  // the runs timed were graph replays (else plain enqueues)
  // False when queuing blocked (an enqueue that synchronizes) and the gate had to open on its
  // own: then gpu_us includes host time.
  bool gated = true;
  std::vector<double> enqueue_us;       // host time of each plain enqueue
  std::vector<double> graph_launch_us;  // host time of each graph launch; empty without a graph
  std::string graph_failure;            // why no graph was captured; empty when one was
};

// Runs `engine` on one executor of its own with `inputs` (signature order, contiguous, host or
// device memory, already checked by Signature::check_inputs, which chose `profile`): `warmup`
// plain runs, then `iterations` timed runs of each kind. Throws InputError for engines with
// data-dependent output shapes (their size is known only after a run) and for bad counts.
EngineTimings time_engine(Engine& engine, int profile, const TensorArg* inputs, int iterations,
                          int warmup);

}  // namespace trtfast

#pragma GCC visibility pop
