// Engines, signatures and sessions. A call reads the caller's tensors with the GIL held, then
// releases it from the first copy to the last synchronize. Ctrl-C during a spin wait ends the
// call with KeyboardInterrupt; the session waits for the work left running at its next use.
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "tensors.hpp"
#include "trtfast/completion.hpp"
#include "trtfast/cuda.hpp"
#include "trtfast/error.hpp"
#include "trtfast/executor.hpp"
#include "trtfast/host_memory.hpp"
#include "trtfast/session.hpp"
#include "trtfast/signature.hpp"

namespace py = pybind11;

namespace trtfast::python {

namespace {

py::tuple to_tuple(const Dims& shape) {
  py::tuple result(static_cast<std::size_t>(shape.rank));
  for (int i = 0; i < shape.rank; ++i) {
    result[static_cast<std::size_t>(i)] = shape.d[static_cast<std::size_t>(i)];
  }
  return result;
}

Dims to_dims(const py::handle& shape) {
  std::vector<std::int64_t> dims;
  for (const py::handle item : shape) {
    dims.push_back(item.cast<std::int64_t>());
  }
  return Dims::from(dims);
}

py::dict describe(const TensorInfo& tensor, bool is_input) {
  py::dict entry;
  entry["name"] = tensor.name;
  entry["dtype"] = dtype_name(tensor.dtype);
  entry["shape"] = to_tuple(tensor.shape);
  entry["is_input"] = is_input;
  py::list profiles;
  for (const ProfileRange& range : tensor.profiles) {
    profiles.append(py::make_tuple(to_tuple(range.min), to_tuple(range.opt), to_tuple(range.max)));
  }
  entry["profiles"] = py::tuple(profiles);
  return entry;
}

Signature make_signature(const py::list& inputs, const py::list& outputs, int num_profiles) {
  std::vector<TensorInfo> input_infos;
  for (const py::handle item : inputs) {
    const auto entry = item.cast<py::tuple>();
    TensorInfo info;
    info.name = entry[0].cast<std::string>();
    info.dtype = dtype_from_name(entry[1].cast<std::string>());
    info.shape = to_dims(entry[2]);
    if (entry.size() > 3) {
      for (const py::handle range : entry[3]) {
        const auto triple = range.cast<py::tuple>();
        info.profiles.push_back({to_dims(triple[0]), to_dims(triple[1]), to_dims(triple[2])});
      }
    }
    input_infos.push_back(std::move(info));
  }
  std::vector<TensorInfo> output_infos;
  for (const py::handle item : outputs) {
    const auto entry = item.cast<py::tuple>();
    TensorInfo info;
    info.name = entry[0].cast<std::string>();
    info.dtype = dtype_from_name(entry[1].cast<std::string>());
    info.shape = to_dims(entry[2]);
    output_infos.push_back(std::move(info));
  }
  return Signature(std::move(input_infos), std::move(output_infos), num_profiles);
}

constexpr const char* kCallRefusal =
    "this Session is running a call on another thread; give each thread its own session, or use "
    "Session.submit or Engine.__call__, which keep a pool";
constexpr const char* kCloseRefusal =
    "this Session is running a call on another thread; close it after the call";
constexpr const char* kUnbindRefusal =
    "this Session is running a call on another thread; unbind it after the call";

// Marks a session busy while one thread uses it (a call, bind, unbind, close): another thread
// gets `refusal`, never a race, even while the first waits for the GPU without the GIL.
class BusyScope {
 public:
  BusyScope(std::atomic<bool>& busy, const char* refusal) : busy_(busy) {
    if (busy_.exchange(true)) {
      throw Error(refusal);
    }
  }
  ~BusyScope() { busy_.store(false); }
  BusyScope(const BusyScope&) = delete;
  BusyScope& operator=(const BusyScope&) = delete;

 private:
  std::atomic<bool>& busy_;
};

// One call: busy, and the tensors it read let go of at its end.
class CallScope {
 public:
  CallScope(std::atomic<bool>& busy, Keep& keep) : busy_(busy, kCallRefusal), keep_(keep) {}
  ~CallScope() { keep_.clear(); }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  BusyScope busy_;
  Keep& keep_;
};

// Python runs signal handlers on its main thread only; set when the module is bound.
unsigned long main_thread_ident = 0;

// Asked now and then during a long wait: the waiting thread runs no Python code, so Ctrl-C is
// noticed here. True once the signal handler has raised (KeyboardInterrupt). Other threads
// never see a signal, so they skip taking the GIL.
bool python_interrupted() {
  if (PyThread_get_thread_ident() != main_thread_ident) {
    return false;
  }
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

// Runs `work` without the GIL. A wait the session cut short (Interrupted) becomes the Python
// exception the signal handler raised.
template <typename Work>
void without_gil(Work&& work) {
  try {
    py::gil_scoped_release release;
    work();
  } catch (const Interrupted&) {
    if (PyErr_Occurred() == nullptr) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
    throw py::error_already_set();
  }
}

const py::str& out_name() {
  static auto* name = new py::str("out");  // never destroyed: outlives the interpreter's teardown
  return *name;
}

const py::str& outputs_name() {
  static auto* name = new py::str("outputs");  // never destroyed, as out_name()
  return *name;
}

class PySession {
 public:
  PySession(std::shared_ptr<Engine> engine, bool cuda_graph, const std::string& sync,
            const py::object& stream, std::size_t graph_cache_size, bool torch_results,
            const py::object& outputs)
      : torch_results_(torch_results) {
    SessionOptions options;
    options.cuda_graph = cuda_graph;
    if (sync == "spin") {
      options.sync = cuda::SyncMode::Spin;
    } else if (sync == "blocking") {
      options.sync = cuda::SyncMode::Blocking;
    } else {
      throw py::value_error("sync must be 'spin' or 'blocking', not '" + sync + "'");
    }
    if (!stream.is_none()) {
      options.use_caller_stream = true;
      options.caller_stream =
          reinterpret_cast<cudaStream_t>(static_cast<std::uintptr_t>(stream.cast<std::uint64_t>()));
    }
    options.graph_cache_size = graph_cache_size;
    // Called on the calling thread inside execute (without the GIL); emitted after it.
    options.warn = [this](SessionWarning kind, const std::string& message) {
      warnings_.emplace_back(kind, message);
    };
    options.interrupted = python_interrupted;
    {
      py::gil_scoped_release release;
      session_ = std::make_unique<Session>(std::move(engine), std::move(options));
    }
    reader_ = std::make_unique<TensorReader>(session_->signature(), session_->device());
    releases_ = std::make_shared<PendingReleases>(session_->device());
    const std::size_t inputs = session_->signature().inputs().size();
    const std::size_t count = session_->signature().outputs().size();
    inputs_.resize(inputs);
    present_.assign(inputs, false);
    outputs_.resize(count);
    pooled_.resize(count);
    results_.resize(count);
    given_.assign(count, false);
    session_selected_.assign(count, true);
    call_selected_.assign(count, true);
    if (!outputs.is_none()) {
      select_outputs(outputs, session_selected_);
    }
    // Each tensor, what owns its memory, and a host copy or mapping copy: no growth per call.
    keep_.reserve(3 * (inputs + count) + 2);
  }

  Session& session() const {
    if (!session_) {
      throw Error("this Session is closed");
    }
    return *session_;
  }

  // run(inputs=None, /, *, out=None, **named): `args` a tuple, `kwargs` a dict or null; neither
  // is changed.
  py::object run(PyObject* args, PyObject* kwargs) {
    Session& session = this->session();
    const CallArgs call = parse_call(args, kwargs);
    if (replays_bound(call)) {
      return run_bound(session);
    }
    CallScope scope(busy_, keep_);
    read_call(session, call);
    try {
      wait_for_producers(session, keep_);
      without_gil([&] { session.execute(inputs_.data(), outputs_.data(), pooled_.data()); });
    } catch (...) {
      if (session.work_in_flight()) {
        in_flight_keep_.swap(keep_);  // the work left running still reads and writes these
      }
      throw;
    }
    return collect(session);
  }

  // An awaitable call's first half, on the event loop's thread: reads the call as run() does
  // and hands its execution to the session's call thread, which waits for the GPU and then
  // pushes `token` to `queue`. The session stays busy, holding the call's tensors, until
  // finish_async() (which the loop calls once it has the token back).
  void submit_async(PyObject* args, PyObject* kwargs, std::shared_ptr<CompletionQueue> queue,
                    std::uint64_t token) {
    Session& session = this->session();
    const CallArgs call = parse_call(args, kwargs);
    if (busy_.exchange(true)) {
      throw Error(kCallRefusal);
    }
    try {
      async_bound_ = replays_bound(call);
      if (async_bound_) {
        settle(session);
        session.prepare(bound_inputs_.data());
      } else {
        read_call(session, call);
        wait_for_producers(session, keep_);
      }
      if (!call_thread_) {
        call_thread_ = std::make_unique<CallThread>();
      }
      const TensorArg* inputs = async_bound_ ? bound_inputs_.data() : inputs_.data();
      const OutputArg* outputs = async_bound_ ? bound_outputs_.data() : outputs_.data();
      async_error_ = nullptr;
      call_thread_->post(
          [this, &session, inputs, outputs] {
            try {
              session.execute(inputs, outputs, pooled_.data());
            } catch (...) {
              async_error_ = std::current_exception();
            }
          },
          std::move(queue), token);
    } catch (...) {
      keep_.clear();
      busy_.store(false);
      throw;
    }
    async_pending_ = true;
  }

  py::object finish_async() {
    if (!async_pending_) {
      throw Error("_finish_async() answers a call started by _submit_async(), and none is");
    }
    async_pending_ = false;
    // The call's tensors are let go of (its work is over) and the session is free again.
    struct End {
      PySession& self;
      ~End() {
        self.keep_.clear();
        self.busy_.store(false);
      }
    } end{*this};
    if (async_error_) {
      std::exception_ptr error = std::exchange(async_error_, nullptr);
      std::rethrow_exception(error);
    }
    Session& session = this->session();
    if (async_bound_) {
      emit_warnings();
      return bound_result_;
    }
    return collect(session);
  }

  // `outputs`: None, out buffers by name (a mapping), or the names of the outputs to return.
  py::dict bind(const py::object& inputs, const py::object& outputs) {
    Session& session = this->session();
    py::object buffers = outputs;
    const std::vector<bool>* selected = &session_selected_;
    if (!outputs.is_none() && !is_mapping(outputs)) {
      select_outputs(outputs, call_selected_);
      selected = &call_selected_;
      buffers = py::none();
    }
    CallScope scope(busy_, keep_);
    unbind_now(session);
    bound_inputs_.resize(inputs_.size());
    bound_outputs_.resize(outputs_.size());
    // A copy of the caller's dict (which it may change later), read: bound_keep_ holds the copy
    // and every tensor in it for as long as the binding lasts.
    py::object mapping = inputs;
    if (!inputs.is_none() && PyDict_Check(inputs.ptr())) {
      mapping = py::reinterpret_steal<py::object>(PyDict_Copy(inputs.ptr()));
      if (!mapping) {
        throw py::error_already_set();
      }
      bound_keep_.hold(mapping);
    }
    const bool torch_inputs = reader_->read_inputs(mapping, py::none(), bound_inputs_, present_,
                                                   bound_keep_, session.device_stream());
    session.prepare(bound_inputs_.data());
    const bool device_mode = any_device(bound_inputs_);
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      if (session.data_dependent(static_cast<int>(j))) {
        throw InputError("output '" + session.signature().outputs()[j].name +
                         "' has a data-dependent shape, so its buffer cannot be bound; call "
                         "run(inputs) instead");
      }
    }
    read_outputs(session, buffers, device_mode, bound_inputs_, bound_outputs_, bound_keep_,
                 *selected);
    take_aliased_inputs(session, mapping, py::none(), bound_outputs_);
    wait_for_producers(session, bound_keep_);
    // Outputs the caller did not give get buffers of their own for the binding's lifetime.
    py::dict result;
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      OutputArg& target = bound_outputs_[j];
      if (target.target == OutputTarget::Pooled &&
          session.signature().aliased_input(static_cast<int>(j)) < 0) {
        const TensorInfo& info = session.signature().outputs()[j];
        DeviceArray array;
        array.shape = session.output_shape(static_cast<int>(j));
        array.dtype = info.dtype;
        array.device = session.device();
        auto buffer = std::make_shared<cuda::DeviceBuffer>(array.nbytes(), session.device());
        array.data = buffer->data();
        array.owner = std::move(buffer);
        target.target = OutputTarget::Device;
        target.tensor.data = array.data;
        target.tensor.dtype = array.dtype;
        target.tensor.shape = array.shape;
        target.tensor.location = Location::Device;
        target.tensor.device = array.device;
        results_[j] = py::cast(std::move(array));
      }
      bound_keep_.hold(results_[j]);  // written by every replay, returned or not
      if (!given_[j] && !(*selected)[j]) {
        results_[j] = py::none();
        continue;
      }
      if (torch_inputs && made_here(session, j, target)) {
        results_[j] = to_torch(results_[j]);  // shares the bound buffer: replays update it
      }
      result[reader_->output_name(static_cast<int>(j))] = results_[j];
      results_[j] = py::none();
    }
    bound_result_ = result;
    bound_ = true;
    return result;
  }

  void unbind() {
    BusyScope scope(busy_, kUnbindRefusal);
    if (session_) {
      unbind_now(*session_);
    }
  }

  void close() {
    // Busy until closed: a call cannot start while close waits for work in flight.
    BusyScope scope(busy_, kCloseRefusal);
    if (!session_) {
      return;
    }
    unbind_now(*session_);  // waits for an interrupted call's work first
    std::unique_ptr<Session> closing = std::move(session_);
    py::gil_scoped_release release;
    closing.reset();
  }

  ~PySession() {
    call_thread_.reset();  // an awaitable call's work ends first: it uses the session
    // The session waits for work in flight before the tensors that work uses are let go.
    session_.reset();
  }
  PySession(const PySession&) = delete;
  PySession& operator=(const PySession&) = delete;

  bool closed() const noexcept { return !session_; }
  bool bound() const noexcept { return bound_; }

  py::dict stats() const {
    const SessionStats stats = session().stats();
    py::dict result;
    result["calls"] = stats.calls;
    result["graph_launches"] = stats.graph_launches;
    result["graph_captures"] = stats.graph_captures;
    result["plain_runs"] = stats.plain_runs;
    result["executor_calls"] = stats.executor_calls;
    result["staged_bytes"] = stats.staged_bytes;
    result["direct_bytes"] = stats.direct_bytes;
    result["cached_graphs"] = stats.cached_graphs;
    result["graphs_enabled"] = stats.graphs_enabled;
    return result;
  }

 private:
  // A result the session made (not the caller's `out` buffer, nor an input updated in place):
  // one that follows torch inputs as a torch tensor when torch_results_ is set.
  bool made_here(Session& session, std::size_t j, const OutputArg& target) const {
    return torch_results_ && !given_[j] &&
           !(target.target == OutputTarget::Pooled &&
             session.signature().aliased_input(static_cast<int>(j)) >= 0);
  }

  struct CallArgs {
    py::object mapping;
    py::object named;
    py::object out;
    py::object selection;  // `outputs=`: the names of the outputs to return
    bool has_inputs = false;
  };

  // run(inputs=None, /, *, out=None, **named): `args` a tuple, `kwargs` a dict or null; neither
  // is changed.
  static CallArgs parse_call(PyObject* args, PyObject* kwargs) {
    const Py_ssize_t positional = PyTuple_GET_SIZE(args);
    if (positional > 1) {
      throw py::type_error("run() takes one positional argument (a dict of inputs), not " +
                           std::to_string(positional));
    }
    CallArgs call{py::none(), py::none(), py::none(), py::none()};
    if (kwargs != nullptr && PyDict_GET_SIZE(kwargs) > 0) {
      call.named = py::reinterpret_borrow<py::object>(kwargs);
      // `out` and `outputs` are the call's own keywords, not inputs: taken out of a copy.
      for (const py::str* key : {&out_name(), &outputs_name()}) {
        PyObject* given = PyDict_GetItemWithError(kwargs, key->ptr());
        if (given == nullptr) {
          if (PyErr_Occurred()) {
            throw py::error_already_set();
          }
          continue;
        }
        (key == &out_name() ? call.out : call.selection) =
            py::reinterpret_borrow<py::object>(given);
        if (call.named.ptr() == kwargs) {
          call.named = py::reinterpret_steal<py::object>(PyDict_Copy(kwargs));
          if (!call.named) {
            throw py::error_already_set();
          }
        }
        if (PyDict_DelItem(call.named.ptr(), key->ptr()) < 0) {
          throw py::error_already_set();
        }
      }
    }
    if (positional == 1) {
      call.mapping = py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(args, 0));
    }
    call.has_inputs =
        !call.mapping.is_none() || (!call.named.is_none() && PyDict_GET_SIZE(call.named.ptr()) > 0);
    return call;
  }

  // The part of a call that reads Python objects (the caller holds busy_).
  void read_call(Session& session, const CallArgs& call) {
    settle(session);
    releases_->poll();  // blocks whose consumers are done go back to the pool first
    torch_inputs_ = reader_->read_inputs(call.mapping, call.named, inputs_, present_, keep_,
                                         session.device_stream());
    session.prepare(inputs_.data());
    const bool device_mode = any_device(inputs_);
    selected_ = &session_selected_;
    if (!call.selection.is_none()) {
      select_outputs(call.selection, call_selected_);
      selected_ = &call_selected_;
    }
    read_outputs(session, call.out, device_mode, inputs_, outputs_, keep_, *selected_);
    take_aliased_inputs(session, call.mapping, call.named, outputs_);
  }

  // After execute: warnings, then the outputs as a dict.
  py::dict collect(Session& session) {
    emit_warnings();
    py::dict result;
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      if (!given_[j] && !(*selected_)[j]) {
        pooled_[j] = DeviceOutput{};  // its block goes back to the pool
        results_[j] = py::none();
        continue;
      }
      py::object value = result_object(session, j);
      if (torch_inputs_ && made_here(session, j, outputs_[j])) {
        value = to_torch(value);
      }
      if (PyDict_SetItem(result.ptr(), reader_->output_name(static_cast<int>(j)).ptr(),
                         value.ptr()) < 0) {
        throw py::error_already_set();
      }
      results_[j] = py::none();
    }
    return result;
  }

  // True for a replay of the bound call; refuses outputs given to one.
  bool replays_bound(const CallArgs& call) const {
    if (call.has_inputs || !bound_) {
      return false;
    }
    if (!call.out.is_none() || !call.selection.is_none()) {
      throw InputError(
          "run() without inputs replays the bound call; its outputs were given "
          "to bind()");
    }
    return true;
  }

  static bool any_device(const std::vector<TensorArg>& inputs) {
    for (const TensorArg& arg : inputs) {
      if (arg.location == Location::Device) {
        return true;
      }
    }
    return false;
  }

  // The caller holds busy_. The bound tensors may still be in use: settle first.
  void unbind_now(Session& session) {
    settle(session);
    bound_ = false;
    bound_result_ = py::dict();
    bound_keep_.clear();
  }

  // __cuda_array_interface__ v3: nothing touches a tensor before its producer's stream is
  // waited on. Device memory: the session's stream waits on the GPU; pinned host memory, which
  // the CPU copies: this thread waits, without the GIL.
  static void wait_for_producers(Session& session, const Keep& keep) {
    for (cudaStream_t producer : keep.streams()) {
      session.order_after(producer);
    }
    if (!keep.host_streams().empty()) {
      without_gil([&] {
        for (cudaStream_t producer : keep.host_streams()) {
          cuda::StreamView(producer).synchronize();
        }
      });
    }
  }

  // An output that shares memory with a device input (TensorRT's aliased IO) has that input,
  // updated in place, as its result.
  void take_aliased_inputs(Session& session, const py::object& mapping, const py::object& named,
                           const std::vector<OutputArg>& targets) {
    const Signature& sig = session.signature();
    for (std::size_t j = 0; j < targets.size(); ++j) {
      const int input = sig.aliased_input(static_cast<int>(j));
      if (input < 0 || targets[j].target != OutputTarget::Pooled) {
        continue;
      }
      const py::str name(sig.inputs()[static_cast<std::size_t>(input)].name);
      if (!named.is_none() && PyDict_Contains(named.ptr(), name.ptr()) == 1) {
        results_[j] = named[name];
      } else {
        results_[j] = mapping[name];
      }
    }
  }

  // Marks the outputs that `names` (one name or an iterable of names) names.
  void select_outputs(const py::object& names, std::vector<bool>& selected) const {
    std::fill(selected.begin(), selected.end(), false);
    if (PyUnicode_Check(names.ptr())) {
      selected[static_cast<std::size_t>(reader_->output_index(names))] = true;
      return;
    }
    if (is_mapping(names) || !py::isinstance<py::iterable>(names)) {
      const std::vector<TensorInfo>& outputs = reader_->signature().outputs();
      const std::string example = outputs.empty() ? "y" : outputs[0].name;
      throw InputError("outputs= takes the names of the outputs to return, such as outputs=('" +
                       example + "',), not a " +
                       py::str(py::type::of(names).attr("__name__")).cast<std::string>());
    }
    for (const py::handle name : names) {
      selected[static_cast<std::size_t>(reader_->output_index(name))] = true;
    }
  }

  // Outputs follow the inputs: host arrays in, numpy out; any device array in, device arrays out.
  // An output that shares memory with an input follows that input. One that is not `selected`
  // (and not given in `out`) goes to a pooled device block and is never copied to the host.
  void read_outputs(Session& session, const py::object& out, bool device_mode,
                    const std::vector<TensorArg>& inputs, std::vector<OutputArg>& targets,
                    Keep& keep, const std::vector<bool>& selected) {
    std::fill(given_.begin(), given_.end(), false);
    if (!out.is_none()) {
      py::dict given;
      if (PyDict_Check(out.ptr())) {
        given = py::reinterpret_borrow<py::dict>(out);
      } else {
        given = py::dict(out);
      }
      for (const auto& [name, value] : given) {
        const int j = reader_->output_index(name);
        const auto index = static_cast<std::size_t>(j);
        OutputArg& target = targets[index];
        reader_->read(value, session.signature().outputs()[index], true, target.tensor, keep,
                      session.device_stream());
        session.check_output(j, target.tensor);
        target.target =
            target.tensor.location == Location::Device ? OutputTarget::Device : OutputTarget::Host;
        results_[index] = py::reinterpret_borrow<py::object>(value);
        keep.hold(results_[index]);
        given_[index] = true;
      }
    }
    for (std::size_t j = 0; j < targets.size(); ++j) {
      if (given_[j]) {
        continue;
      }
      OutputArg& target = targets[j];
      target.tensor = TensorArg{};
      const int aliased = session.signature().aliased_input(static_cast<int>(j));
      const bool device_result =
          aliased >= 0 ? inputs[static_cast<std::size_t>(aliased)].location == Location::Device
                       : device_mode || !selected[j];
      if (device_result) {
        target.target = OutputTarget::Pooled;
        continue;
      }
      target.target = OutputTarget::Host;
      if (session.data_dependent(static_cast<int>(j))) {
        continue;  // its shape is known after the run: read from staging then
      }
      const py::object& dtype = reader_->output_dtype(static_cast<int>(j));
      if (dtype.is_none()) {
        throw InputError("output '" + session.signature().outputs()[j].name + "' is " +
                         dtype_name(session.signature().outputs()[j].dtype) +
                         ", which numpy cannot hold without ml_dtypes; install ml_dtypes or pass "
                         "device arrays");
      }
      // Large results land by DMA in a pooled page-locked array: no second copy, no allocation.
      const Dims& shape = session.output_shape(static_cast<int>(j));
      const std::int64_t volume = shape.volume();
      const std::size_t bytes = volume > 0 ? static_cast<std::size_t>(volume) *
                                                 dtype_size(session.signature().outputs()[j].dtype)
                                           : 0;
      const cuda::HostCopyTuning& tuning = cuda::host_copy_tuning();
      py::object pinned;
      if (tuning.pooled_outputs && bytes >= tuning.pooled_output_min_bytes) {
        pinned = pinned_numpy(dtype, shape, bytes);
      }
      target.tensor.pinned = static_cast<bool>(pinned);
      py::array array =
          pinned ? py::reinterpret_steal<py::array>(pinned.release()) : new_numpy(dtype, shape);
      target.tensor.data = array.mutable_data();
      results_[j] = std::move(array);
    }
  }

  py::object result_object(Session& session, std::size_t j) {
    const OutputArg& target = outputs_[j];
    const TensorInfo& info = session.signature().outputs()[j];
    if (target.target == OutputTarget::Pooled &&
        session.signature().aliased_input(static_cast<int>(j)) >= 0) {
      return results_[j];  // the input, updated in place
    }
    if (target.target == OutputTarget::Pooled) {
      DeviceArray array;
      array.owner = std::move(pooled_[j].owner);
      array.data = pooled_[j].data;
      array.shape = session.result_shape(static_cast<int>(j));
      array.dtype = info.dtype;
      array.device = session.device();
      array.releases = releases_;  // one reference count, no allocation
      pooled_[j] = DeviceOutput{};
      return py::cast(std::move(array));
    }
    if (target.target == OutputTarget::Host && target.tensor.data == nullptr) {
      const Dims& shape = session.result_shape(static_cast<int>(j));
      const py::object& dtype = reader_->output_dtype(static_cast<int>(j));
      if (dtype.is_none()) {
        throw InputError("output '" + info.name + "' is " + dtype_name(info.dtype) +
                         ", which numpy cannot hold without ml_dtypes; install ml_dtypes");
      }
      py::array array = new_numpy(dtype, shape);
      const std::int64_t volume = shape.volume();
      if (volume > 0) {
        std::memcpy(array.mutable_data(), session.host_result(static_cast<int>(j)),
                    static_cast<std::size_t>(volume) * dtype_size(info.dtype));
      }
      return std::move(array);
    }
    return results_[j];
  }

  py::dict run_bound(Session& session) {
    CallScope scope(busy_, keep_);
    settle(session);
    session.prepare(bound_inputs_.data());
    // What the bound call uses is held by bound_keep_ until unbind(), which waits for it.
    without_gil(
        [&] { session.execute(bound_inputs_.data(), bound_outputs_.data(), pooled_.data()); });
    emit_warnings();
    return bound_result_;
  }

  // Waits, without the GIL, for the work an interrupted call left running (Ctrl-C during this
  // wait interrupts it too), then lets go of the tensors that call held.
  void settle(Session& session) {
    if (!session.work_in_flight()) {
      return;  // then in_flight_keep_ is empty
    }
    try {
      without_gil([&] { session.finish_work_in_flight(); });
    } catch (...) {
      if (!session.work_in_flight()) {
        in_flight_keep_.clear();  // the work failed, and is over
      }
      throw;
    }
    in_flight_keep_.clear();
  }

  void emit_warnings() {
    if (warnings_.empty()) {
      return;
    }
    std::vector<std::pair<SessionWarning, std::string>> pending = std::move(warnings_);
    warnings_.clear();
    for (const auto& [kind, message] : pending) {
      PyObject* category = PyExc_RuntimeWarning;
      py::object performance;
      if (kind == SessionWarning::PageableStaging || kind == SessionWarning::UnalignedStaging) {
        performance = py::module_::import("trtfast.errors").attr("PerformanceWarning");
        category = performance.ptr();
      }
      if (PyErr_WarnEx(category, message.c_str(), 2) < 0) {
        throw py::error_already_set();
      }
    }
  }

  bool torch_results_;
  bool torch_inputs_ = false;                    // this call's inputs were torch tensors
  const std::vector<bool>* selected_ = nullptr;  // this call's outputs to return
  std::unique_ptr<Session> session_;
  std::unique_ptr<TensorReader> reader_;
  std::atomic<bool> busy_{false};
  std::vector<std::pair<SessionWarning, std::string>> warnings_;
  Keep in_flight_keep_;  // the tensors of an interrupted call whose work may still run
  std::shared_ptr<PendingReleases> releases_;
  // Per call, sized once.
  std::vector<TensorArg> inputs_;
  std::vector<bool> present_;
  std::vector<OutputArg> outputs_;
  std::vector<DeviceOutput> pooled_;
  std::vector<py::object> results_;
  std::vector<bool> given_;
  std::vector<bool> session_selected_;  // the session's outputs= (all by default)
  std::vector<bool> call_selected_;     // a call's or bind()'s outputs=
  Keep keep_;
  // The bound call.
  bool bound_ = false;
  std::vector<TensorArg> bound_inputs_;
  std::vector<OutputArg> bound_outputs_;
  py::dict bound_result_;
  Keep bound_keep_;
  // Awaitable calls: the thread that runs them, the running call's error, whether it is bound.
  std::unique_ptr<CallThread> call_thread_;
  std::exception_ptr async_error_;
  bool async_bound_ = false;
  bool async_pending_ = false;
};

// CPython's call slot for `session(...)`, the most frequent entry: it reaches run() without a
// `__call__` lookup and pybind11's argument matching (about 0.3 us less per call).
PyObject* call_session(PyObject* self, PyObject* args, PyObject* kwargs) {
  try {
    return py::cast<PySession&>(py::handle(self)).run(args, kwargs).release().ptr();
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
}

}  // namespace

void bind_engine(py::module_& module) {
  bind_device_array(module);

  py::class_<Signature>(module, "Signature",
                        "An engine's inputs and outputs: names, dtypes, shapes (-1 dynamic) and "
                        "per-profile (min, opt, max) ranges.")
      .def(py::init(&make_signature), py::arg("inputs"), py::arg("outputs"),
           py::arg("num_profiles") = 1,
           "inputs: [(name, dtype, shape, [(min, opt, max), ...])], outputs: [(name, dtype, "
           "shape)]; static inputs may leave out their ranges.")
      .def_property_readonly("inputs",
                             [](const Signature& s) {
                               py::list result;
                               for (const TensorInfo& t : s.inputs()) {
                                 result.append(describe(t, true));
                               }
                               return result;
                             })
      .def_property_readonly("outputs",
                             [](const Signature& s) {
                               py::list result;
                               for (const TensorInfo& t : s.outputs()) {
                                 result.append(describe(t, false));
                               }
                               return result;
                             })
      .def_property_readonly("num_profiles", &Signature::num_profiles)
      .def(
          "check",
          [](const Signature& signature, const py::object& inputs, int device, int current) {
            TensorReader reader(signature, device);
            std::vector<TensorArg> args(signature.inputs().size());
            std::vector<bool> present(args.size(), false);
            Keep keep;
            // No consumer stream: nothing runs on the GPU here.
            reader.read_inputs(inputs, py::none(), args, present, keep, nullptr);
            const int profile = signature.check_inputs(args.data(), device, current);
            keep.clear();
            return profile;
          },
          py::arg("inputs"), py::arg("device") = 0, py::arg("current") = -1,
          "Checks a call's inputs as a session would; returns the profile that accepts them or "
          "raises InputError. Like a session, keeps `current` (the profile in use, -1 for none) "
          "while it accepts the shapes, else takes the first that does.");

  py::class_<Engine, std::shared_ptr<Engine>>(module, "Engine",
                                              "Something sessions run: one executor each.")
      .def_property_readonly("signature", &Engine::signature,
                             py::return_value_policy::reference_internal)
      .def_property_readonly("device", &Engine::device);
}

void bind_session(py::module_& module) {
  main_thread_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  py::class_<PySession>(
      module, "Session", py::dynamic_attr(),
      py::custom_type_setup([](PyHeapTypeObject* type) { type->ht_type.tp_call = call_session; }),
      "One execution context with its stream, buffers and CUDA graphs. One "
      "thread at a time. Ctrl-C interrupts a call's wait for the GPU within about 20 ms with "
      "sync='spin'; with sync='blocking' it takes effect when the GPU work ends.")
      .def(py::init<std::shared_ptr<Engine>, bool, const std::string&, const py::object&,
                    std::size_t, bool, const py::object&>(),
           py::arg("engine"), py::arg("cuda_graph") = true, py::arg("sync") = "spin",
           py::arg("stream") = py::none(), py::arg("graph_cache_size") = 16,
           py::arg("torch_results") = true, py::arg("outputs") = py::none())
      .def(
          "run",
          [](PySession& session, const py::args& args, const py::kwargs& kwargs) {
            return session.run(args.ptr(), kwargs.ptr());
          },
          "run(inputs=None, /, *, out=None, outputs=None, **named) -> dict. outputs: the names "
          "of the outputs to return (the others are not copied to the host). Without inputs "
          "after bind(): replays the bound call. session(...) is the same call.")
      .def(
          "_submit_async",
          [](PySession& session, std::shared_ptr<CompletionQueue> queue, std::uint64_t token,
             const py::args& args, const py::kwargs& kwargs) {
            session.submit_async(args.ptr(), kwargs.ptr(), std::move(queue), token);
          },
          py::arg("queue"), py::arg("token"), py::pos_only(),  // inputs may be named so too
          "Starts an awaitable call (trtfast.Session.run_async): `token` reaches `queue` when "
          "its work is done; then _finish_async() returns its outputs or raises its error.")
      .def("_finish_async", &PySession::finish_async)
      .def("bind", &PySession::bind, py::arg("inputs"), py::arg("outputs") = py::none())
      .def("unbind", &PySession::unbind)
      .def("close", &PySession::close)
      .def_property_readonly("closed", &PySession::closed)
      .def_property_readonly("bound", &PySession::bound)
      .def_property_readonly("stats", &PySession::stats)
      .def_property_readonly(
          "stream",
          [](const PySession& s) { return reinterpret_cast<std::uintptr_t>(s.session().stream()); })
      .def_property_readonly("device", [](const PySession& s) { return s.session().device(); });
}

}  // namespace trtfast::python
