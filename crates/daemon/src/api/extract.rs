//! Request input: JSON bodies whose errors name the offending field, base64 images in the
//! forms clients send them, and the identifier rules of api.md §1.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

/// A JSON body. Unknown fields are ignored; a wrong type or a missing field is
/// `ERR_INVALID_REQUEST` naming the field; a body over the limit is `ERR_PAYLOAD_TOO_LARGE`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The raw body, with the size limit mapped to the documented error.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner)
            if std::error::Error::source(&inner).is_some_and(is_length_limit)
                || inner.to_string().contains("length limit") =>
        {
            ApiError::new(ErrorCode::ErrPayloadTooLarge)
        }
        other => ApiError::invalid(format!("cannot read the request body: {other}")),
    })
}

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "the request body is empty; a JSON object is expected",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(json_error)
}

/// `ERR_INVALID_REQUEST` naming the field at fault.
fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    // "?": serde_path_to_error could not tell where (an empty or cut-off body).
    let root = matches!(path.as_str(), "." | "" | "?");
    if (inner.is_syntax() || inner.is_eof()) && root {
        ApiError::invalid(format!("the request body is not valid JSON: {inner}"))
    } else if inner.is_syntax() || inner.is_eof() {
        // serde_json also reports a value of the wrong kind for an enum (`false` where a
        // name is expected) as a syntax error: name the field all the same.
        let message = format!("field `{path}`: not a valid value here: {inner}");
        ApiError::invalid(message).with_metadata("field", path)
    } else if root {
        ApiError::invalid(strip_position(&inner.to_string()))
    } else {
        let message = format!("field `{path}`: {}", strip_position(&inner.to_string()));
        ApiError::invalid(message).with_metadata("field", path)
    }
}

/// serde_json appends " at line 1 column 42"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Query parameters; a malformed one is `ERR_INVALID_REQUEST`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid(format!("bad query parameters: {}", e.body_text())))
    }
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The bytes of a base64 image field: an optional `data:image/...;base64,` prefix, padding or
/// none, whitespace and line breaks anywhere, standard or URL-safe alphabet.
pub fn decode_base64_image(text: &str) -> Result<Vec<u8>, ApiError> {
    let body = match text.trim_start().strip_prefix("data:") {
        Some(rest) => rest
            .split_once(',')
            .map(|(_, b)| b)
            .ok_or_else(|| ApiError::new(ErrorCode::ErrBase64ImageCannotBeDecoded))?,
        None => text,
    };
    let compact: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(ApiError::new(ErrorCode::ErrBase64ImageCannotBeDecoded));
    }
    STANDARD_LENIENT
        .decode(&compact)
        .or_else(|_| URL_SAFE_LENIENT.decode(&compact))
        .map_err(|_| ApiError::new(ErrorCode::ErrBase64ImageCannotBeDecoded))
}

pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Collection names: letters, digits, `_`, `-`, `.`; 1–64 characters.
pub fn check_collection_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::ErrInvalidCollectionName))
    }
}

/// Longest `person_id`, in characters and in UTF-8 bytes (the LMDB key holds the collection
/// name and the id, and LMDB keys end at 511 bytes).
pub const MAX_PERSON_ID_CHARS: usize = 128;
pub const MAX_PERSON_ID_BYTES: usize = 256;
/// Longest `person_name`, in characters. Names travel in every MQTT event of the person.
pub const MAX_PERSON_NAME_CHARS: usize = 256;
/// Most `metadata` keys, and the most bytes the metadata object takes as JSON.
pub const MAX_METADATA_KEYS: usize = 64;
pub const MAX_METADATA_BYTES: usize = 8 << 10;

fn invalid_field(field: &str, message: String) -> ApiError {
    ApiError::invalid(message).with_metadata("field", field.to_owned())
}

/// Characters that are invisible or reorder the text around them: an id holding one can look
/// exactly like another id (`admin` and `adm\u{200B}in`), so they are refused in ids.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                  // soft hyphen
        | '\u{061C}'                // Arabic letter mark
        | '\u{180E}'                // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
        | '\u{2066}'..='\u{206F}'   // bidi isolates, deprecated format characters
        | '\u{FEFF}'                // zero-width no-break space
        | '\u{FFF9}'..='\u{FFFB}') // interlinear annotation
}

/// Person ids: 1–128 characters and at most 256 bytes, no control, invisible or
/// bidirectional-override characters.
pub fn check_person_id(id: &str) -> Result<(), ApiError> {
    let n = id.chars().count();
    if n == 0 || n > MAX_PERSON_ID_CHARS || id.len() > MAX_PERSON_ID_BYTES {
        return Err(invalid_field(
            "person_id",
            format!(
                "person_id must have 1 to {MAX_PERSON_ID_CHARS} characters and at most \
                 {MAX_PERSON_ID_BYTES} bytes of UTF-8 (this one has {n} characters, {} bytes)",
                id.len()
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid_field(
            "person_id",
            "person_id must not contain control characters".into(),
        ));
    }
    if let Some(c) = id.chars().find(|&c| is_invisible_or_bidi(c)) {
        return Err(invalid_field(
            "person_id",
            format!(
                "person_id must not contain invisible or text-direction characters (U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Person names: at most 256 characters, no control characters.
pub fn check_person_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n > MAX_PERSON_NAME_CHARS {
        return Err(invalid_field(
            "person_name",
            format!(
                "person_name must have at most {MAX_PERSON_NAME_CHARS} characters (it has {n})"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid_field(
            "person_name",
            "person_name must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Metadata: at most 64 keys and 8 KiB as JSON. It travels in every MQTT event of the person,
/// and an event must fit in one MQTT packet.
pub fn check_metadata(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(invalid_field(
            "metadata",
            format!(
                "metadata may have at most {MAX_METADATA_KEYS} keys (it has {})",
                metadata.len()
            ),
        ));
    }
    let bytes = serde_json::to_vec(metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if bytes > MAX_METADATA_BYTES {
        return Err(invalid_field(
            "metadata",
            format!(
                "metadata may take at most {MAX_METADATA_BYTES} bytes as JSON (it takes {bytes})"
            ),
        ));
    }
    Ok(())
}

/// A similarity threshold in [0, 1].
pub fn check_score(field: &str, v: f32) -> Result<f32, ApiError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(
            ApiError::invalid(format!("{field} must be between 0 and 1"))
                .with_metadata("field", field.to_owned()),
        )
    }
}

/// `limit` (default 50, 1 to `max`) and `cursor` (a previous page's `next_cursor`) of a
/// newest-first listing (`GET /events`, `GET /unknowns`): 422 naming the field otherwise.
pub fn cursor_page(
    limit: Option<usize>,
    cursor: Option<&str>,
    max: usize,
) -> Result<(usize, Option<u64>), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=max).contains(&limit) {
        return Err(
            ApiError::invalid(format!("limit must be 1 to {max}")).with_metadata("field", "limit")
        );
    }
    let before = cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::invalid("cursor is not a next_cursor of this API")
                    .with_metadata("field", "cursor")
            })
        })
        .transpose()?;
    Ok((limit, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_images_are_accepted_in_every_form_clients_send() {
        let bytes = b"\xff\xd8\xff\xe0 some jpeg";
        let plain = encode_base64(bytes);
        let unpadded = plain.trim_end_matches('=').to_owned();
        let wrapped = plain
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let data_url = format!("data:image/jpeg;base64,{plain}");
        for form in [plain, unpadded, wrapped, data_url] {
            assert_eq!(decode_base64_image(&form).unwrap(), bytes, "{form}");
        }
        for bad in ["", "   ", "not base64!!", "data:image/png;base64"] {
            assert_eq!(
                decode_base64_image(bad).unwrap_err().code,
                ErrorCode::ErrBase64ImageCannotBeDecoded
            );
        }
    }

    #[test]
    fn person_ids_are_limited_in_bytes_and_refuse_look_alike_characters() {
        assert!(check_person_id("alice").is_ok());
        assert!(check_person_id(&"é".repeat(128)).is_ok(), "256 bytes");
        // 127 emoji are 127 characters but 508 bytes: too long for the LMDB key.
        let e = check_person_id(&"😀".repeat(127)).unwrap_err();
        assert!(e.message.contains("bytes"), "{}", e.message);
        for bad in [
            "adm\u{200B}in",
            "evil\u{202E}gpj.exe",
            "\u{FEFF}bob",
            "a\u{2066}b",
        ] {
            let e = check_person_id(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::ErrInvalidRequest, "{bad:?}");
            assert_eq!(e.metadata.unwrap()["field"], "person_id");
        }
        assert!(check_person_id("Zoë-Ørsted 李").is_ok());
    }

    #[test]
    fn names_and_metadata_are_bounded_with_the_field_named() {
        assert!(check_person_name(&"n".repeat(256)).is_ok());
        let e = check_person_name(&"n".repeat(257)).unwrap_err();
        assert_eq!(e.metadata.unwrap()["field"], "person_name");
        let many: std::collections::BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        let e = check_metadata(&many).unwrap_err();
        assert_eq!(e.metadata.unwrap()["field"], "metadata");
        let big = std::collections::BTreeMap::from([("k".to_owned(), "v".repeat(9000))]);
        let e = check_metadata(&big).unwrap_err();
        assert!(e.message.contains("8192"), "{}", e.message);
        let fits = std::collections::BTreeMap::from([("k".to_owned(), "v".repeat(8000))]);
        assert!(check_metadata(&fits).is_ok());
    }

    #[test]
    fn collection_names_follow_the_documented_alphabet() {
        for ok in ["staff", "a.b-c_d", "X1", &"a".repeat(64)] {
            assert!(check_collection_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(check_collection_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            items: Vec<u32>,
        }
        let e = parse_json::<Body>(br#"{"name": 5, "items": []}"#).unwrap_err();
        assert!(e.message.contains("`name`"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"name": "x", "items": [1, "a"]}"#).unwrap_err();
        assert!(e.message.contains("items[1]"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"items": []}"#).unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
        let e = parse_json::<Body>(b"{").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }
}
