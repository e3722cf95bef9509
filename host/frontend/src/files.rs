//! `/files/<service>/<name>` (protocol.md §10, server.md §12): optional authorization, then Go's
//! `http.ServeContent` semantics (`Last-Modified`, `If-Modified-Since`, `If-Range`, `Range`).

use std::ops::Range;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use fleetgate_types::contact::ContactHandler;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::ResponseBody;
use crate::date;
use crate::respond::{Rejection, octet_stream};
use crate::server::{Peer, Shared};

/// The header each client label travels in, one line per label.
pub const LABELS_HEADER: &str = "x-fleetspeak-labels";

/// Splits a raw request path the way Go does: percent-decode once, strip the leading `/`, split
/// on `/`, require `files/<service>/<name>`, then percent-decode service and name again (the
/// client escapes each segment and Go escapes the `%` once more).
pub fn parse_path(raw: &str) -> Result<(String, String), String> {
    let once = percent_decode(raw.as_bytes())?;
    let once = String::from_utf8(once).map_err(|_| "path is not UTF-8".to_string())?;
    let trimmed = once.strip_prefix('/').unwrap_or(&once);
    let parts: Vec<&str> = trimmed.split('/').collect();
    let [first, service, name] = parts.as_slice() else {
        return Err(format!(
            "expected /files/<service>/<name>, got {} path segments",
            parts.len()
        ));
    };
    if *first != "files" {
        return Err("path must start with /files/".into());
    }
    let decode = |s: &str| {
        String::from_utf8(percent_decode(s.as_bytes())?)
            .map_err(|_| "file path segment is not UTF-8".to_string())
    };
    Ok((decode(service)?, decode(name)?))
}

/// Go `url.PathUnescape`: `%XX` becomes a byte, `+` stays `+`, a bad escape is an error.
pub fn percent_decode(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |j: usize| input.get(j).and_then(|c| (*c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err("invalid percent-escape in path".into());
        };
        out.push((hi * 16 + lo) as u8);
        i += 3;
    }
    Ok(out)
}

/// Serves one file request.
pub async fn serve<H: ContactHandler, B>(
    shared: &Shared<H>,
    peer: &Peer,
    req: &Request<B>,
) -> Result<Response<ResponseBody>, Rejection> {
    // Before anything else, as the original: with authorization on, even a malformed path
    // gets 401 from someone unauthorized.
    if shared.config.file_server_authorization {
        authorize(&shared.config, req.headers(), peer).map_err(Rejection::Unauthorized)?;
    }
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        return Err(Rejection::MethodNotAllowed);
    }
    let (service, name) = parse_path(req.uri().path()).map_err(Rejection::BadRequest)?;
    let file = shared
        .handler
        .read_file(&service, &name)
        .await?
        .ok_or(Rejection::FileNotFound)?;
    let modified = date::unix_secs(file.modified);
    // Go's ServeContent treats a zero/epoch mtime as unknown: no Last-Modified, never 304.
    let known = file.modified > UNIX_EPOCH && modified > 0;
    if known && not_modified_since(req, modified) {
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        set_last_modified(&mut resp, file.modified);
        return Ok(resp);
    }
    let data = Bytes::from(file.data);
    let ranges = match header_str(req.headers(), header::RANGE) {
        Some(r) if if_range_holds(req.headers(), known.then_some(modified)) => {
            parse_range(r, data.len())?
        }
        _ => Vec::new(),
    };
    let mut resp = match ranges.as_slice() {
        [] => whole(data, head),
        [one] => partial(&data, one.clone(), head),
        several => multipart(&data, several, head),
    };
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if known {
        set_last_modified(&mut resp, file.modified);
    }
    Ok(resp)
}

/// File-server authorization as in Fleetspeak with its stock authorizer: the client certificate
/// must be extractable by the frontend mode (the TLS session, or the proxy's header), and
/// `required_label`, if set, must be among the `X-Fleetspeak-Labels` headers. The error is for
/// the log; the requester only gets 401.
pub fn authorize(
    config: &crate::FrontendConfig,
    headers: &HeaderMap,
    peer: &Peer,
) -> Result<(), String> {
    crate::certsource::identity(&config.cert_source, headers, peer)?;
    if let Some(label) = &config.required_label {
        let has = headers
            .get_all(LABELS_HEADER)
            .iter()
            .any(|v| v.as_bytes() == label.as_bytes());
        if !has {
            return Err(format!(
                "required label {label:?} not among {LABELS_HEADER}"
            ));
        }
    }
    Ok(())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `200` with the whole file.
fn whole(data: Bytes, head: bool) -> Response<ResponseBody> {
    let len = data.len();
    let body = if head {
        ResponseBody::empty()
    } else {
        ResponseBody::full(data)
    };
    let mut resp = octet_stream(body);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// `206` with one range.
fn partial(data: &Bytes, range: Range<usize>, head: bool) -> Response<ResponseBody> {
    let content_range = content_range(&range, data.len());
    let mut resp = whole(data.slice(range), head);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    if let Ok(v) = HeaderValue::from_str(&content_range) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// `206 multipart/byteranges`, one part per range, as Go writes it.
fn multipart(data: &Bytes, ranges: &[Range<usize>], head: bool) -> Response<ResponseBody> {
    let boundary = format!("{:032x}", rand::random::<u128>());
    let mut body = Vec::new();
    for r in ranges {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Range: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                content_range(r, data.len())
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data[r.clone()]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut resp = whole(Bytes::from(body), head);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn content_range(r: &Range<usize>, size: usize) -> String {
    format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1))
}

/// `If-Range` as Go's `checkIfRange`: absent, or a date not older than the file's (known)
/// mtime, lets `Range` apply. This server sends no `ETag`, so an entity tag never matches.
fn if_range_holds(headers: &HeaderMap, modified: Option<u64>) -> bool {
    let Some(v) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Some(v) = v.to_str().ok().map(str::trim) else {
        return false;
    };
    if v.starts_with('"') || v.starts_with("W/") {
        return false;
    }
    match (date::parse(v), modified) {
        (Some(since), Some(m)) => m <= date::unix_secs(since),
        _ => false,
    }
}

/// Go's `parseRange`: `bytes=` then comma-separated `start-end`, `start-` or `-suffix`.
/// Syntax errors are 416; ranges that all start past the end are 416 with
/// `Content-Range: bytes */size`; ranges adding up to more than the file are ignored (Go
/// takes that for an attack and serves the whole file).
pub fn parse_range(value: &str, size: usize) -> Result<Vec<Range<usize>>, Rejection> {
    let invalid = || Rejection::RangeNotSatisfiable {
        reason: "invalid range".into(),
        size: None,
    };
    let Some(spec) = value.strip_prefix("bytes=") else {
        return Err(invalid());
    };
    let mut ranges = Vec::new();
    let mut no_overlap = false;
    for part in spec.split(',') {
        let part = part.trim_matches([' ', '\t']);
        if part.is_empty() {
            continue;
        }
        let (start, end) = part.split_once('-').ok_or_else(invalid)?;
        let (start, end) = (
            start.trim_matches([' ', '\t']),
            end.trim_matches([' ', '\t']),
        );
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            // Larger than any file: saturating is as good as the exact value.
            Ok(s.parse::<u64>().unwrap_or(u64::MAX).min(usize::MAX as u64) as usize)
        };
        if start.is_empty() {
            let suffix = number(end)?.min(size);
            ranges.push(size - suffix..size);
            continue;
        }
        let start = number(start)?;
        if start >= size {
            no_overlap = true;
            continue;
        }
        let end = if end.is_empty() {
            size
        } else {
            let last = number(end)?;
            if last < start {
                return Err(invalid());
            }
            last.min(size - 1) + 1
        };
        ranges.push(start..end);
    }
    if no_overlap && ranges.is_empty() {
        return Err(Rejection::RangeNotSatisfiable {
            reason: "invalid range: failed to overlap".into(),
            size: Some(size),
        });
    }
    let total: usize = ranges
        .iter()
        .map(|r| r.len())
        .fold(0, usize::saturating_add);
    if total > size {
        ranges.clear();
    }
    Ok(ranges)
}

/// 304 only when the client sent `If-Modified-Since`: the stock client panics on a 304 it did
/// not ask for (§10).
fn not_modified_since<B>(req: &Request<B>, modified: u64) -> bool {
    req.headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(date::parse)
        .is_some_and(|since| modified <= date::unix_secs(since))
}

fn set_last_modified(resp: &mut Response<ResponseBody>, modified: std::time::SystemTime) {
    if let Ok(v) = HeaderValue::from_str(&date::format(modified)) {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str, n: &str) -> Result<(String, String), String> {
        Ok((s.to_string(), n.to_string()))
    }

    #[test]
    fn path_decoding_follows_go() {
        assert_eq!(
            parse_path("/files/system/RevokedCertificates"),
            ok("system", "RevokedCertificates")
        );
        assert_eq!(parse_path("/files/svc/"), ok("svc", ""));
        assert_eq!(parse_path("/files/svc/a%252Fb"), ok("svc", "a/b"));
        assert_eq!(parse_path("/files/my%2520svc/x+y"), ok("my svc", "x+y"));
        assert!(parse_path("/files/svc/a%2Fb").is_err());
        assert!(parse_path("/files/svc").is_err());
        assert!(parse_path("/files/svc/a/b").is_err());
        assert!(parse_path("/files/svc/%zz").is_err());
        assert!(parse_path("/files/svc/%25zz").is_err());
        assert!(parse_path("/other/svc/x").is_err());
    }

    /// `(start, end)` pairs (plain data, easier to compare than ranges), or the status and the
    /// size a 416 names.
    type Parsed = Result<Vec<(usize, usize)>, (u16, Option<usize>)>;

    fn ranges(v: &str, size: usize) -> Parsed {
        let pairs = |r: Vec<Range<usize>>| r.into_iter().map(|r| (r.start, r.end)).collect();
        parse_range(v, size).map(pairs).map_err(|e| match e {
            Rejection::RangeNotSatisfiable { size, .. } => (416, size),
            other => (other.status().as_u16(), None),
        })
    }

    #[test]
    fn ranges_follow_go() {
        assert_eq!(ranges("bytes=0-4", 10), Ok(vec![(0, 5)]));
        assert_eq!(ranges("bytes=5-", 10), Ok(vec![(5, 10)]));
        assert_eq!(ranges("bytes=-3", 10), Ok(vec![(7, 10)]));
        assert_eq!(ranges("bytes=-30", 10), Ok(vec![(0, 10)]));
        assert_eq!(ranges("bytes=8-100", 10), Ok(vec![(8, 10)]));
        assert_eq!(ranges("bytes= 0-1 , 4-5", 10), Ok(vec![(0, 2), (4, 6)]));
        // Past the end: 416 with the size; one overlapping range is enough to serve.
        assert_eq!(ranges("bytes=10-", 10), Err((416, Some(10))));
        assert_eq!(ranges("bytes=20-30, 1-1", 10), Ok(vec![(1, 2)]));
        // Syntax: 416 without the size.
        for bad in [
            "items=0-1",
            "bytes=1",
            "bytes=3-2",
            "bytes=-",
            "bytes=a-b",
            "bytes=--1",
        ] {
            assert_eq!(ranges(bad, 10), Err((416, None)), "{bad}");
        }
        // More bytes asked than the file has: the whole file.
        assert_eq!(ranges("bytes=0-9,0-9", 10), Ok(vec![]));
        // Overflowing numbers saturate.
        assert_eq!(
            ranges("bytes=1-99999999999999999999999", 10),
            Ok(vec![(1, 10)])
        );
        assert_eq!(ranges("bytes=", 10), Ok(vec![]));
    }

    #[test]
    fn percent_decode_edge_cases() {
        assert_eq!(percent_decode(b"%41%4a%4A"), Ok(b"AJJ".to_vec()));
        assert!(percent_decode(b"%4").is_err());
        assert!(percent_decode(b"%").is_err());
        assert_eq!(percent_decode(b"%C3%A9"), Ok("é".as_bytes().to_vec()));
    }
}
