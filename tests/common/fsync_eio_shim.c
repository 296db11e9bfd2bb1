/* A fault shim for tests (LD_PRELOAD): fsync(2), fdatasync(2) and syncfs(2)
 * on a file descriptor whose path (readlink /proc/self/fd/N) ends with the
 * armed suffix fail with EIO, as many times as armed.
 *
 * Invariants:
 * - Disarmed (no FSYNC_SHIM_CTL, or a count of 0), every call goes to the
 *   real libc function: the shim changes nothing else.
 * - The control file FSYNC_SHIM_CTL holds "COUNT SUFFIX\n"; each injected
 *   failure rewrites it with COUNT - 1, under a process-wide lock, so a test
 *   arms exactly COUNT failures at run time without restarting the process.
 * - Every matching call is appended to FSYNC_SHIM_LOG as "fail PATH" or
 *   "ok PATH" (after the real call), so a test can tell that a later fsync
 *   of the same path succeeded.
 * - The shim itself never calls fsync (no recursion, no extra syncs).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The path behind fd, or 0 when it cannot be read. */
static int fd_path(int fd, char *out, size_t cap) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    if (n < 0) return 0;
    out[n] = 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return b > 0 && a >= b && strcmp(s + a - b, suffix) == 0;
}

static void log_line(const char *what, const char *path) {
    const char *log = getenv("FSYNC_SHIM_LOG");
    if (!log) return;
    int f = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) return;
    char line[4200];
    int n = snprintf(line, sizeof line, "%s %s\n", what, path);
    if (n > 0) (void)!write(f, line, (size_t)n);
    close(f);
}

/* Whether this call must fail (1), pass but be logged (2) or pass (0). */
static int decide(int fd, char *path, size_t cap) {
    const char *ctl = getenv("FSYNC_SHIM_CTL");
    if (!ctl || !fd_path(fd, path, cap)) return 0;
    int verdict = 0;
    pthread_mutex_lock(&lock);
    FILE *f = fopen(ctl, "re");
    long count = 0;
    char suffix[1024] = {0};
    if (f) {
        if (fscanf(f, "%ld %1023s", &count, suffix) < 2) suffix[0] = 0;
        fclose(f);
    }
    if (ends_with(path, suffix)) {
        verdict = 2;
        if (count > 0) {
            verdict = 1;
            FILE *w = fopen(ctl, "we");
            if (w) {
                fprintf(w, "%ld %s\n", count - 1, suffix);
                fclose(w);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return verdict;
}

static int shimmed(const char *name, int fd) {
    char path[4096];
    int verdict = decide(fd, path, sizeof path);
    if (verdict == 1) {
        log_line("fail", path);
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    int r = real ? real(fd) : (errno = ENOSYS, -1);
    if (verdict == 2) log_line(r == 0 ? "ok" : "error", path);
    return r;
}

int fsync(int fd) { return shimmed("fsync", fd); }
int fdatasync(int fd) { return shimmed("fdatasync", fd); }
int syncfs(int fd) { return shimmed("syncfs", fd); }
