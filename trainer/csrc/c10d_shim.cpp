// The process group the trainer's data parallelism runs on: torch.distributed's own C++
// core (c10d) from libtorch, behind a C interface for Rust (trainer/src/dist/ffi.rs).
//
// - Rendezvous through a TCPStore at MASTER_ADDR:MASTER_PORT, served by rank 0 (or by
//   torchrun's agent, which sets TORCHELASTIC_USE_AGENT_STORE).
// - ProcessGroupGloo for CPU tensors; ProcessGroupNCCL (c10d_nccl.cpp, compiled only where
//   libtorch_cuda and nccl.h are present) for CUDA tensors.
// - Every rank keeps a heartbeat in the store (its own connection, its own thread), with the
//   step it is at. When a collective fails or times out, the error names the ranks whose
//   heartbeat stopped (dead) or whose step lags (hung), or rank 0 when the store is gone.
//
// Errors are returned as malloc'ed strings that Rust frees with jl_free_string.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

using namespace std::chrono_literals;

#ifdef JL_WITH_NCCL
// c10d_nccl.cpp
c10::intrusive_ptr<c10d::Backend> jl_make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    std::chrono::milliseconds timeout);
#endif

namespace {

constexpr auto kHeartbeat = 500ms;

std::string key_alive(int rank) {
  return "jl/alive/" + std::to_string(rank);
}

c10::intrusive_ptr<c10d::TCPStore> connect_store(
    const std::string& addr,
    int port,
    bool server,
    int world,
    std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(port);
  opts.isServer = server;
  opts.numWorkers = server ? std::optional<std::size_t>(world) : std::nullopt;
  opts.waitWorkers = false;
  opts.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(addr, opts);
}

struct Heartbeat {
  std::atomic<bool> stop{false};
  std::atomic<bool> store_lost{false};
  std::atomic<int64_t> progress{0};
  std::thread thread;
};

} // namespace

struct jl_pg {
  int rank = 0;
  int world = 1;
  std::string addr;
  int port = 0;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo;
  c10::intrusive_ptr<c10d::Backend> nccl;
  c10::intrusive_ptr<c10d::Store> beat_store;
  Heartbeat beat;

  ~jl_pg() {
    beat.stop = true;
    if (beat.thread.joinable()) {
      beat.thread.join();
    }
  }

  c10d::Backend& backend_for(const at::Tensor& t) {
    if (t.is_cuda()) {
      if (!nccl) {
        throw std::runtime_error(
            "a CUDA tensor reached a process group without NCCL (built without it, or "
            "created for the CPU)");
      }
      return *nccl;
    }
    return *gloo;
  }

  // What went wrong with the other ranks, for an error message; blocks ~3 heartbeats.
  std::string diagnose() {
    if (beat.store_lost) {
      return "rank 0, which hosts the rendezvous store at " + addr + ":" +
          std::to_string(port) + ", is gone (it died or its machine is unreachable)";
    }
    try {
      auto read = [&]() {
        std::vector<std::pair<int64_t, int64_t>> seen(world, {-1, -1});
        for (int r = 0; r < world; ++r) {
          if (beat_store->check({key_alive(r)})) {
            auto v = beat_store->get(key_alive(r));
            std::string s(v.begin(), v.end());
            auto colon = s.find(':');
            seen[r] = {
                std::stoll(s.substr(0, colon)), std::stoll(s.substr(colon + 1))};
          }
        }
        return seen;
      };
      auto before = read();
      std::this_thread::sleep_for(3 * kHeartbeat);
      auto after = read();
      std::vector<int> dead;
      for (int r = 0; r < world; ++r) {
        if (r != rank && after[r].first == before[r].first) {
          dead.push_back(r);
        }
      }
      std::ostringstream out;
      if (!dead.empty()) {
        out << (dead.size() == 1 ? "rank " : "ranks ");
        for (size_t i = 0; i < dead.size(); ++i) {
          out << (i ? ", " : "") << dead[i];
        }
        out << " stopped (no heartbeat for " << 3 * kHeartbeat.count()
            << " ms): the process died or its machine is unreachable";
        return out.str();
      }
      int64_t mine = beat.progress.load();
      std::vector<int> late;
      for (int r = 0; r < world; ++r) {
        if (r != rank && after[r].second < mine) {
          late.push_back(r);
        }
      }
      if (!late.empty()) {
        out << (late.size() == 1 ? "rank " : "ranks ");
        for (size_t i = 0; i < late.size(); ++i) {
          out << (i ? ", " : "") << late[i] << " (at step "
              << after[late[i]].second << ")";
        }
        out << " alive but behind this rank's step " << mine
            << ": hung or much slower";
        return out.str();
      }
      return "every rank is alive and at the same step";
    } catch (const std::exception&) {
      return "rank 0, which hosts the rendezvous store at " + addr + ":" +
          std::to_string(port) + ", is gone (it died or its machine is unreachable)";
    }
  }
};

namespace {

char* dup_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// Runs `f`; on an exception stores a message (with the diagnosis of the other ranks when
// `pg` is given) in `*err` and returns 1.
template <typename F>
int guarded(jl_pg* pg, const char* what, char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    std::string msg = std::string(what) + " failed";
    if (pg != nullptr) {
      msg += " on rank " + std::to_string(pg->rank) + " of " +
          std::to_string(pg->world) + ": " + pg->diagnose();
    }
    std::string cause = e.what();
    // c10 errors carry a C++ backtrace after the first line: keep the message.
    auto cut = cause.find("\nException raised from");
    if (cut != std::string::npos) {
      cause.resize(cut);
    }
    msg += " (c10d: " + cause + ")";
    *err = dup_string(msg);
    return 1;
  }
}

void run(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  if (!work->wait(timeout)) {
    throw std::runtime_error("timed out");
  }
}

} // namespace

extern "C" {

void jl_free_string(char* s) {
  std::free(s);
}

jl_pg* jl_pg_new(
    const char* addr,
    int port,
    int rank,
    int world,
    int64_t timeout_ms,
    int with_nccl,
    int serve_store,
    const char* prefix,
    char** err) {
  auto pg = std::make_unique<jl_pg>();
  pg->rank = rank;
  pg->world = world;
  pg->addr = addr;
  pg->port = port;
  pg->timeout = std::chrono::milliseconds(timeout_ms);
  int rc = guarded(nullptr, "joining the process group", err, [&] {
    // Every key under `prefix`: torchrun's agent serves the store and keeps its own keys.
    pg->store = c10::make_intrusive<c10d::PrefixStore>(
        prefix, connect_store(addr, port, serve_store != 0, world, pg->timeout));
    pg->beat_store = c10::make_intrusive<c10d::PrefixStore>(
        prefix, connect_store(addr, port, false, world, pg->timeout));
    auto gloo_store = c10::make_intrusive<c10d::PrefixStore>("jl/gloo", pg->store);
    auto opts = c10d::ProcessGroupGloo::Options::create_default(pg->timeout);
    pg->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo_store, rank, world, opts);
    if (with_nccl != 0) {
#ifdef JL_WITH_NCCL
      auto nccl_store = c10::make_intrusive<c10d::PrefixStore>("jl/nccl", pg->store);
      pg->nccl = jl_make_nccl(nccl_store, rank, world, pg->timeout);
#else
      throw std::runtime_error(
          "this trainer was built without NCCL (no libtorch_cuda or nccl.h at build time)");
#endif
    }
  });
  if (rc != 0) {
    return nullptr;
  }
  jl_pg* raw = pg.get();
  raw->beat.thread = std::thread([raw] {
    int64_t count = 0;
    while (!raw->beat.stop) {
      try {
        std::string v =
            std::to_string(++count) + ":" + std::to_string(raw->beat.progress.load());
        raw->beat_store->set(
            key_alive(raw->rank), std::vector<uint8_t>(v.begin(), v.end()));
      } catch (const std::exception&) {
        raw->beat.store_lost = true;
        return;
      }
      std::this_thread::sleep_for(kHeartbeat);
    }
  });
  return pg.release();
}

void jl_pg_free(jl_pg* pg) {
  delete pg;
}

int jl_pg_has_nccl(jl_pg* pg) {
  return pg->nccl ? 1 : 0;
}

void jl_pg_set_progress(jl_pg* pg, int64_t step) {
  pg->beat.progress = step;
}

// op: 0 = sum, 1 = average.
int jl_pg_all_reduce(jl_pg* pg, at::Tensor* t, int op, char** err) {
  return guarded(pg, "all_reduce", err, [&] {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = pg->timeout;
    run(pg->backend_for(*t).allreduce(ts, opts), pg->timeout);
    if (op == 1) {
      t->div_(pg->world);
    }
  });
}

int jl_pg_broadcast(jl_pg* pg, at::Tensor* t, int root, char** err) {
  return guarded(pg, "broadcast", err, [&] {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = pg->timeout;
    run(pg->backend_for(*t).broadcast(ts, opts), pg->timeout);
  });
}

// `out` holds world * numel(in) elements: rank r's `in` lands in its r-th chunk.
int jl_pg_all_gather(jl_pg* pg, at::Tensor* out, at::Tensor* in, char** err) {
  return guarded(pg, "all_gather", err, [&] {
    if (out->numel() != in->numel() * pg->world) {
      throw std::runtime_error("all_gather output is not world_size times the input");
    }
    std::vector<at::Tensor> outs = out->reshape({-1}).chunk(pg->world);
    for (auto& o : outs) {
      o = o.view(in->sizes());
    }
    std::vector<std::vector<at::Tensor>> outputs{outs};
    std::vector<at::Tensor> inputs{*in};
    c10d::AllgatherOptions opts;
    opts.timeout = pg->timeout;
    run(pg->backend_for(*in).allgather(outputs, inputs, opts), pg->timeout);
  });
}

int jl_pg_barrier(jl_pg* pg, char** err) {
  return guarded(pg, "barrier", err, [&] {
    // A one-element all-reduce: a Gloo barrier has no timeout of its own to report.
    auto t = at::zeros({1});
    std::vector<at::Tensor> ts{t};
    c10d::AllreduceOptions opts;
    opts.timeout = pg->timeout;
    run(pg->gloo->allreduce(ts, opts), pg->timeout);
  });
}

} // extern "C"
