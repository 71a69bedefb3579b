//! What the bench binaries share: a child process timed, with its peak
//! memory, and figures over rounds as min / median / max.

use std::process::Command;
use std::time::Instant;

/// A child process's run: its peak RSS (the kernel's count, from wait4: the
/// largest of the process and the children it waited for), the seconds it
/// took, its exit code (None: killed by a signal) and its stdout.
pub struct Measured {
    pub peak_rss_bytes: u64,
    pub seconds: f64,
    pub exit_code: Option<i32>,
    pub stdout: String,
}

/// Runs `command` to its end with stdout captured, measured.
pub fn measured(command: &mut Command) -> Measured {
    let started = Instant::now();
    #[allow(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, for its rusage"
    )]
    let child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?}: {e}", command.get_program()));
    let pid = child.id() as libc::pid_t;
    let output = std::thread::spawn(move || {
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut stdout).unwrap();
        stdout
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    Measured {
        // ru_maxrss is in KiB on Linux.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        seconds: started.elapsed().as_secs_f64(),
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: output.join().unwrap(),
    }
}

/// The middle of `values` (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `values` as min / median / max with `digits` decimals (one value: itself).
pub fn spread(values: &[f64], digits: usize) -> String {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let (min, max) = (values[0], values[values.len() - 1]);
    let mid = median(&values);
    if values.len() == 1 {
        format!("{mid:.digits$}")
    } else {
        format!("{min:.digits$} / {mid:.digits$} / {max:.digits$}")
    }
}
