// The floor a session is measured against: the same copies and kernel from plain C++, with
// nothing else (no validation, no graph, no Python); and a session driven from C++, which splits
// a Python call's cost into the session's own and the Python entry's; and the I/O floor of any
// engine, for trtfast bench.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "test_engine.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"
#include "trtfast/session.hpp"

namespace trtfast::testing {

std::vector<double> floor_latencies(bool host, bool blocking_sync, std::int64_t batch,
                                    std::int64_t features, int iterations, int warmup, int device) {
  cuda::set_device(device);
  const std::int64_t count = batch * features;
  const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  cuda::Stream stream(device);
  cuda::Event done(device, false, blocking_sync ? cuda::SyncMode::Blocking : cuda::SyncMode::Spin);
  cuda::DeviceBuffer x(bytes, device);
  cuda::DeviceBuffer y(bytes, device);
  cuda::PinnedBuffer x_pinned(bytes);
  cuda::PinnedBuffer y_pinned(bytes);
  std::vector<float> x_host(static_cast<std::size_t>(count), 1.5f);
  std::vector<float> y_host(static_cast<std::size_t>(count), 0.0f);

  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < warmup + iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (host) {
      std::memcpy(x_pinned.data(), x_host.data(), bytes);
      cuda::copy_async(x.data(), x_pinned.data(), bytes, stream.view());
    }
    launch_affine(static_cast<const float*>(x.data()), static_cast<float*>(y.data()), count, 2.0f,
                  1.0f, stream.get());
    if (host) {
      cuda::copy_async(y_pinned.data(), y.data(), bytes, stream.view());
    }
    done.record(stream.view());
    done.synchronize();
    if (host) {
      std::memcpy(y_host.data(), y_pinned.data(), bytes);
    }
    const auto stop = std::chrono::steady_clock::now();
    if (i >= warmup) {
      latencies.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    }
  }
  return latencies;
}

std::vector<double> session_latencies(const std::shared_ptr<Engine>& engine, bool host,
                                      bool cuda_graph, bool blocking_sync, std::int64_t batch,
                                      int iterations, int warmup) {
  const int device = engine->device();
  cuda::set_device(device);
  const TensorInfo& input = engine->signature().inputs().at(0);
  const std::int64_t features = input.shape.d[1];
  const std::int64_t count = batch * features;
  const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  SessionOptions options;
  options.cuda_graph = cuda_graph;
  options.sync = blocking_sync ? cuda::SyncMode::Blocking : cuda::SyncMode::Spin;
  Session session(engine, options);

  std::vector<float> x_host(static_cast<std::size_t>(count), 1.5f);
  std::vector<float> y_host(static_cast<std::size_t>(count), 0.0f);
  cuda::DeviceBuffer x_device(bytes, device);
  cuda::DeviceBuffer y_device(bytes, device);
  TensorArg x;
  x.dtype = DataType::Float32;
  x.shape = Dims{batch, features};
  OutputArg y;
  y.tensor.dtype = DataType::Float32;
  y.tensor.shape = x.shape;
  if (host) {
    x.data = x_host.data();
    x.location = Location::Host;
    y.target = OutputTarget::Host;
    y.tensor.data = y_host.data();
    y.tensor.location = Location::Host;
  } else {
    x.data = x_device.data();
    x.location = Location::Device;
    x.device = device;
    y.target = OutputTarget::Device;
    y.tensor.data = y_device.data();
    y.tensor.location = Location::Device;
    y.tensor.device = device;
  }
  DeviceOutput pooled;

  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < warmup + iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    session.run(&x, &y, &pooled);
    const auto stop = std::chrono::steady_clock::now();
    if (i >= warmup) {
      latencies.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    }
  }
  return latencies;
}

namespace {

// One tensor's memory in every place a host call moves it through.
struct StagedTensor {
  std::size_t bytes;
  std::vector<unsigned char> pageable;
  cuda::PinnedBuffer pinned;
  cuda::DeviceBuffer device;

  StagedTensor(std::size_t size, int device_index)
      : bytes(size),
        pageable(std::max<std::size_t>(size, 1), 1),
        pinned(std::max<std::size_t>(size, 1)),
        device(std::max<std::size_t>(size, 1), device_index) {}
};

}  // namespace

std::vector<double> io_floor_latencies(const std::vector<std::size_t>& input_bytes,
                                       const std::vector<std::size_t>& output_bytes, bool host,
                                       bool blocking_sync, int iterations, int warmup, int device) {
  if (iterations < 1 || warmup < 0) {
    throw Error("the floor needs iterations >= 1 and warmup >= 0");
  }
  cuda::set_device(device);
  cuda::Stream stream(device);
  cuda::Event done(device, false, blocking_sync ? cuda::SyncMode::Blocking : cuda::SyncMode::Spin);
  std::vector<StagedTensor> inputs;
  std::vector<StagedTensor> outputs;
  if (host) {
    for (const std::size_t bytes : input_bytes) {
      inputs.emplace_back(bytes, device);
    }
    for (const std::size_t bytes : output_bytes) {
      outputs.emplace_back(bytes, device);
    }
  }

  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < warmup + iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    for (StagedTensor& input : inputs) {
      std::memcpy(input.pinned.data(), input.pageable.data(), input.bytes);
      cuda::copy_async(input.device.data(), input.pinned.data(), input.bytes, stream.view());
    }
    for (StagedTensor& output : outputs) {
      cuda::copy_async(output.pinned.data(), output.device.data(), output.bytes, stream.view());
    }
    done.record(stream.view());
    done.synchronize();
    for (StagedTensor& output : outputs) {
      std::memcpy(output.pageable.data(), output.pinned.data(), output.bytes);
    }
    const auto stop = std::chrono::steady_clock::now();
    if (i >= warmup) {
      latencies.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    }
  }
  return latencies;
}

}  // namespace trtfast::testing
