"""The CPU runtime's worker threads: a small C library that runs one kernel's outer loop split across threads.

Why not Python threads: handing a chunk to a ThreadPoolExecutor and waiting on its future costs tens of microseconds
(a condition-variable wake per worker, the GIL on the way back), which is more than many kernels take; a model's
decode step runs hundreds of kernels. Here one cffi call (the GIL released) publishes the job and every thread,
the caller included, claims chunks of it until none are left; the workers spin for a while after each job, so
back-to-back kernels find them awake, and sleep on a futex when nothing comes. Because chunks are claimed, not
assigned, a worker the OS has not scheduled (a busy machine) costs nothing: the caller runs its chunks itself, and
waits only for chunks that a running thread already holds.

Protocol (C11 atomics, sequentially consistent). One 64-bit word, `cursor`, names the open job and its next
unclaimed chunk: bits 63:16 the job's generation (it never wraps in practice, so a stale CAS cannot succeed), 15:8
its chunk count, 7:0 the next chunk index.
  caller:  wait until no claim of the last job is still running (done == chunks);  job fields <- kernel, args, n;
           done <- 0;  cursor <- (generation + 1, chunks, 0);  wake += 1;  futex-wake sleepers;
           claim and run chunks like a worker;  wait until done == chunks.
  claim:   c <- cursor;  if its index < its count: read the job fields, then CAS(cursor, c, c + 1); on success run
           chunk `index` and done += 1.
A CAS that succeeds proves the job was still open with that chunk unclaimed, so the caller (which rewrites the fields
only after every chunk was claimed and finished) had not touched the fields read just before it. A worker that starts
late, or wakes after its job ended, finds every chunk claimed and goes back to waiting. Chunk k of `chunks` covers
[n * k / chunks, n * (k + 1) / chunks); there are up to 4 per thread, so a descheduled thread leaves little behind.
Sleep: an idle worker registers in `sleepers`, reads `wake`, re-checks the cursor and futex-waits on `wake`; the
caller bumps `wake` after publishing and wakes when `sleepers` > 0 (a Dekker pair under sequential consistency:
either the worker sees the new job or the caller sees the sleeper). One job runs at a time: the runtime calls
`sov_pool_run` under a lock. In a fork()ed child (no workers there) the caller runs every chunk itself.

Kernels are called through a packed entry point `void NAME_packed(void **args, long long start, long long end)`
that the runtime appends to each kernel's source (`packed_entry`), so the pool needs no per-arity code.
`sov_pool_run_list` runs a TinyJit capture's launches (frontend.runtime.cpu.CPUGraph) in one call.
"""
from __future__ import annotations

POOL_SOURCE = r"""
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef void (*packed_kernel)(void **args, long long start, long long end);

#define MAX_WORKERS 255
#define MAX_CHUNKS 255
#define SPIN_NS 200000LL  /* how long an idle worker keeps polling before it sleeps */

static packed_kernel job_fn;
static void **job_args;
static long long job_n;
static atomic_ullong cursor;  /* generation << 16 | chunks << 8 | next chunk */
static atomic_int done;
static atomic_int wake;
static atomic_int sleepers;
static int started;
static pid_t pool_pid;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Claims and runs chunks of the open job until none is left. */
static void claim_chunks(void) {
  for (;;) {
    unsigned long long c = atomic_load(&cursor);
    unsigned long long chunks = (c >> 8) & 0xFF, index = c & 0xFF;
    if (index >= chunks) return;
    packed_kernel fn = job_fn;
    void **args = job_args;
    long long n = job_n;
    if (!atomic_compare_exchange_strong(&cursor, &c, c + 1)) continue;
    fn(args, n * (long long)index / (long long)chunks, n * (long long)(index + 1) / (long long)chunks);
    atomic_fetch_add(&done, 1);
  }
}

static int has_work(void) {
  unsigned long long c = atomic_load(&cursor);
  return (c & 0xFF) < ((c >> 8) & 0xFF);
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    long long spin_until = now_ns() + SPIN_NS;
    while (!has_work()) {
      if (now_ns() > spin_until) {
        atomic_fetch_add(&sleepers, 1);
        int seen = atomic_load(&wake);
        if (!has_work())
          syscall(SYS_futex, &wake, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
        atomic_fetch_sub(&sleepers, 1);
        spin_until = now_ns() + SPIN_NS;
      }
    }
    claim_chunks();
  }
  return NULL;
}

/* Starts `workers` threads (once); returns how many run. */
int sov_pool_start(int workers) {
  if (started) return started;
  pool_pid = getpid();
  if (workers > MAX_WORKERS) workers = MAX_WORKERS;
  for (int w = 1; w <= workers; w++) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) break;
    pthread_detach(thread);
    started = w;
  }
  return started;
}

/* Runs fn over [0, n) split among `threads` threads (the caller and threads - 1 workers) and returns when done. */
void sov_pool_run(packed_kernel fn, void **args, long long n, int threads) {
  long long chunks = 4LL * threads;
  if (chunks > n) chunks = n;
  if (chunks > MAX_CHUNKS) chunks = MAX_CHUNKS;
  if (chunks < 1) chunks = 1;
  if (getpid() != pool_pid) {
    fn(args, 0, n);
    return;
  }
  job_fn = fn;
  job_args = args;
  job_n = n;
  atomic_store(&done, 0);
  unsigned long long generation = (atomic_load(&cursor) >> 16) + 1;
  atomic_store(&cursor, (generation << 16) | ((unsigned long long)chunks << 8));
  atomic_fetch_add(&wake, 1);
  if (atomic_load(&sleepers) > 0)
    syscall(SYS_futex, &wake, FUTEX_WAKE_PRIVATE, MAX_WORKERS, NULL, NULL, 0);
  claim_chunks();
  for (long spins = 0; atomic_load(&done) < chunks; spins++)
    if (spins > 1000) sched_yield();  /* a preempted worker holds a chunk: let it run */
}

/* Runs `count` launches in order, as the runtime makes them one by one: launch i over [0, ns[i]) with args[i], in
   one call where threads[i] is 1, else through sov_pool_run with threads[i] threads (so the same chunks). */
void sov_pool_run_list(int count, packed_kernel *fns, void ***args, long long *ns, int *threads) {
  for (int i = 0; i < count; i++) {
    if (threads[i] <= 1) fns[i](args[i], 0, ns[i]);
    else sov_pool_run(fns[i], args[i], ns[i], threads[i]);
  }
}
"""

POOL_CDEF = """
int sov_pool_start(int workers);
void sov_pool_run(void *fn, void **args, long long n, int threads);
void sov_pool_run_list(int count, void **fns, void ***args, long long *ns, int *threads);
"""


def packed_entry(name: str, nparams: int, nvars: int = 0) -> str:
  """C for `NAME_packed(void **args, start, end)`, which calls kernel NAME with its parameters from args: nparams
  buffer pointers, then nvars int32 values, each carried in its pointer-sized slot."""
  params = [f"args[{i}]" for i in range(nparams)] + [f"(int)(long long)args[{nparams + i}]" for i in range(nvars)]
  call = f"{name}({', '.join(params + ['start', 'end'])})"
  return f"\nvoid {name}_packed(void **args, long long start, long long end) {{ {call}; }}\n"
