// The optimizer's "one call at a time" lock, as a context manager written in
// C++ so that `with opt._busy:` is safe against exceptions raised by signal
// handlers: Python runs a handler only between bytecodes, and both acquiring
// (in __enter__) and releasing (in __exit__) happen inside one C call, so no
// handler can run between taking the lock and the `with` block that releases
// it. A lock written in Python (acquire, then try/finally) has such a gap.
//
// Two kinds of holders: a writer (update, load, reset) and a reader (a
// snapshot: state_dict, state). A writer that finds another writer raises
// (two threads stepping one optimizer is a bug); anyone that finds a reader,
// and a reader that finds a writer, waits without the GIL: a snapshot is
// short and must never be torn.
#pragma once
#include <pybind11/pybind11.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

namespace fastadapt {
namespace py = pybind11;

class BusyLock {
 public:
  explicit BusyLock(std::string what) : what_(std::move(what)) {}

  void enter() {
    for (;;) {
      const std::int64_t held = try_take(false);
      if (held == 0) return;
      if (!(held & kReader) || held_by_this_thread(held)) {
        throw std::runtime_error("this " + what_ + " is already in use by another thread (or re-entered "
                                 "from a callback or signal handler); use one optimizer per thread");
      }
      wait_a_little();
    }
  }

  void enter_wait() {
    for (;;) {
      const std::int64_t held = try_take(true);
      if (held == 0) return;
      // Held by this very thread (a callback or signal handler reading the
      // optimizer in the middle of its step): waiting would never end.
      if (held_by_this_thread(held))
        throw std::runtime_error("this " + what_ + " is in the middle of a call on this thread (a "
                                 "callback or signal handler re-entered it); read it after that call returns");
      wait_a_little();
    }
  }

  void exit() {
    // Forget the owner before releasing: otherwise the next holder's thread
    // is published only after its exchange succeeds, and in that window a
    // thread that held the lock before would read its own id, take the lock
    // for its own (re-entered) and raise instead of waiting.
    owner_thread_.store(pthread_t{});
    state_.store(0, std::memory_order_release);
  }

 private:
  static constexpr std::int64_t kReader = 1;

  // Takes the lock (returns 0) or returns the holder's state. The state is
  // (pid << 1) | reader: a lock held by the parent at fork() is inherited
  // held by the child, where no thread will ever release it, so a holder
  // from another pid is taken over.
  std::int64_t try_take(bool reader) {
    const std::int64_t mine = (static_cast<std::int64_t>(getpid()) << 1) | (reader ? kReader : 0);
    std::int64_t held = 0;
    for (;;) {
      if (state_.compare_exchange_strong(held, mine, std::memory_order_acquire)) {
        owner_thread_.store(pthread_self());
        return 0;
      }
      if ((held >> 1) == (mine >> 1)) return held;
      // Inherited through fork: retry the exchange against that stale value.
    }
  }

  bool held_by_this_thread(std::int64_t held) const {
    return (held >> 1) == static_cast<std::int64_t>(getpid()) &&
           pthread_equal(owner_thread_.load(), pthread_self());
  }

  static void wait_a_little() {
    py::gil_scoped_release nogil;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }

  std::string what_;
  std::atomic<std::int64_t> state_{0};
  std::atomic<pthread_t> owner_thread_{};
};

// `with lock.waiting():` takes the lock as a reader (BusyLock::enter_wait).
struct BusyWait {
  BusyLock* lock;
  py::object keep;  // the BusyLock's Python object, kept alive
};

}  // namespace fastadapt
