//! Credentials out of camera URLs before any text that may hold one is stored (`/health`) or
//! logged. IP cameras put passwords in the URL (`http://admin:secret@cam/video`) or its query
//! (`?pwd=`, `?token=`), and HTTP client errors quote the URL they failed on.

/// Query parameters whose names contain one of these (any case) hold secrets: `pwd`,
/// `password`, `loginpas`, `psw`, `access_token`, `apikey`, `auth`, `sig`, `credentials`…
const SECRET_PARTS: [&str; 9] = [
    "pas", "pwd", "psw", "token", "secret", "key", "auth", "sig", "cred",
];

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "pw" || SECRET_PARTS.iter().any(|p| name.contains(p))
}

const REDACTED: &str = "***";

/// `text` with the user information and secret query values of every URL in it replaced by
/// `***`. A password that contains `@` is redacted whole: everything before the last `@` of
/// the URL's authority and path is taken for user information (a path with an `@` loses a
/// little, a password never leaks).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url_and_after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = url_and_after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(url_and_after.len());
        let (url, after) = url_and_after.split_at(end);
        redact_one(url, &mut out);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Append `url` (what follows `scheme://`) to `out` with its secrets replaced.
fn redact_one(url: &str, out: &mut String) {
    let query_at = url.find(['?', '#']).unwrap_or(url.len());
    let (mut head, tail) = url.split_at(query_at);
    if let Some(at) = head.rfind('@') {
        out.push_str(REDACTED);
        out.push('@');
        head = &head[at + 1..];
    }
    out.push_str(head);
    let (query, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    if let Some(q) = query.strip_prefix('?') {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    } else {
        out.push_str(query);
    }
    out.push_str(fragment);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_are_removed_from_every_url_in_a_text() {
        let e = "http://admin:s3cret@10.0.0.5:8080/video.mjpg: Connection Failed: refused \
                 (retry http://bob:pw@cam2/x)";
        let r = redact_urls(e);
        assert!(
            !r.contains("s3cret") && !r.contains("admin") && !r.contains("pw@"),
            "{r}"
        );
        assert!(r.contains("http://***@10.0.0.5:8080/video.mjpg"), "{r}");
        assert!(r.contains("http://***@cam2/x"), "{r}");
        assert!(r.contains("Connection Failed: refused"), "{r}");
    }

    #[test]
    fn a_password_containing_at_signs_is_redacted_whole() {
        let r = redact_urls("http://admin:p@ss@w0rd@cam.local/stream");
        assert_eq!(r, "http://***@cam.local/stream");
        let r = redact_urls("GET \"http://u:a/b@c@cam/s?x=1\" failed");
        assert_eq!(r, "GET \"http://***@cam/s?x=1\" failed");
    }

    #[test]
    fn secret_query_values_are_removed_and_others_kept() {
        let r = redact_urls("http://cam/video.cgi?user=admin&pwd=hunter2&res=720&Token=abc#top");
        assert_eq!(
            r,
            "http://cam/video.cgi?user=admin&pwd=***&res=720&Token=***#top"
        );
        let r = redact_urls("http://cam/v?password=a@b");
        assert_eq!(r, "http://cam/v?password=***");
        let r = redact_urls("http://cam/videostream.cgi?loginuse=admin&loginpas=x1&PSW=y2&pw=z3");
        assert_eq!(
            r,
            "http://cam/videostream.cgi?loginuse=admin&loginpas=***&PSW=***&pw=***"
        );
    }

    #[test]
    fn text_without_credentials_is_unchanged() {
        for t in [
            "",
            "no url here",
            "http://cam:8080/video",
            "rtsp://cam/stream?res=1",
        ] {
            assert_eq!(redact_urls(t), t);
        }
    }
}
