//! The lock's relay: an output line (a GPIO line of the kernel's character device, or a fake
//! one in tests) or a command, driven by a thread of its own so that a pulse never holds up
//! the MQTT loop. A grant closes the relay for `pulse`; a grant during the pulse extends it.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot request GPIO line {line} of {chip} as an output: {source}")]
    Request {
        chip: PathBuf,
        line: u32,
        source: gpiocdev::Error,
    },
    #[error("cannot set the GPIO line: {0}")]
    Set(gpiocdev::Error),
    #[error("cannot run the door command {program:?}: {source}")]
    Command {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot start the relay thread: {0}")]
    Thread(std::io::Error),
}

/// One output line: active closes the relay.
pub trait OutputLine: Send {
    fn set_active(&mut self, active: bool) -> Result<(), RelayError>;
    fn describe(&self) -> String;
}

/// A line of a GPIO character device (`/dev/gpiochipN`), requested as an output, inactive.
pub struct GpioLine {
    request: gpiocdev::Request,
    what: String,
}

impl GpioLine {
    pub fn open(chip: &Path, line: u32, active_low: bool) -> Result<Self, RelayError> {
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(chip)
            .with_consumer("facegate-door")
            .with_line(line)
            .as_output(gpiocdev::line::Value::Inactive);
        if active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|source| RelayError::Request {
            chip: chip.to_owned(),
            line,
            source,
        })?;
        Ok(Self {
            request,
            what: format!(
                "GPIO {} line {line}{}",
                chip.display(),
                if active_low { " (active low)" } else { "" }
            ),
        })
    }
}

impl OutputLine for GpioLine {
    fn set_active(&mut self, active: bool) -> Result<(), RelayError> {
        let value = if active {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        self.request.set_lone_value(value).map_err(RelayError::Set)
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// A line that records when it changed, for tests and benchmarks (a kernel `gpio-sim` chip
/// needs a module these machines do not have).
#[derive(Clone, Default)]
pub struct FakeLine {
    changes: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl FakeLine {
    /// Every change so far: when, and whether the line became active.
    pub fn changes(&self) -> Vec<(Instant, bool)> {
        self.changes.lock().unwrap().clone()
    }

    /// Times the line became active.
    pub fn activations(&self) -> Vec<Instant> {
        self.changes()
            .into_iter()
            .filter(|(_, a)| *a)
            .map(|(t, _)| t)
            .collect()
    }

    pub fn is_active(&self) -> bool {
        self.changes.lock().unwrap().last().is_some_and(|(_, a)| *a)
    }
}

impl OutputLine for FakeLine {
    fn set_active(&mut self, active: bool) -> Result<(), RelayError> {
        self.changes.lock().unwrap().push((Instant::now(), active));
        Ok(())
    }

    fn describe(&self) -> String {
        "a fake line (tests)".into()
    }
}

/// Whom the door opens for, handed to a command relay.
#[derive(Debug, Clone, Default)]
pub struct Opening {
    pub person_id: Option<String>,
    pub person_name: Option<String>,
    pub event_id: String,
}

/// What closes the relay.
pub enum Backend {
    Line(Box<dyn OutputLine>),
    /// Program and arguments, run for each grant.
    Command(Vec<String>),
}

impl Backend {
    pub fn describe(&self) -> String {
        match self {
            Backend::Line(l) => l.describe(),
            Backend::Command(c) => format!("command {c:?}"),
        }
    }
}

/// The lock as the relay left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Locked,
    Unlocked,
}

impl LockState {
    pub fn name(self) -> &'static str {
        match self {
            LockState::Locked => "locked",
            LockState::Unlocked => "unlocked",
        }
    }
}

enum Order {
    Open(Opening),
    Stop,
}

/// The relay thread's handle: [`Relay::open`] never blocks.
pub struct Relay {
    orders: mpsc::Sender<Order>,
    thread: Option<JoinHandle<()>>,
}

/// Told of every lock change and relay error.
pub type RelayObserver = Box<dyn Fn(Result<LockState, String>) + Send>;

impl Relay {
    pub fn spawn(
        mut backend: Backend,
        door: String,
        pulse: Duration,
        observer: RelayObserver,
    ) -> Result<Self, RelayError> {
        let (orders, rx) = mpsc::channel::<Order>();
        let thread = std::thread::Builder::new()
            .name("door-relay".into())
            .spawn(move || {
                let mut open_until: Option<Instant> = None;
                loop {
                    let order = match open_until {
                        Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match order {
                        Ok(Order::Open(o)) => {
                            let first = open_until.is_none();
                            let result = match &mut backend {
                                Backend::Line(line) if first => line.set_active(true),
                                Backend::Line(_) => Ok(()),
                                Backend::Command(c) => run_command(c, &door, &o, pulse),
                            };
                            match result {
                                Ok(()) => {
                                    open_until = Some(Instant::now() + pulse);
                                    if first {
                                        observer(Ok(LockState::Unlocked));
                                    }
                                }
                                Err(e) => {
                                    // A pulse under way keeps running to its end.
                                    tracing::error!(error = %e, "the relay did not open");
                                    observer(Err(e.to_string()));
                                }
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            // A release that fails is tried again every second: a relay left
                            // closed is a door left open.
                            open_until = (!close(&mut backend, &observer))
                                .then(|| Instant::now() + RELEASE_RETRY);
                        }
                        Ok(Order::Stop) | Err(RecvTimeoutError::Disconnected) => {
                            // Released whatever we believe: never leave the line active.
                            if !close(&mut backend, &observer) {
                                tracing::error!("the relay could not be released on stop");
                            }
                            return;
                        }
                    }
                }
            })
            .map_err(RelayError::Thread)?;
        Ok(Self {
            orders,
            thread: Some(thread),
        })
    }

    /// Close the relay for the pulse (or extend the pulse under way).
    pub fn open(&self, opening: Opening) {
        let _ = self.orders.send(Order::Open(opening));
    }

    /// Release the relay (locked) and end the thread.
    pub fn stop(mut self) {
        let _ = self.orders.send(Order::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How soon a failed release is tried again.
const RELEASE_RETRY: Duration = Duration::from_secs(1);

/// Release the relay; false when the line could not be set.
fn close(backend: &mut Backend, observer: &RelayObserver) -> bool {
    match backend {
        Backend::Line(line) => match line.set_active(false) {
            Ok(()) => {
                observer(Ok(LockState::Locked));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "the relay did not release; trying again");
                observer(Err(e.to_string()));
                false
            }
        },
        Backend::Command(_) => {
            observer(Ok(LockState::Locked));
            true
        }
    }
}

/// Start the door command for one grant (not waited for: a slow command must not delay the
/// next grant; its exit is reaped by a thread of its own).
fn run_command(
    command: &[String],
    door: &str,
    o: &Opening,
    pulse: Duration,
) -> Result<(), RelayError> {
    let (program, args) = command.split_first().expect("checked by door config");
    let mut child = std::process::Command::new(program)
        .args(args)
        .env("FACEGATE_DOOR", door)
        .env("FACEGATE_PERSON_ID", o.person_id.as_deref().unwrap_or(""))
        .env(
            "FACEGATE_PERSON_NAME",
            o.person_name.as_deref().unwrap_or(""),
        )
        .env("FACEGATE_EVENT_ID", &o.event_id)
        .env("FACEGATE_PULSE_S", format!("{}", pulse.as_secs_f64()))
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|source| RelayError::Command {
            program: program.clone(),
            source,
        })?;
    let program = program.clone();
    std::thread::spawn(move || match child.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::error!(%program, %status, "the door command failed"),
        Err(e) => tracing::error!(%program, error = %e, "cannot wait for the door command"),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_pulses_the_line_and_a_grant_during_the_pulse_extends_it() {
        let line = FakeLine::default();
        let states = Arc::new(Mutex::new(Vec::new()));
        let seen = states.clone();
        let relay = Relay::spawn(
            Backend::Line(Box::new(line.clone())),
            "main".into(),
            Duration::from_millis(300),
            Box::new(move |s| seen.lock().unwrap().push(s)),
        )
        .unwrap();
        relay.open(Opening::default());
        std::thread::sleep(Duration::from_millis(150));
        assert!(line.is_active());
        relay.open(Opening::default());
        std::thread::sleep(Duration::from_millis(250));
        assert!(line.is_active(), "the second grant extended the pulse");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!line.is_active());
        let changes = line.changes();
        assert_eq!(changes.len(), 2, "one pulse: {changes:?}");
        let held = changes[1].0 - changes[0].0;
        assert!(held >= Duration::from_millis(400), "{held:?}");
        assert_eq!(
            *states.lock().unwrap(),
            [Ok(LockState::Unlocked), Ok(LockState::Locked)]
        );
        relay.open(Opening::default());
        std::thread::sleep(Duration::from_millis(50));
        relay.stop();
        assert!(!line.is_active(), "stopping releases the relay");
    }

    /// A line whose first release fails.
    struct StuckOnce {
        line: FakeLine,
        fail_release: bool,
    }

    impl OutputLine for StuckOnce {
        fn set_active(&mut self, active: bool) -> Result<(), RelayError> {
            if !active && std::mem::take(&mut self.fail_release) {
                return Err(RelayError::Thread(std::io::Error::other("stuck")));
            }
            self.line.set_active(active)
        }

        fn describe(&self) -> String {
            "a line that sticks once".into()
        }
    }

    #[test]
    fn a_release_that_fails_is_tried_again_until_the_relay_is_released() {
        let line = FakeLine::default();
        let relay = Relay::spawn(
            Backend::Line(Box::new(StuckOnce {
                line: line.clone(),
                fail_release: true,
            })),
            "main".into(),
            Duration::from_millis(100),
            Box::new(|_| {}),
        )
        .unwrap();
        relay.open(Opening::default());
        std::thread::sleep(Duration::from_millis(400));
        assert!(line.is_active(), "the first release failed");
        let deadline = Instant::now() + Duration::from_secs(5);
        while line.is_active() {
            assert!(
                Instant::now() < deadline,
                "the release was never tried again"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        relay.stop();
    }

    #[test]
    fn a_command_relay_runs_the_command_with_who_was_let_in() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("opened");
        let relay = Relay::spawn(
            Backend::Command(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo \"$FACEGATE_DOOR $FACEGATE_PERSON_ID $FACEGATE_EVENT_ID\" >> {}",
                    out.display()
                ),
            ]),
            "main".into(),
            Duration::from_millis(100),
            Box::new(|_| {}),
        )
        .unwrap();
        relay.open(Opening {
            person_id: Some("alice".into()),
            person_name: None,
            event_id: "e1".into(),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&out).unwrap_or_default().is_empty() {
            assert!(Instant::now() < deadline, "the command never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "main alice e1\n");
        relay.stop();
    }
}
