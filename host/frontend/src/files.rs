//! `/files/<service>/<name>` (protocol.md §10, server.md §12).

use std::time::UNIX_EPOCH;

use bytes::Bytes;
use fleetgate_types::contact::ContactHandler;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::ResponseBody;
use crate::date;
use crate::respond::{Rejection, octet_stream};

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
    handler: &H,
    req: &Request<B>,
) -> Result<Response<ResponseBody>, Rejection> {
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        return Err(Rejection::MethodNotAllowed);
    }
    let (service, name) = parse_path(req.uri().path()).map_err(Rejection::BadRequest)?;
    let file = handler
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
    let len = file.data.len();
    let body = if head {
        ResponseBody::empty()
    } else {
        ResponseBody::full(Bytes::from(file.data))
    };
    let mut resp = octet_stream(body);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if known {
        set_last_modified(&mut resp, file.modified);
    }
    Ok(resp)
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

    #[test]
    fn percent_decode_edge_cases() {
        assert_eq!(percent_decode(b"%41%4a%4A"), Ok(b"AJJ".to_vec()));
        assert!(percent_decode(b"%4").is_err());
        assert!(percent_decode(b"%").is_err());
        assert_eq!(percent_decode(b"%C3%A9"), Ok("é".as_bytes().to_vec()));
    }
}
