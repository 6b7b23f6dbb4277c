"""The CPU runtime's worker threads: a small C library that runs one kernel's outer loop split across threads.

Why not Python threads: handing a chunk to a ThreadPoolExecutor and waiting on its future costs tens of microseconds
(a condition-variable wake per worker, the GIL on the way back), which is more than many kernels take; a model's
decode step runs hundreds of kernels. Here one cffi call (the GIL released) publishes the job, runs chunk 0 on the
calling thread and waits for the others; the workers spin on the job counter for a while after each job, so
back-to-back kernels find them awake, and sleep on a futex when nothing comes.

Protocol (C11 atomics, sequentially consistent):
  caller:  job fields <- kernel, args, n, threads;  pending <- threads - 1;  generation += 1;  futex-wake sleepers;
           run chunk 0;  spin until pending == 0.
  worker w (1-based): wait until generation changes;  if w < threads: run chunk w;  pending -= 1 (only w < threads).
A chunk t covers [n * t / threads, n * (t + 1) / threads). Only one job runs at a time: the runtime calls
`sov_pool_run` under a lock.

Kernels are called through a packed entry point `void NAME_packed(void **args, long long start, long long end)`
that the runtime appends to each kernel's source (`packed_entry`), so the pool needs no per-arity code.
"""
from __future__ import annotations

POOL_SOURCE = r"""
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef void (*packed_kernel)(void **args, long long start, long long end);

#define MAX_WORKERS 255
#define SPIN_NS 200000LL  /* how long an idle worker keeps polling before it sleeps */

static packed_kernel job_fn;
static void **job_args;
static long long job_n;
static int job_threads;
static atomic_int generation;
static atomic_int pending;
static atomic_int sleepers;
static int started;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void run_chunk(int t) {
  long long n = job_n, threads = job_threads;
  job_fn(job_args, n * t / threads, n * (t + 1) / threads);
}

static void *worker(void *arg) {
  int w = (int)(long)arg;
  int seen = atomic_load(&generation);
  for (;;) {
    long long spin_until = now_ns() + SPIN_NS;
    int gen;
    while ((gen = atomic_load(&generation)) == seen) {
      if (now_ns() > spin_until) {
        atomic_fetch_add(&sleepers, 1);
        if (atomic_load(&generation) == seen)
          syscall(SYS_futex, &generation, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
        atomic_fetch_sub(&sleepers, 1);
        spin_until = now_ns() + SPIN_NS;
      }
    }
    seen = gen;
    if (w < job_threads) {
      run_chunk(w);
      atomic_fetch_sub(&pending, 1);
    }
  }
  return NULL;
}

/* Starts `workers` threads (once); returns how many run. */
int sov_pool_start(int workers) {
  if (started) return started;
  if (workers > MAX_WORKERS) workers = MAX_WORKERS;
  for (int w = 1; w <= workers; w++) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, (void *)(long)w) != 0) break;
    pthread_detach(thread);
    started = w;
  }
  return started;
}

/* Runs fn over [0, n) in `threads` chunks (threads - 1 <= workers started) and returns when all are done. */
void sov_pool_run(packed_kernel fn, void **args, long long n, int threads) {
  job_fn = fn;
  job_args = args;
  job_n = n;
  job_threads = threads;
  atomic_store(&pending, threads - 1);
  atomic_fetch_add(&generation, 1);
  if (atomic_load(&sleepers) > 0)
    syscall(SYS_futex, &generation, FUTEX_WAKE_PRIVATE, MAX_WORKERS, NULL, NULL, 0);
  run_chunk(0);
  while (atomic_load(&pending) > 0) {
  }
}
"""

POOL_CDEF = """
int sov_pool_start(int workers);
void sov_pool_run(void *fn, void **args, long long n, int threads);
"""


def packed_entry(name: str, nparams: int) -> str:
  """C for `NAME_packed(void **args, start, end)`, which calls kernel NAME with its parameters from args."""
  params = ", ".join(f"args[{i}]" for i in range(nparams))
  call = f"{name}({params}{', ' if nparams else ''}start, end)"
  return f"\nvoid {name}_packed(void **args, long long start, long long end) {{ {call}; }}\n"
