//! `Type=notify` behaviour of `facegate serve`, with a notify socket standing in for systemd.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::server::{Options, Server};

/// Datagrams received on the socket within `timeout` until one contains `want`.
fn wait_for(sock: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(want);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
    panic!("no {want:?} from the daemon within {timeout:?}; got {got:?}");
}

#[test]
fn serve_tells_systemd_it_is_ready_pets_the_watchdog_while_cameras_run_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frames = dir.path().join("frames");
    facegate_daemon::camera::scene::append_frames(
        &frames,
        &[(&facegate_daemon::camera::scene::empty_frame(320, 240), 2)],
    )
    .unwrap();
    let config = format!(
        "[inference]\nembedder = \"dlib128\"\n[[cameras]]\nname = \"door\"\nsource = \"replay\"\npath = \"{}\"\nfps = 5.0\n",
        frames.display()
    );
    let mut server = Server::start_with(
        &dir.path().join("data"),
        &Options {
            config,
            env: vec![
                ("NOTIFY_SOCKET".into(), socket.display().to_string()),
                ("WATCHDOG_USEC".into(), "1000000".into()),
            ],
            ..Options::default()
        },
    )
    .unwrap();
    let ready = wait_for(&sock, "READY=1", Duration::from_secs(30));
    assert!(
        ready
            .last()
            .unwrap()
            .contains("STATUS=serving on 127.0.0.1:"),
        "{ready:?}"
    );
    // A 1 s watchdog is petted every 0.5 s while the camera threads run.
    let pets = Instant::now();
    let mut count = 0;
    while pets.elapsed() < Duration::from_secs(3) {
        wait_for(&sock, "WATCHDOG=1", Duration::from_secs(2));
        count += 1;
    }
    assert!(count >= 4, "{count} pets in 3 s");
    assert!(server.stop().success());
    wait_for(&sock, "STOPPING=1", Duration::from_secs(5));
}
