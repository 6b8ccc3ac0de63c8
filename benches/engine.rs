//! `cargo bench --bench engine`: the same per-stage table as `facegate bench engine`, on the
//! fixture photos placed on 1280×720 frames. Needs `make models`.

use facegate_core::config::Config;
use facegate_tools::bench::{bench_engine, format_table, frame_1280x720};

fn main() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut frames = Vec::new();
    for (label, name) in [
        ("1280x720, 1 face", "obama.jpg"),
        ("1280x720, 6 faces", "t1.jpg"),
    ] {
        let photo = image::open(fixtures.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (run `make models`)"))
            .to_rgb8();
        let mut jpeg = Vec::new();
        frame_1280x720(&photo)
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .expect("JPEG encoding of an RGB frame");
        frames.push((label.to_string(), jpeg));
    }
    let iterations = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rows = bench_engine(&Config::default(), &frames, iterations).expect("engine bench");
    print!("{}", format_table(&rows, iterations));
}
