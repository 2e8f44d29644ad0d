//! One line of the edge log (`log_format cutover_edge`), parsed without copying.

use std::borrow::Cow;

use serde::Deserialize;

/// One request as nginx logged it. Borrowed from the line where nginx needed no escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLine<'a> {
    /// When the request ended (nginx `$msec`), in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The status sent to the client; 499 when the client went away first.
    pub status: u16,
    /// `$request_time` in milliseconds: from the first byte read from the client to the last
    /// byte sent, which is what the user waited.
    pub request_ms: u32,
    /// `$upstream_response_time` of the upstream that answered last, in milliseconds; `None`
    /// when no upstream was asked (a 429 from the rate limit, a redirect, a denied path).
    pub upstream_ms: Option<u32>,
    /// The upstream that answered last (`127.0.0.1:7001`); `None` as for `upstream_ms`.
    pub upstream_addr: Option<Cow<'a, str>>,
    /// The request method.
    pub method: Cow<'a, str>,
    /// The location that served it (`$cutover_location`: `/api/`, `/`, `redirect`, `-`).
    pub location: Cow<'a, str>,
    /// Bytes sent to the client.
    pub bytes_sent: u64,
}

#[derive(Deserialize)]
struct Raw<'a> {
    time: f64,
    status: u16,
    request_time: f64,
    #[serde(borrow, default)]
    upstream_response_time: Cow<'a, str>,
    #[serde(borrow, default)]
    upstream_addr: Cow<'a, str>,
    #[serde(borrow, default)]
    method: Cow<'a, str>,
    #[serde(borrow, default)]
    location: Cow<'a, str>,
    #[serde(default)]
    bytes_sent: u64,
}

/// Parses one line (without its newline). `None` for anything that is not an edge log line
/// (a line from another format, a torn write), which the reader counts as malformed.
pub fn parse_line(line: &[u8]) -> Option<EdgeLine<'_>> {
    let raw: Raw<'_> = serde_json::from_slice(line).ok()?;
    if !raw.time.is_finite() || !raw.request_time.is_finite() || raw.request_time < 0.0 {
        return None;
    }
    Some(EdgeLine {
        time_ms: (raw.time * 1000.0).round() as i64,
        status: raw.status,
        request_ms: seconds_to_ms(raw.request_time),
        upstream_ms: last_of(&raw.upstream_response_time)
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(seconds_to_ms),
        upstream_addr: last_cow(raw.upstream_addr),
        method: raw.method,
        location: raw.location,
        bytes_sent: raw.bytes_sent,
    })
}

/// The last entry of an nginx list (`a, b` for retries, `a : b` across internal redirects);
/// `None` for `-` or empty.
fn last_of(list: &str) -> Option<&str> {
    list.rsplit(", ")
        .next()
        .and_then(|s| s.rsplit(" : ").next())
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "-")
}

fn last_cow(list: Cow<'_, str>) -> Option<Cow<'_, str>> {
    match list {
        Cow::Borrowed(s) => last_of(s).map(Cow::Borrowed),
        Cow::Owned(s) => last_of(&s).map(|l| Cow::Owned(l.to_owned())),
    }
}

fn seconds_to_ms(seconds: f64) -> u32 {
    let ms = (seconds * 1000.0).round();
    if ms >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        ms as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxied_request_parses() {
        let line = br#"{"time":1700000000.123,"status":503,"request_time":0.042,"upstream_response_time":"0.040","upstream_addr":"127.0.0.1:7001","upstream_status":"503","method":"GET","location":"/api/","bytes_sent":312,"request_length":80,"connection":7}"#;
        let l = parse_line(line).unwrap();
        assert_eq!(l.time_ms, 1_700_000_000_123);
        assert_eq!((l.status, l.request_ms, l.upstream_ms), (503, 42, Some(40)));
        assert_eq!(l.upstream_addr.as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(
            (&*l.method, &*l.location, l.bytes_sent),
            ("GET", "/api/", 312)
        );
    }

    #[test]
    fn no_upstream_and_retries_and_garbage() {
        let rate_limited = br#"{"time":1.0,"status":429,"request_time":0.000,"upstream_response_time":"","upstream_addr":"","method":"GET","location":"/api/","bytes_sent":10}"#;
        let l = parse_line(rate_limited).unwrap();
        assert_eq!((l.upstream_addr, l.upstream_ms), (None, None));
        let retried = br#"{"time":1.0,"status":200,"request_time":0.020,"upstream_response_time":"0.001, 0.015","upstream_addr":"127.0.0.1:7001, 127.0.0.1:7002","method":"GET","location":"/","bytes_sent":10}"#;
        let l = parse_line(retried).unwrap();
        assert_eq!(
            (l.upstream_addr.as_deref(), l.upstream_ms),
            (Some("127.0.0.1:7002"), Some(15))
        );
        let redirected = br#"{"time":1.0,"status":200,"request_time":0.020,"upstream_response_time":"0.005 : 0.012","upstream_addr":"[::1]:7001 : [::1]:7002","method":"GET","location":"/","bytes_sent":10}"#;
        let l = parse_line(redirected).unwrap();
        assert_eq!(
            (l.upstream_addr.as_deref(), l.upstream_ms),
            (Some("[::1]:7002"), Some(12))
        );
        for bad in [
            &b"127.0.0.1 - - [..] \"GET / HTTP/1.1\" 200"[..],
            b"{\"time\":1",
            b"",
            b"{}",
        ] {
            assert!(
                parse_line(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
