//! MJPEG over HTTP (`multipart/x-mixed-replace`), the stream most IP cameras serve.

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::redact::redact_urls;
use super::{decode_frame, CameraError, DecodeLimits, FrameSource, SourceOpener};

/// Largest JPEG part accepted; anything bigger is a broken stream.
const MAX_PART_BYTES: usize = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A camera that sends nothing for this long is considered gone and reconnected.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole frame must arrive within this: a camera (or anything posing as one) that trickles
/// a byte every few seconds never trips the read timeout, but is reconnected after this. The
/// capture thread then beats again well inside the systemd watchdog period (30 s).
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// The request and the response head must come within this. ureq's read timeout is per read,
/// so a server that trickles its response head would otherwise block the opening forever.
const OPEN_DEADLINE: Duration = Duration::from_secs(10);

/// What a connection attempt hands back.
type Opened = Result<Box<dyn FrameSource>, CameraError>;

pub struct MjpegOpener {
    url: String,
    limits: DecodeLimits,
    /// A connection attempt that outlived [`OPEN_DEADLINE`]: the next `open` waits for it
    /// again instead of starting another, so a stalling server holds at most one thread.
    pending: Option<std::sync::mpsc::Receiver<Opened>>,
}

impl MjpegOpener {
    pub fn new(url: &str, limits: DecodeLimits) -> Self {
        Self {
            url: url.to_owned(),
            limits,
            pending: None,
        }
    }
}

impl SourceOpener for MjpegOpener {
    /// Connects on a helper thread and waits at most [`OPEN_DEADLINE`] for the response head,
    /// so the capture thread keeps beating (the systemd watchdog) whatever the server does.
    fn open(&mut self) -> Result<Box<dyn FrameSource>, CameraError> {
        let attempt = match self.pending.take() {
            Some(rx) => rx,
            None => {
                let (tx, rx) = std::sync::mpsc::channel();
                let (url, limits) = (self.url.clone(), self.limits);
                std::thread::Builder::new()
                    .name("mjpeg-open".into())
                    .spawn(move || {
                        let _ = tx.send(connect(&url, limits));
                    })
                    .map_err(|e| CameraError::Unavailable(format!("cannot start a thread: {e}")))?;
                rx
            }
        };
        match attempt.recv_timeout(OPEN_DEADLINE) {
            Ok(opened) => opened,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.pending = Some(attempt);
                Err(CameraError::Unavailable(format!(
                    "{}: no response head within {} s",
                    redact_urls(&self.url),
                    OPEN_DEADLINE.as_secs()
                )))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(CameraError::Unavailable(
                "the connection attempt ended without a result".into(),
            )),
        }
    }

    fn describe(&self) -> String {
        format!("mjpeg {}", redact_urls(&self.url))
    }
}

/// Request the stream and check that it is multipart.
fn connect(url: &str, limits: DecodeLimits) -> Opened {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .build();
    let response = agent
        .get(url)
        .call()
        // ureq's error text quotes the URL, credentials and all.
        .map_err(|e| CameraError::Unavailable(redact_urls(&e.to_string())))?;
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    let boundary = boundary_of(&content_type).ok_or_else(|| {
        CameraError::Unavailable(format!(
            "{} answered {content_type:?}, not multipart/x-mixed-replace with a boundary",
            redact_urls(url)
        ))
    })?;
    let reader = DeadlineReader {
        inner: response.into_reader() as Box<dyn Read + Send>,
        deadline: Instant::now() + FRAME_DEADLINE,
    };
    Ok(Box::new(MjpegSource {
        parts: MultipartReader::new(BufReader::new(reader), &boundary),
        limits,
    }))
}

/// The boundary parameter of a `multipart/x-mixed-replace` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return None;
    }
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("boundary")).then(|| {
            let v = v.trim().trim_matches('"');
            // Some cameras put the leading dashes in the header too.
            v.strip_prefix("--").unwrap_or(v).to_owned()
        })
    })
}

/// A reader that fails with `TimedOut` once its deadline has passed.
struct DeadlineReader<R> {
    inner: R,
    deadline: Instant,
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no complete frame within {} s (the camera sends too slowly)",
                    FRAME_DEADLINE.as_secs()
                ),
            ));
        }
        self.inner.read(buf)
    }
}

struct MjpegSource {
    parts: MultipartReader<BufReader<DeadlineReader<Box<dyn Read + Send>>>>,
    limits: DecodeLimits,
}

impl FrameSource for MjpegSource {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CameraError> {
        self.parts.get_mut().get_mut().deadline = Instant::now() + FRAME_DEADLINE;
        match self.parts.next_part() {
            Ok(Some(jpeg)) => decode_frame(&jpeg, self.limits).map(Some),
            // An HTTP camera stream has no end: the camera went away.
            Ok(None) => Err(CameraError::Unavailable("the MJPEG stream ended".into())),
            Err(e) => Err(CameraError::Unavailable(redact_urls(&format!(
                "MJPEG stream: {e}"
            )))),
        }
    }
}

/// Splits a multipart stream into part bodies. Parts with `Content-Length` are read exactly;
/// parts without are read up to the next boundary line.
pub struct MultipartReader<R> {
    reader: R,
    delimiter: Vec<u8>,
    /// The delimiter line of the next part has already been consumed.
    at_part: bool,
    /// The closing delimiter was read: whatever follows is not a part (RFC 2046).
    closed: bool,
}

impl<R: BufRead> MultipartReader<R> {
    pub fn new(reader: R, boundary: &str) -> Self {
        Self {
            reader,
            delimiter: format!("--{boundary}").into_bytes(),
            at_part: false,
            closed: false,
        }
    }

    /// The underlying reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    fn read_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<usize> {
        line.clear();
        let n = (&mut self.reader)
            .take(MAX_PART_BYTES as u64)
            .read_until(b'\n', line)?;
        Ok(n)
    }

    /// The next part's body; `None` at the closing delimiter or the end of the stream.
    pub fn next_part(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.closed {
            return Ok(None);
        }
        let mut line = Vec::new();
        if !self.at_part {
            loop {
                if self.read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                if line.starts_with(&self.delimiter) {
                    break;
                }
            }
            if line[self.delimiter.len()..].starts_with(b"--") {
                self.closed = true;
                return Ok(None);
            }
        }
        self.at_part = false;
        let mut length = None;
        loop {
            if self.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                break;
            }
            if let Some((k, v)) = text.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        match length {
            Some(n) if n > MAX_PART_BYTES => Err(std::io::Error::other(format!(
                "a part of {n} bytes is over the {MAX_PART_BYTES}-byte limit"
            ))),
            Some(n) => {
                let mut body = vec![0; n];
                self.reader.read_exact(&mut body)?;
                Ok(Some(body))
            }
            None => {
                let mut body = Vec::new();
                loop {
                    if self.read_line(&mut line)? == 0 {
                        return Ok(Some(trim_crlf(body)));
                    }
                    if line.starts_with(&self.delimiter) {
                        if line[self.delimiter.len()..].starts_with(b"--") {
                            // The closing delimiter: this was the last part.
                            self.closed = true;
                            return Ok(Some(trim_crlf(body)));
                        }
                        self.at_part = true;
                        return Ok(Some(trim_crlf(body)));
                    }
                    body.extend_from_slice(&line);
                    if body.len() > MAX_PART_BYTES {
                        return Err(std::io::Error::other(
                            "a part without Content-Length never ended",
                        ));
                    }
                }
            }
        }
    }
}

/// The CRLF before a delimiter belongs to the delimiter, not the body.
fn trim_crlf(mut body: Vec<u8>) -> Vec<u8> {
    if body.ends_with(b"\r\n") {
        body.truncate(body.len() - 2);
    } else if body.ends_with(b"\n") {
        body.truncate(body.len() - 1);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_is_read_from_the_content_type_with_or_without_quotes_and_dashes() {
        assert_eq!(
            boundary_of("multipart/x-mixed-replace; boundary=frame").as_deref(),
            Some("frame")
        );
        assert_eq!(
            boundary_of("multipart/x-mixed-replace;boundary=\"--myboundary\"").as_deref(),
            Some("myboundary")
        );
        assert_eq!(boundary_of("image/jpeg"), None);
    }

    #[test]
    fn parts_with_and_without_content_length_are_split_exactly() {
        let a = b"\xff\xd8jpeg-one\r\n--frame-not-a-delimiter\xff\xd9";
        let b = b"\xff\xd8two\nlines\xff\xd9";
        let mut stream = Vec::new();
        stream.extend_from_slice(b"preamble\r\n--frame\r\nContent-Type: image/jpeg\r\n");
        stream.extend_from_slice(format!("Content-Length: {}\r\n\r\n", a.len()).as_bytes());
        stream.extend_from_slice(a);
        stream.extend_from_slice(b"\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n");
        stream.extend_from_slice(b);
        stream.extend_from_slice(b"\r\n--frame\r\ncontent-length: 3\r\n\r\nabc\r\n--frame--\r\n");
        let mut parts = MultipartReader::new(std::io::Cursor::new(stream), "frame");
        assert_eq!(parts.next_part().unwrap().unwrap(), a.to_vec());
        assert_eq!(parts.next_part().unwrap().unwrap(), b.to_vec());
        assert_eq!(parts.next_part().unwrap().unwrap(), b"abc".to_vec());
        assert!(parts.next_part().unwrap().is_none());
    }

    #[test]
    fn a_part_claiming_more_than_the_limit_is_an_error_not_an_allocation() {
        let stream = format!("--f\r\nContent-Length: {}\r\n\r\n", MAX_PART_BYTES + 1);
        let mut parts = MultipartReader::new(std::io::Cursor::new(stream.into_bytes()), "f");
        assert!(parts.next_part().is_err());
    }

    /// A one-connection HTTP server that answers with an MJPEG stream of `frames` frames.
    fn serve_mjpeg(frames: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/video", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let mut jpeg = Vec::new();
            image::RgbImage::from_pixel(64, 48, image::Rgb([10, 200, 30]))
                .write_to(
                    &mut std::io::Cursor::new(&mut jpeg),
                    image::ImageFormat::Jpeg,
                )
                .unwrap();
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=cam\r\n\r\n",
            );
            for _ in 0..frames {
                let _ = conn.write_all(
                    format!(
                        "--cam\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    )
                    .as_bytes(),
                );
                let _ = conn.write_all(&jpeg);
                let _ = conn.write_all(b"\r\n");
            }
        });
        url
    }

    #[test]
    fn an_mjpeg_camera_over_http_gives_decoded_frames_and_its_end_is_a_failure_to_reconnect_from() {
        let url = serve_mjpeg(3);
        let mut source = MjpegOpener::new(&url, DecodeLimits::default())
            .open()
            .unwrap();
        for _ in 0..3 {
            let frame = source.next_frame().unwrap().unwrap();
            assert_eq!((frame.width(), frame.height()), (64, 48));
            assert!(frame.get_pixel(5, 5).0[1] > 150);
        }
        assert!(matches!(
            source.next_frame(),
            Err(CameraError::Unavailable(_))
        ));
    }

    #[test]
    fn a_url_that_is_not_an_mjpeg_stream_cannot_be_opened() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi",
            );
        });
        let err = MjpegOpener::new(&url, DecodeLimits::default())
            .open()
            .err()
            .unwrap();
        assert!(err.to_string().contains("text/html"), "{err}");
    }

    #[test]
    fn passwords_in_camera_urls_are_not_in_errors_or_descriptions() {
        // A closed port: the HTTP client's error quotes the URL it failed on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for url in [
            format!("http://admin:s3cret@127.0.0.1:{port}/video"),
            format!("http://admin:p@ss@127.0.0.1:{port}/video"),
            format!("http://127.0.0.1:{port}/video?user=a&pwd=s3cret"),
        ] {
            let mut opener = MjpegOpener::new(&url, DecodeLimits::default());
            let err = opener.open().err().unwrap().to_string();
            for shown in [err, opener.describe()] {
                assert!(
                    !shown.contains("s3cret") && !shown.contains("p@ss"),
                    "{url}: {shown}"
                );
                assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
            }
        }
    }

    #[test]
    fn a_camera_that_trickles_bytes_fails_its_frame_deadline() {
        let mut r = DeadlineReader {
            inner: std::io::repeat(b'x'),
            deadline: Instant::now() - Duration::from_millis(1),
        };
        let e = r.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        r.deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 4);
    }

    #[test]
    fn a_server_trickling_its_response_head_fails_the_opening_within_its_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut c, _) = listener.accept().unwrap();
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\n");
            for _ in 0..15 {
                std::thread::sleep(Duration::from_secs(1));
                if c.write_all(b"X").is_err() {
                    return;
                }
            }
        });
        let mut opener = MjpegOpener::new(
            &format!("http://127.0.0.1:{port}/v"),
            DecodeLimits::default(),
        );
        let t = Instant::now();
        let err = opener.open().err().unwrap();
        assert!(err.to_string().contains("no response head"), "{err}");
        assert!(t.elapsed() < OPEN_DEADLINE + Duration::from_secs(2));
        assert!(
            opener.pending.is_some(),
            "the attempt is waited for again, not repeated"
        );
    }
}
