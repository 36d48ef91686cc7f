// A small persistent thread pool of our own (no OpenMP), so fastadapt never
// fights NumPy's BLAS or torch over an OpenMP runtime, and survives fork():
// a child process starts with a fresh pool.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace fastadapt {

class ThreadPool {
 public:
  using TaskFn = void (*)(void* ctx, std::size_t index);

  static ThreadPool& instance();

  // Total threads used by parallel_for, the calling thread included.
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }
  void set_num_threads(int n);

  // Calls fn(ctx, i) for every i in [0, count), on up to num_threads threads.
  // Thread k first runs the k-th contiguous block of indices, front to back
  // (so from step to step a core revisits the data it touched last time, and
  // streams one long run of memory), then helps with what is left of the
  // other blocks. Which thread runs which index is therefore not fixed, so
  // callers must make every index independent. If another caller is using
  // the pool, this one runs the loop on its own thread (same results, no
  // waiting, no deadlock).
  void parallel_for(std::size_t count, TaskFn fn, void* ctx);

  explicit ThreadPool(int n);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  static int default_num_threads();

 private:
  void start_workers();  // requires run_mu_
  void stop_workers();   // requires run_mu_
  void worker_loop(std::uint64_t seen, int slot);
  void drain(int slot);  // run own block, then steal until none are left

  std::atomic<int> num_threads_;
  std::mutex run_mu_;  // one parallel region at a time
  std::mutex mu_;
  std::condition_variable wake_cv_, done_cv_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  std::uint64_t generation_ = 0;  // guarded by mu_
  std::atomic<std::uint64_t> published_{0};
  std::atomic<int> busy_workers_{0};  // workers still inside the current region
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  unsigned csr_ = 0;  // the caller's MXCSR for this region
  // Per-thread block of the current region: [next, end). Padded so two
  // threads' cursors never share a cache line.
  struct alignas(64) Block {
    std::atomic<std::size_t> next{0};
    std::size_t end = 0;
  };
  std::vector<Block> blocks_;  // one per thread (caller is slot 0); sized in start_workers
};

}  // namespace fastadapt
