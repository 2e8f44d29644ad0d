//! A lean HTTP/1.1 keep-alive client: the request bytes are built once per endpoint, each
//! connection owns one fixed read buffer, and a response is parsed in place (`httparse` for the
//! head, a small state machine for chunked bodies). Nothing is allocated per request, which is
//! what lets the load engine keep up with `wrk`.
//!
//! Body framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; `chunked`
//! transfer coding when present; else `Content-Length`; else the body runs to the end of the
//! connection.

use std::fmt;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The size of a connection's read buffer; a response head must fit in it.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The most headers a response may carry.
const MAX_HEADERS: usize = 64;

/// Why one exchange on a connection failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The server closed the connection before the response was complete.
    Closed {
        /// Whether no byte of a response had arrived yet (a stale keep-alive connection).
        before_response: bool,
    },
    /// The response is not valid HTTP/1.1 (or its head does not fit in the read buffer).
    Protocol(&'static str),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Io(e) => write!(f, "i/o error: {e}"),
            ExchangeError::Closed {
                before_response: true,
            } => f.write_str("connection closed before any response byte"),
            ExchangeError::Closed {
                before_response: false,
            } => f.write_str("connection closed in the middle of a response"),
            ExchangeError::Protocol(what) => write!(f, "invalid response: {what}"),
        }
    }
}

impl From<io::Error> for ExchangeError {
    fn from(e: io::Error) -> Self {
        ExchangeError::Io(e)
    }
}

/// What a complete response looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    /// The status code.
    pub status: u16,
    /// Bytes received for this response: head plus body as framed on the wire.
    pub wire_bytes: u64,
    /// Whether the connection cannot be reused afterwards.
    pub close: bool,
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// One keep-alive connection with its read buffer.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Connection {
    /// Wraps a connected stream (Nagle's algorithm off, as every load tool does).
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        })
    }

    /// Connects to `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> io::Result<Self> {
        Self::new(TcpStream::connect(addr).await?)
    }

    /// Writes `request` and reads one complete response. `head` says whether the request was a
    /// `HEAD` (whose response carries no body whatever its headers say).
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
    ) -> Result<ResponseInfo, ExchangeError> {
        self.stream.write_all(request).await?;
        self.read_response(head).await
    }

    async fn fill(&mut self) -> Result<usize, ExchangeError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(ExchangeError::Protocol(
                    "response head larger than the read buffer",
                ));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    async fn read_response(&mut self, head: bool) -> Result<ResponseInfo, ExchangeError> {
        let mut wire = 0u64;
        loop {
            let (status, framing, close, head_len) = loop {
                if self.start < self.end
                    && let Some(parsed) = parse_head(&self.buf[self.start..self.end], head)?
                {
                    break parsed;
                }
                let had = self.end - self.start;
                if self.fill().await? == 0 {
                    return Err(ExchangeError::Closed {
                        before_response: had == 0 && wire == 0,
                    });
                }
            };
            self.start += head_len;
            wire += head_len as u64;
            // An interim response (100 Continue, 103 Early Hints) precedes the real one.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let (body, closed_by_peer) = self.read_body(framing).await?;
            wire += body;
            return Ok(ResponseInfo {
                status,
                wire_bytes: wire,
                close: close || closed_by_peer,
            });
        }
    }

    /// Consumes a body; returns its wire length and whether the peer closed the connection.
    async fn read_body(&mut self, framing: Framing) -> Result<(u64, bool), ExchangeError> {
        match framing {
            Framing::None => Ok((0, false)),
            Framing::Length(total) => {
                let mut left = total;
                loop {
                    let take = left.min((self.end - self.start) as u64);
                    self.start += take as usize;
                    left -= take;
                    if left == 0 {
                        return Ok((total, false));
                    }
                    if self.fill().await? == 0 {
                        return Err(ExchangeError::Closed {
                            before_response: false,
                        });
                    }
                }
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                let mut wire = 0u64;
                loop {
                    let (used, done) = decoder.feed(&self.buf[self.start..self.end])?;
                    self.start += used;
                    wire += used as u64;
                    if done {
                        return Ok((wire, false));
                    }
                    if self.fill().await? == 0 {
                        return Err(ExchangeError::Closed {
                            before_response: false,
                        });
                    }
                }
            }
            Framing::UntilClose => {
                let mut wire = (self.end - self.start) as u64;
                self.start = self.end;
                while self.fill().await? > 0 {
                    wire += (self.end - self.start) as u64;
                    self.start = self.end;
                }
                Ok((wire, true))
            }
        }
    }
}

/// Parses a response head: `Ok(None)` when more bytes are needed, else the status, the body's
/// framing, whether the server asked to close, and the head's length.
fn parse_head(
    data: &[u8],
    head_request: bool,
) -> Result<Option<(u16, Framing, bool, usize)>, ExchangeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::Protocol("more than 64 response headers"));
        }
        Err(_) => return Err(ExchangeError::Protocol("malformed status line or header")),
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = http10;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value)
                .map_err(|_| ExchangeError::Protocol("Content-Length is not text"))?;
            let n: u64 = text
                .trim()
                .parse()
                .map_err(|_| ExchangeError::Protocol("Content-Length is not a number"))?;
            if length.is_some_and(|m| m != n) {
                return Err(ExchangeError::Protocol(
                    "conflicting Content-Length headers",
                ));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the final coding when present (RFC 9112 §6.1).
            chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((status, framing, close, len)))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii()
}

/// An incremental decoder of the `chunked` transfer coding that only counts and skips bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

impl ChunkedDecoder {
    /// Consumes what it can of `data`; returns the bytes consumed and whether the body ended.
    /// Bytes not consumed (an incomplete line) must be offered again with more data after them.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), ExchangeError> {
        let mut pos = 0;
        loop {
            match self.state {
                ChunkState::Done => return Ok((pos, true)),
                ChunkState::Size => {
                    let Some(line_len) = find_crlf(&data[pos..]) else {
                        return too_long_or_wait(data.len() - pos, pos);
                    };
                    let size = parse_chunk_size(&data[pos..pos + line_len])?;
                    pos += line_len + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let take = left.min((data.len() - pos) as u64);
                    pos += take as usize;
                    if take < left {
                        self.state = ChunkState::Data(left - take);
                        return Ok((pos, false));
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if data.len() - pos < 2 {
                        return Ok((pos, false));
                    }
                    if &data[pos..pos + 2] != b"\r\n" {
                        return Err(ExchangeError::Protocol("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line_len) = find_crlf(&data[pos..]) else {
                        return too_long_or_wait(data.len() - pos, pos);
                    };
                    pos += line_len + 2;
                    if line_len == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

fn too_long_or_wait(pending: usize, pos: usize) -> Result<(usize, bool), ExchangeError> {
    if pending > MAX_LINE {
        Err(ExchangeError::Protocol(
            "chunk-size or trailer line too long",
        ))
    } else {
        Ok((pos, false))
    }
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ExchangeError> {
    // The size may be followed by extensions (`;name=value`) and optional whitespace.
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ExchangeError::Protocol("invalid chunk size"));
    }
    let mut size = 0u64;
    for &b in digits {
        let d = (b as char)
            .to_digit(16)
            .ok_or(ExchangeError::Protocol("invalid chunk size"))?;
        size = size * 16 + u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";

    fn feed_in_pieces(data: &[u8], cuts: &[usize]) -> Result<(usize, bool), ExchangeError> {
        // Simulates a socket delivering `data` in pieces: unconsumed bytes stay buffered.
        let mut decoder = ChunkedDecoder::default();
        let mut consumed = 0;
        let mut available = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            available = available.max(cut);
            let (used, done) = decoder.feed(&data[consumed..available])?;
            consumed += used;
            if done {
                return Ok((consumed, true));
            }
        }
        Ok((consumed, false))
    }

    #[test]
    fn chunked_body_is_consumed_exactly_at_every_split_point() {
        let end = BODY.len() - 4;
        for cut in 0..=BODY.len() {
            let (used, done) = feed_in_pieces(BODY, &[cut]).unwrap();
            assert!(done, "cut at {cut}");
            assert_eq!(used, end, "cut at {cut}");
        }
    }

    #[test]
    fn incomplete_chunked_body_is_not_done() {
        let (_, done) = feed_in_pieces(&BODY[..20], &[]).unwrap();
        assert!(!done);
    }

    #[test]
    fn malformed_chunks_are_rejected() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"1234567890abcdef0\r\n",
        ] {
            assert!(
                matches!(
                    ChunkedDecoder::default().feed(bad),
                    Err(ExchangeError::Protocol(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'1'; MAX_LINE + 10];
        assert!(ChunkedDecoder::default().feed(&long).is_err());
    }

    #[test]
    fn head_framing_follows_rfc_9112() {
        let cases: &[(&[u8], bool, Framing, bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                false,
                Framing::Length(12),
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
                true,
                Framing::None,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                false,
                Framing::Chunked,
                false,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::None,
                false,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::None,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                false,
                Framing::UntilClose,
                true,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                true,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
        ];
        for (raw, head, framing, close) in cases {
            let (_, f, c, len) = parse_head(raw, *head).unwrap().unwrap();
            assert_eq!(
                (f, c, len),
                (*framing, *close, raw.len()),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn bad_heads_are_rejected_and_partial_heads_wait() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(
            parse_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
    }

    proptest::proptest! {
        #[test]
        fn chunked_decoder_handles_any_chunking_and_any_split(
            sizes in proptest::collection::vec(1usize..300, 0..8),
            cuts in proptest::collection::vec(0usize..3000, 0..6),
        ) {
            let mut wire = Vec::new();
            for s in &sizes {
                wire.extend_from_slice(format!("{s:x}\r\n").as_bytes());
                wire.extend(std::iter::repeat_n(b'a', *s));
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let end = wire.len();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            let (used, done) = feed_in_pieces(&wire, &cuts).unwrap();
            proptest::prop_assert!(done);
            proptest::prop_assert_eq!(used, end);
        }
    }
}
