//! A mosquitto child process on loopback, for the demo, the pipeline benchmark and the tests
//! (none of them may assume a broker is running).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalBroker {
    child: Option<Child>,
    pub port: u16,
    config: PathBuf,
}

/// `mosquitto` from PATH, else Debian's /usr/sbin (not on a normal user's PATH).
pub fn mosquitto_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file());
    in_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn reachable(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

impl LocalBroker {
    /// Start mosquitto on 127.0.0.1:`port` (0: a free port) with its config (and, when
    /// `persistent`, its session store) in `dir`.
    pub fn start(dir: &Path, port: u16, persistent: bool) -> std::io::Result<LocalBroker> {
        Self::start_with(dir, port, persistent, "")
    }

    /// As [`LocalBroker::start`], with `extra` lines added to mosquitto's config (limits,
    /// TLS listeners for tests).
    pub fn start_with(
        dir: &Path,
        port: u16,
        persistent: bool,
        extra: &str,
    ) -> std::io::Result<LocalBroker> {
        let port = match port {
            0 => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            p => p,
        };
        std::fs::create_dir_all(dir)?;
        let config = dir.join("mosquitto.conf");
        let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}");
        if persistent {
            text += &format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            );
        }
        // As root, mosquitto would switch to the `mosquitto` user and lose access to `dir`.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            text += "user root\n";
        }
        std::fs::write(&config, text)?;
        let mut b = LocalBroker {
            child: None,
            port,
            config,
        };
        b.spawn()?;
        Ok(b)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C on the terminal must not stop the broker before
            // the daemon has flushed its outbox to it.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start mosquitto ({e}); `make deps` installs it"),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reachable(self.port) {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("mosquitto did not open its port"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGTERM (mosquitto saves its sessions when persistent) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our child, not yet reaped (so not reused).
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// Stop and start again on the same port.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
