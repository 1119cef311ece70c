// Host teams for the CUDA row code compiled for the host by the tests/*_host.cu
// harnesses: ThreadTeam<S> runs S host threads as the lanes of one warp, block
// or cluster (strided lanes, barriers, fixed-order reductions whose result every
// lane gets), so that lane-indexing and phase errors show up without a GPU.
#pragma once
// Included first by each harness, before the CUDA row code: the teams below
// replace team.cuh's device teams, and that code is __host__ __device__ and
// calls these host-only members (threads, mutexes), which nvcc would flag
// (20011, 20014) though these files never compile it for the device.
#define LOSSX_HOST_TEAM 1
#pragma nv_diag_suppress 20011
#pragma nv_diag_suppress 20014
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace lossx {
namespace cuda {
namespace {

// What the threads of one ThreadTeam share: a reusable barrier and 8 bytes
// of reduction scratch per lane. Row code whose lanes take different paths
// would wait at different barriers: on the device a hang, here the barrier
// gives up after a few seconds and marks the team broken (the call then
// reports -2) instead of hanging the test run.
struct TeamShared {
  std::mutex mu;
  std::condition_variable cv;
  int waiting = 0;
  unsigned long long generation = 0;
  bool broken = false;
  int size;
  std::vector<unsigned char> scratch;
  explicit TeamShared(int n) : size(n), scratch(static_cast<size_t>(n) * 8) {}
  void wait() {
    std::unique_lock<std::mutex> lk(mu);
    if (broken) return;
    const unsigned long long gen = generation;
    if (++waiting == size) {
      waiting = 0;
      ++generation;
      cv.notify_all();
    } else if (!cv.wait_for(lk, std::chrono::seconds(5), [&] { return generation != gen || broken; })) {
      broken = true;
      cv.notify_all();
    }
  }
};

template <int S>
struct ThreadTeam {
  static constexpr int size = S;
  int lane;
  TeamShared* sh;
  void sync() const { sh->wait(); }
  // As BlockTeam::reduce: every lane's value, combined in lane order by every lane.
  template <typename V, class Op>
  V reduce(V v, Op op) const {
    static_assert(sizeof(V) <= 8, "scratch holds 8 bytes per lane");
    sh->wait();  // the previous reduction's values have been read
    std::memcpy(sh->scratch.data() + 8 * lane, &v, sizeof(V));
    sh->wait();
    V r;
    std::memcpy(&r, sh->scratch.data(), sizeof(V));
    for (int l = 1; l < S; ++l) {
      V o;
      std::memcpy(&o, sh->scratch.data() + 8 * l, sizeof(V));
      r = op(r, o);
    }
    return r;
  }
};

}  // namespace
}  // namespace cuda
}  // namespace lossx
