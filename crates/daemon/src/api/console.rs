//! The operator's console at `/ui`: one page, a script and a style sheet, compiled into the
//! binary (no CDN, no build step). The page itself holds nothing secret and is served without
//! a key; everything it shows comes from the keyed API, with the key the operator typed kept
//! in the tab's session storage and sent as `x-api-key` (never in a URL).
//!
//! A strict Content-Security-Policy goes with each asset: scripts and styles only from this
//! origin (no inline code), images only from here or the `data:`/`blob:` URLs the script makes
//! from keyed responses, no framing.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// The policy of every console asset.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::HeaderName::from_static("permissions-policy"),
                "camera=(self), microphone=(), geolocation=()",
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Bytes of the page, script and style sheet (what a browser loads, images aside).
pub fn weight() -> usize {
    INDEX_HTML.len() + APP_JS.len() + APP_CSS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_has_no_inline_script_or_style_and_stays_small() {
        let html = INDEX_HTML.to_ascii_lowercase();
        // Every <script> loads a file of this origin and has no body; no event attributes.
        for (i, _) in html.match_indices("<script") {
            let tag_end = i + html[i..].find('>').unwrap();
            assert!(
                html[i..tag_end].contains("src=\"/ui/"),
                "{}",
                &html[i..tag_end]
            );
            assert!(html[tag_end + 1..].starts_with("</script>"));
        }
        for attr in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "<style",
            "javascript:",
        ] {
            assert!(!html.contains(attr), "{attr}");
        }
        assert!(!html.contains(" style=\""));
        assert!(weight() < 300 * 1024, "{} bytes", weight());
    }

    /// WCAG relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn text_colours_of_the_style_sheet_keep_wcag_aa_contrast() {
        let var = |name: &str| -> String {
            let at = APP_CSS.find(&format!("--{name}: ")).unwrap() + name.len() + 4;
            APP_CSS[at..at + 7].to_owned()
        };
        let white = "#ffffff";
        // (text, background) as the style sheet combines them.
        let pairs = [
            (var("fg"), var("bg")),
            (var("fg"), var("card")),
            (var("muted"), var("bg")),
            (var("muted"), var("card")),
            (var("accent"), var("bg")),
            (var("accent"), var("card")),
            (var("ok"), var("bg")),
            (var("bad"), var("bg")),
            (var("warn"), var("bg")),
            (white.to_owned(), var("accent")),
            (white.to_owned(), var("bad")),
        ];
        for (text, background) in pairs {
            let c = contrast(&text, &background);
            assert!(c >= 4.5, "{text} on {background}: {c:.2}:1");
        }
        assert!(
            APP_CSS.contains("header { ") && APP_CSS.contains("background: #1f2933; color: #fff;")
        );
        assert!(contrast(white, "#1f2933") >= 4.5);
        // Focus rings: 3:1 against what they sit on (WCAG 1.4.11), light and dark.
        for background in [var("bg"), var("card")] {
            let c = contrast(&var("focus"), &background);
            assert!(c >= 3.0, "focus ring on {background}: {c:.2}:1");
        }
        assert!(contrast(&var("focus-dark"), "#1f2933") >= 3.0);
        assert!(
            !APP_CSS.contains("opacity"),
            "faded controls lose their contrast"
        );
    }

    #[test]
    fn every_control_of_the_page_has_a_label() {
        // Inputs, selects and text areas carry an id named by a <label for>, or an aria-label.
        let html = INDEX_HTML;
        for tag in ["<input", "<select", "<textarea"] {
            for (i, _) in html.match_indices(tag) {
                let end = i + html[i..].find('>').unwrap();
                let element = &html[i..end];
                if element.contains("type=\"hidden\"") || element.contains("aria-label=") {
                    continue;
                }
                let id = element
                    .split("id=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_else(|| panic!("no id or aria-label: {element}"));
                assert!(
                    html.contains(&format!("for=\"{id}\"")),
                    "no <label for=\"{id}\">"
                );
            }
        }
    }
}
