#ifndef C_SUBPROCESSES_H
#define C_SUBPROCESSES_H

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` in a new process (clone with CLONE_VM and CLONE_VFORK, then exec, as
/// posix_spawn does).
///
/// Before the exec the child, in this order: puts itself in a new process group when
/// `new_process_group` is non-zero; asks the kernel for SIGKILL when the thread that created it dies when
/// `die_with_parent` is non-zero (PR_SET_PDEATHSIG), and exits at once if that parent is already gone; resets every
/// signal to its default disposition; makes `stdin_fd`, `stdout_fd` and `stderr_fd` its descriptors 0, 1 and 2
/// and closes every other; changes to `directory` when it is not NULL; unblocks every signal; execs. Only
/// system calls run there, so it is safe in a process with many threads.
///
/// @return 0 with the child's pid in `pid_out`, or the errno of the step that failed (the child is then reaped).
int activity_sync_spawn(const char *path, char *const argv[], char *const envp[], const char *directory,
                        int stdin_fd, int stdout_fd, int stderr_fd, int new_process_group, int die_with_parent,
                        pid_t *pid_out);

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER): a process whose parent dies
/// is reparented to it instead of to PID 1. @return 0, or the errno.
int activity_sync_become_subreaper(void);

#endif
