// Why C: PR_SET_PDEATHSIG must be set in the child between its creation and exec, which posix_spawn cannot do and
// Swift cannot do safely. The child is created the way glibc's posix_spawn creates it — clone with CLONE_VM and
// CLONE_VFORK on a stack of its own — so starting a child costs the same whatever the parent's size (a fork of a
// test process holding gigabytes copied its page tables: tens of milliseconds per child under load), and only
// system calls run in it before exec.
#define _GNU_SOURCE
#include "CSubprocesses.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct spawn_request {
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *directory;
    int in, out, err;
    int new_process_group;
    int die_with_parent;
    pid_t parent;
    /// Written by the child (the memory is shared until it execs or exits): the errno of the step that failed.
    volatile int error;
};

/// Closes every descriptor from `low` up.
static void close_from(unsigned int low) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, low, ~0U, 0) == 0) return;
#endif
    long limit = sysconf(_SC_OPEN_MAX);
    if (limit < 0 || limit > 65536) limit = 65536;
    for (unsigned int fd = low; fd < (unsigned int)limit; fd++) close((int)fd);
}

/// Makes `fd` the child's descriptor `target`, kept across exec.
static int install(int fd, int target) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(fd, target) < 0 ? -1 : 0;
}

static int child_main(void *argument) {
    struct spawn_request *request = argument;
    if (request->new_process_group && setpgid(0, 0) != 0) goto fail;
    if (request->die_with_parent) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
        // The parent may have died before the request above: then nobody would send the signal.
        if (getppid() != request->parent) _exit(127);
    }
    struct sigaction standard;
    memset(&standard, 0, sizeof standard);
    standard.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &standard, NULL);
    int in = request->in, out = request->out, err = request->err;
    // Move sources out of 0-2 first, so installing one cannot clobber another's source.
    if (in >= 0 && in <= 2 && in != 0) in = fcntl(in, F_DUPFD, 3);
    if (out >= 0 && out <= 2 && out != 1) out = fcntl(out, F_DUPFD, 3);
    if (err >= 0 && err <= 2 && err != 2) err = fcntl(err, F_DUPFD, 3);
    if (install(in, 0) != 0 || install(out, 1) != 0 || install(err, 2) != 0) goto fail;
    close_from(3);
    if (request->directory != NULL && chdir(request->directory) != 0) goto fail;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(request->path, request->argv, request->envp);
fail:
    request->error = errno == 0 ? ECHILD : errno;
    _exit(127);
}

int activity_sync_spawn(const char *path, char *const argv[], char *const envp[], const char *directory,
                        int stdin_fd, int stdout_fd, int stderr_fd, int new_process_group, int die_with_parent,
                        pid_t *pid_out) {
    struct spawn_request request = {
        .path = path, .argv = argv, .envp = envp, .directory = directory,
        .in = stdin_fd, .out = stdout_fd, .err = stderr_fd,
        .new_process_group = new_process_group, .die_with_parent = die_with_parent,
        .parent = getpid(), .error = 0,
    };
    size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return errno;
    // No signal handler of the parent's may run in the child before its dispositions are reset.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    // CLONE_VFORK: this thread waits until the child has exec'd or exited, so `request` is still in scope for it.
    pid_t pid = clone(child_main, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
    int clone_error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    munmap(stack, stack_size);
    if (pid < 0) return clone_error;
    if (request.error != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return request.error;
    }
    *pid_out = pid;
    return 0;
}

int activity_sync_become_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
}
