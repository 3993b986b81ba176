/* ucx-finalize-progress: preloaded into MPICH ranks (LD_PRELOAD) by symrun; see docs/mpi.md,
 * "MPI_Finalize and UCX over TCP".
 *
 * MPICH 4.0's ch4:ucx MPI_Finalize closes every UCX endpoint with ucp_disconnect_nb (a flush), makes
 * progress until its own closes complete, then blocks in a PMI barrier (a read() on the PMI socket)
 * without making UCX progress. UCX 1.13's tcp transport flushes an endpoint that sent anything by
 * sending the peer a zero-length PUT request (25 bytes) and waiting for its PUT ACK. A rank that
 * entered MPI_Finalize later than its peers (its flush request reaches them after they have entered
 * the PMI barrier) therefore waits for an ACK that never comes, and the whole job hangs at its end.
 * (MPICH removed that barrier upstream, pmodels/mpich pull request 6596.)
 *
 * This library keeps the worker progressing while the rank sits in the barrier: from the first
 * ucp_disconnect_nb (MPI_Finalize has begun) a helper thread calls ucp_worker_progress on the rank's
 * workers whenever the main thread is not inside UCX, so peers' flush requests are acknowledged; it is
 * stopped and joined before ucp_worker_destroy. Every UCX call MPICH's finalize makes (disconnect,
 * progress, request completion/release, worker destroy) is serialized with the helper by one mutex, so
 * the worker (created single-threaded) is never entered by two threads at once; the helper sleeps
 * 1 ms between rounds. Before MPI_Finalize
 * the wrappers only test a flag and call straight through.
 *
 * Built without UCX's headers (only opaque pointers pass through): cc -shared -fPIC -O2 -pthread -ldl. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_WORKERS 64

/* recursive: UCX calls MPICH's completion callbacks inside ucp_worker_progress, and they may call UCX */
static pthread_mutex_t mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static atomic_int closing;     /* set at the first ucp_disconnect_nb: finalize has begun */
static atomic_int stop_helper; /* set before ucp_worker_destroy */
static int helper_started;
static pthread_t helper;
static void *workers[MAX_WORKERS];
static atomic_int nworkers;

static void *next(const char *name) {
  void *f = dlsym(RTLD_NEXT, name);
  if (!f) { fprintf(stderr, "symrun ucx-finalize-progress: %s not found: %s\n", name, dlerror()); abort(); }
  return f;
}
#define REAL(ret, name, args) static ret(*real) args; if (!real) real = (ret(*) args)next(#name)

static void remember(void *w) {
  int n = atomic_load(&nworkers);
  for (int i = 0; i < n; i++) if (workers[i] == w) return;
  if (n < MAX_WORKERS) { workers[n] = w; atomic_store(&nworkers, n + 1); }
}

unsigned ucp_worker_progress(void *worker) {
  REAL(unsigned, ucp_worker_progress, (void *));
  if (!atomic_load(&closing)) { remember(worker); return real(worker); }
  pthread_mutex_lock(&mu);
  remember(worker);
  unsigned n = real(worker);
  pthread_mutex_unlock(&mu);
  return n;
}

static void *helper_main(void *arg) {
  (void)arg;
  REAL(unsigned, ucp_worker_progress, (void *));
  const struct timespec pause = { 0, 1000 * 1000 }; /* 1 ms: gentle on an emulated (TCG) guest */
  while (!atomic_load(&stop_helper)) {
    pthread_mutex_lock(&mu);
    int n = atomic_load(&nworkers);
    for (int i = 0; i < n; i++) real(workers[i]);
    pthread_mutex_unlock(&mu);
    nanosleep(&pause, NULL);
  }
  return NULL;
}

void *ucp_disconnect_nb(void *ep) {
  REAL(void *, ucp_disconnect_nb, (void *));
  pthread_mutex_lock(&mu);
  if (!atomic_load(&closing)) {
    atomic_store(&closing, 1);
    helper_started = pthread_create(&helper, NULL, helper_main, NULL) == 0;
  }
  void *r = real(ep);
  pthread_mutex_unlock(&mu);
  return r;
}

int ucp_request_is_completed(void *req) {
  REAL(int, ucp_request_is_completed, (void *));
  if (!atomic_load(&closing)) return real(req);
  pthread_mutex_lock(&mu);
  int r = real(req);
  pthread_mutex_unlock(&mu);
  return r;
}

/* ucs_status_t is a packed (one byte, signed) enum */
int8_t ucp_request_check_status(void *req) {
  REAL(int8_t, ucp_request_check_status, (void *));
  if (!atomic_load(&closing)) return real(req);
  pthread_mutex_lock(&mu);
  int8_t r = real(req);
  pthread_mutex_unlock(&mu);
  return r;
}

void ucp_request_release(void *req) {
  REAL(void, ucp_request_release, (void *));
  if (!atomic_load(&closing)) { real(req); return; }
  pthread_mutex_lock(&mu);
  real(req);
  pthread_mutex_unlock(&mu);
}

void ucp_worker_destroy(void *worker) {
  REAL(void, ucp_worker_destroy, (void *));
  pthread_mutex_lock(&mu);
  int join = helper_started;
  helper_started = 0;
  atomic_store(&stop_helper, 1);
  pthread_mutex_unlock(&mu);
  if (join) pthread_join(helper, NULL);
  pthread_mutex_lock(&mu);
  int n = atomic_load(&nworkers);
  for (int i = 0; i < n; i++) if (workers[i] == worker) { workers[i] = workers[n - 1]; atomic_store(&nworkers, n - 1); break; }
  pthread_mutex_unlock(&mu);
  real(worker);
}
