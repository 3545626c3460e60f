//! Network namespaces (the ones `turnpike-bench xdp` makes under `/run/netns`): a closure run on
//! a thread inside one, and a child process started inside one.
//!
//! A network namespace belongs to a thread, not to a process: a thread that enters one with
//! `setns(2)` stays there, the threads it spawns start there, and a socket keeps the
//! namespace it was created in whichever thread uses it later.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Runs `f` on a new thread inside namespace `ns` and waits for it; the threads `f` spawns
/// stay in `ns` (this one does not move).
pub fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let file = open(ns)?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a namespace file we hold open; it changes this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

/// Makes `cmd` start its program inside namespace `ns` (the caller's thread stays where it is).
pub fn spawn_inside(cmd: &mut Command, ns: &str) -> anyhow::Result<()> {
    let file = open(ns)?;
    // SAFETY: the closure runs in the child between fork and exec and only calls setns(2),
    // which is async-signal-safe, on a descriptor the parent keeps open until the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

fn open(ns: &str) -> anyhow::Result<File> {
    File::open(format!("/run/netns/{ns}"))
        .map_err(|e| anyhow::anyhow!("network namespace {ns}: {e}"))
}
