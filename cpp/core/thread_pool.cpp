#include "thread_pool.hpp"

#include "cpu.hpp"

#include <pthread.h>

#include <chrono>
#include <cstdlib>
#include <sched.h>

#include <stdexcept>
#include <string>
#include <system_error>

namespace fastadapt {
namespace {

ThreadPool* g_pool = nullptr;
std::once_flag g_pool_once;

// After fork() only the forking thread exists in the child: the old pool's
// workers are gone and its mutexes may be held. Leak it and start afresh.
void reset_pool_in_child() {
  if (g_pool) g_pool = new ThreadPool(g_pool->num_threads());
}

}  // namespace

ThreadPool& ThreadPool::instance() {
  std::call_once(g_pool_once, [] {
    g_pool = new ThreadPool(default_num_threads());  // never destroyed: workers may outlive statics
    pthread_atfork(nullptr, nullptr, reset_pool_in_child);
  });
  return *g_pool;
}

int ThreadPool::default_num_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

ThreadPool::ThreadPool(int n) : num_threads_(n < 1 ? 1 : n) {}

ThreadPool::~ThreadPool() {
  std::lock_guard<std::mutex> run(run_mu_);
  stop_workers();
}

void ThreadPool::set_num_threads(int n) {
  if (n < 1) n = 1;
  std::lock_guard<std::mutex> run(run_mu_);
  if (n == num_threads()) return;
  stop_workers();
  num_threads_.store(n, std::memory_order_relaxed);  // workers start lazily
}

// CPUs for the workers when the pool spans every CPU this process may use:
// worker i gets the (i+1)-th CPU of the affinity mask. Without this, Linux
// sometimes wakes a worker onto the caller's CPU and leaves both there for
// many steps (measured: Adam 1M on 2 vCPUs, 0.42 ms pinned against 0.66 ms in
// that state). The caller stays unpinned, so the scheduler moves it to the
// CPU left free. A smaller pool (several processes sharing a machine) is not
// pinned, nor is any pool when FASTADAPT_PIN_THREADS=0.
static std::vector<int> worker_cpus(int workers) {
  std::vector<int> cpus;
  const char* env = std::getenv("FASTADAPT_PIN_THREADS");
  if (env && env[0] == '0' && env[1] == '\0') return cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  if (CPU_COUNT(&set) != workers + 1) return cpus;
  std::vector<int> mask;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) mask.push_back(c);
  cpus.assign(mask.begin() + 1, mask.end());
  return cpus;
}

void ThreadPool::start_workers() {
  std::uint64_t current;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = false;
    current = generation_;
  }
  // A new worker has seen every region published so far: it must neither run
  // nor count itself out of a region that finished before it started.
  const int want = num_threads() - 1;
  blocks_ = std::vector<Block>(static_cast<std::size_t>(want) + 1);
  workers_.reserve(static_cast<std::size_t>(want));
  const std::vector<int> cpus = worker_cpus(want);
  for (int i = 0; i < want; ++i) {
    try {
      workers_.emplace_back([this, current, i] { worker_loop(current, i + 1); });
    } catch (const std::system_error& e) {
      // Out of threads or memory for their stacks (ulimit -u, a container's
      // pids limit, RLIMIT_AS): stop the ones started, so the pool is back to
      // a clean "not started" state, and say what to do. Nothing of the
      // caller's step has run yet: this is the first region of the step.
      stop_workers();
      throw std::runtime_error(
          "fastadapt could not start worker thread " + std::to_string(i + 1) + " of " +
          std::to_string(want) + " (" + e.what() + "); use fewer threads: "
          "fastadapt.set_num_threads(n) or the environment variable FASTADAPT_NUM_THREADS=n "
          "(1 runs every step on the calling thread)");
    }
    if (!cpus.empty()) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpus[static_cast<std::size_t>(i)], &one);
      pthread_setaffinity_np(workers_.back().native_handle(), sizeof(one), &one);  // best effort
    }
  }
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void ThreadPool::drain(int slot) {
  const std::size_t nblocks = blocks_.size();
  for (std::size_t k = 0; k < nblocks; ++k) {
    Block& b = blocks_[(static_cast<std::size_t>(slot) + k) % nblocks];
    for (;;) {
      const std::size_t i = b.next.fetch_add(1, std::memory_order_relaxed);
      if (i >= b.end) break;
      fn_(ctx_, i);
    }
  }
}

void ThreadPool::worker_loop(std::uint64_t seen, int slot) {
  const unsigned own_csr = fp_mode_get();
  for (;;) {
    // Spin briefly before sleeping, so back-to-back steps skip the futex round
    // trip; bounded by time (~20 us), because a spinning worker steals the core
    // from whatever the process runs next (NumPy's BLAS, torch, the user's code).
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
    while (published_.load(std::memory_order_acquire) == seen) {
      for (int k = 0; k < 16; ++k) cpu_relax();
      if (std::chrono::steady_clock::now() >= spin_until) break;
    }
    {
      std::unique_lock<std::mutex> lk(mu_);
      wake_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    // Run with the caller's floating-point mode (flush-to-zero, rounding), as
    // the calling thread and the NumPy reference do.
    fp_mode_set(csr_);
    drain(slot);
    fp_mode_set(own_csr);
    // The last worker out wakes the caller if it went to sleep; taking mu_
    // first means the caller cannot miss it between its check and its wait.
    if (busy_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(std::size_t count, TaskFn fn, void* ctx) {
  if (count == 0) return;
  std::unique_lock<std::mutex> run(run_mu_, std::try_to_lock);
  if (count == 1 || num_threads() == 1 || !run.owns_lock()) {
    for (std::size_t i = 0; i < count; ++i) fn(ctx, i);
    return;
  }
  if (workers_.empty()) start_workers();
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = fn;
    ctx_ = ctx;
    csr_ = fp_mode_get();
    const std::size_t nblocks = blocks_.size();
    for (std::size_t k = 0; k < nblocks; ++k) {
      blocks_[k].next.store(count * k / nblocks, std::memory_order_relaxed);
      blocks_[k].end = count * (k + 1) / nblocks;
    }
    busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    ++generation_;
    published_.store(generation_, std::memory_order_release);
  }
  wake_cv_.notify_all();
  drain(0);
  // The workers finish within a chunk or so of the caller: spin for them
  // briefly (a futex sleep and wake costs tens of microseconds on a VM),
  // then sleep.
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
  while (busy_workers_.load(std::memory_order_acquire) != 0) {
    for (int k = 0; k < 16; ++k) cpu_relax();
    if (std::chrono::steady_clock::now() >= spin_until) break;
  }
  std::unique_lock<std::mutex> lk(mu_);
  done_cv_.wait(lk, [&] { return busy_workers_.load(std::memory_order_acquire) == 0; });
}

}  // namespace fastadapt
