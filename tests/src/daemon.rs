//! Daemons owned by tests: a private instance directory each, spawned tied
//! to the test process (killed when it ends, however it ends), waited for
//! until they answer, stopped by pid; leftovers of killed runs are found by
//! pid file and stopped.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::repo_root;

fn harness_root() -> PathBuf {
    repo_root().join("target").join("xsmon-harness")
}

/// A fresh private directory for one daemon instance, marked with the pid
/// of the process that owns it.
pub(crate) fn instance_dir(kind: &str) -> Result<PathBuf> {
    static ONCE: Once = Once::new();
    ONCE.call_once(reap_leftovers);
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = harness_root().join(format!("{kind}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("owner"), std::process::id().to_string())?;
    Ok(dir)
}

/// Stops daemons left behind by earlier runs whose owning process is gone.
fn reap_leftovers() {
    let Ok(entries) = fs::read_dir(harness_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let owner_alive = owner.is_some_and(|pid| kill(Pid::from_raw(pid), None).is_ok());
        if owner_alive {
            continue;
        }
        if let Some(pid) = fs::read_to_string(dir.join("daemon.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            if pid_runs_in(pid, &dir) {
                eprintln!(
                    "harness: stopping leftover daemon {pid} of {}",
                    dir.display()
                );
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Is `pid` still the daemon started for `dir` (and not a recycled pid)?
fn pid_runs_in(pid: i32, dir: &Path) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| {
            let needle = dir.as_os_str().as_encoded_bytes();
            cmd.windows(needle.len()).any(|w| w == needle)
        })
        .unwrap_or(false)
}

/// Spawns `cmd` so that it is killed when this process ends, however it
/// ends. The kernel's parent-death signal fires when the spawning *thread*
/// exits, so every daemon is spawned from one thread that lives as long as
/// the process (a test thread may build a site that later tests share).
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;
    type Job = (Command, Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<Mutex<Sender<Job>>> = std::sync::OnceLock::new();
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the harness's spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// A daemon process owned by a test.
pub(crate) struct Daemon {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn spawn(
        name: &'static str,
        dir: PathBuf,
        log: PathBuf,
        mut cmd: Command,
    ) -> Result<Daemon> {
        let out = fs::File::create(dir.join("stdout.log"))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = spawn_tied_to_process(cmd).with_context(|| format!("spawning {name}"))?;
        fs::write(dir.join("daemon.pid"), child.id().to_string())?;
        Ok(Daemon {
            name,
            child: Some(child),
            dir,
            log,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The daemon's logs, for error messages.
    pub(crate) fn logs(&self) -> String {
        let mut s = String::new();
        for f in [self.dir.join("stdout.log"), self.log.clone()] {
            if let Ok(mut file) = fs::File::open(&f) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let tail: String = text
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                s.push_str(&format!("--- {} ---\n{tail}\n", f.display()));
            }
        }
        s
    }

    /// Fails with the logs if the daemon has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status})\n{}",
                    self.name,
                    self.logs()
                );
            }
        }
        Ok(())
    }

    /// Polls `ready` until it succeeds, the daemon dies, or 15 s pass.
    pub(crate) fn wait_until(&mut self, mut ready: impl FnMut() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.check_alive()?;
            match ready() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "{} did not answer within 15 s: {e:#}\n{}",
                        self.name,
                        self.logs()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    pub(crate) fn stop(&mut self, signal: Signal) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Daemon {
    /// Stops it with `signal` and returns how it exited (SIGKILL after 3 s).
    pub(crate) fn stop_and_wait(&mut self, signal: Signal) -> Result<std::process::ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("the daemon was stopped already")?;
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let status = child.wait()?;
        bail!(
            "{} did not stop on {signal} within 3 s ({status})",
            self.name
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Signal::SIGTERM);
        if !std::thread::panicking() && std::env::var_os("XSMON_KEEP_HARNESS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
