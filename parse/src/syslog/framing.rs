//! RFC 6587: syslog over a TCP (or TLS) stream. Frames are either
//! octet-counted (`MSG-LEN SP SYSLOG-MSG`, §3.4.1) or non-transparent
//! (`SYSLOG-MSG TRAILER`, §3.4.2); senders do not announce which, and some
//! mix them, so the framing is decided per frame as rsyslog does.

/// The default [`StreamFramer`] frame limit: 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// The most digits an octet count may have (counts up to 999 999 999).
/// A longer run of digits is not a count: see [`Framing::InvalidOctetCount`].
pub const MAX_OCTET_COUNT_DIGITS: usize = 9;

/// The longest octet-counting header: the digits and the space.
const MAX_HEADER_LEN: usize = MAX_OCTET_COUNT_DIGITS + 1;

/// How a frame was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP MSG`: the frame started with a count (`1`–`9`, then up to
    /// [`MAX_OCTET_COUNT_DIGITS`] digits in all, then a space).
    OctetCounting,
    /// `MSG TRAILER`: the frame started with anything but a digit and ran
    /// to an LF or a NUL.
    NonTransparent,
    /// The frame started with `1`–`9` but no valid count followed (too
    /// many digits, or a byte other than a digit or space after them, or
    /// the stream ended within the digits); it was then framed as
    /// non-transparent, the digits being part of the message.
    InvalidOctetCount,
}

impl Framing {
    /// A name for the framing, for fields and logs.
    pub fn name(self) -> &'static str {
        match self {
            Framing::OctetCounting => "octet_counting",
            Framing::NonTransparent => "non_transparent",
            Framing::InvalidOctetCount => "invalid_octet_count",
        }
    }
}

/// One frame cut from a stream: the bytes of the stream it spans are
/// exactly `header`, `message`, `trailer` in that order, so the frames of a
/// stream, concatenated that way, are the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// How the frame was delimited (for the parts of a long frame: how the
    /// frame they belong to was).
    pub framing: Framing,
    /// The octet count and its space (`"123 "`), in the first part of an
    /// octet-counted frame; empty otherwise.
    pub header: &'a [u8],
    /// The syslog message, or this part of it: what [`parse`](super::parse)
    /// is given and what the spool chains. At most `max_frame` bytes.
    pub message: &'a [u8],
    /// The LF or NUL that ended a non-transparent frame (a CR before the LF
    /// stays in `message`); empty for octet-counted frames, for the parts
    /// of a long frame but the last, and for an incomplete frame.
    pub trailer: &'a [u8],
    /// The frame was longer than `max_frame`: the next frame continues it.
    pub more_parts: bool,
    /// This frame continues the previous one (a later part of a long
    /// frame; it has no header and is not a message on its own).
    pub continuation: bool,
    /// The stream ended before the frame did (after [`StreamFramer::finish`]):
    /// the octet count was not reached, or no trailer came.
    pub incomplete: bool,
}

impl Frame<'_> {
    /// How many bytes of the stream the frame spans (header, message and
    /// trailer).
    pub fn stream_len(&self) -> usize {
        self.header.len() + self.message.len() + self.trailer.len()
    }
}

/// Cuts the bytes of one TCP connection into syslog frames (RFC 6587).
///
/// Feed it what arrives with [`push`](Self::push) (or read straight into
/// it with [`read_space`](Self::read_space) and [`commit`](Self::commit)),
/// then take the complete frames with [`next_frame`](Self::next_frame)
/// until it returns `None`. When the connection ends, call
/// [`finish`](Self::finish) and drain `next_frame` once more: the
/// unfinished last frame comes out flagged `incomplete`.
///
/// ```
/// use wormlog_parse::syslog::{Framing, StreamFramer};
///
/// let mut framer = StreamFramer::default();
/// framer.push(b"11 <13>hello");
/// assert!(framer.next_frame().is_none());
/// framer.push(b" w<13>bye\n<13>tail");
/// let frame = framer.next_frame().unwrap();
/// assert_eq!((frame.framing, frame.message), (Framing::OctetCounting, &b"<13>hello w"[..]));
/// let frame = framer.next_frame().unwrap();
/// assert_eq!((frame.framing, frame.message), (Framing::NonTransparent, &b"<13>bye"[..]));
/// assert!(framer.next_frame().is_none());
/// framer.finish();
/// let frame = framer.next_frame().unwrap();
/// assert_eq!((frame.message, frame.incomplete), (&b"<13>tail"[..], true));
/// assert!(framer.next_frame().is_none());
/// ```
///
/// The rules:
///
/// * **Which framing**, decided at the start of each frame: `1`–`9`
///   followed by at most [`MAX_OCTET_COUNT_DIGITS`] digits in all and a
///   space is an octet count; anything else (including `0`, and `<` which
///   starts a well-formed syslog message) is non-transparent, as is a run
///   of digits that is not a valid count ([`Framing::InvalidOctetCount`]:
///   `99999999999 x` is a message, not the promise of 100 GB).
/// * **Trailers**: LF or NUL ends a non-transparent frame (RFC 6587 §3.4.2
///   names both as in use); the trailer is not part of the message. A CR
///   before the LF is kept in the message (byte-exact, as for file lines).
///   An empty frame (`\n\n`) comes out as a frame with an empty message —
///   nothing is hidden; the caller may skip it.
/// * **Long frames**: a frame whose message exceeds `max_frame` bytes
///   (counted or not) comes out in parts of exactly `max_frame` bytes
///   flagged `more_parts`, the later ones `continuation`, the last with the
///   remainder. An octet count larger than `max_frame` is trusted (up to
///   999 999 999): its bytes are taken as parts of that one message.
/// * **Memory**: once `next_frame` returns `None`, the framer holds at most
///   [`max_buffered`](Self::max_buffered) = `max_frame` + 10 bytes (an
///   unfinished frame and its header); what one
///   `push` adds on top is the caller's chunk.
/// * **Determinism**: the frames, parts and flags depend only on the
///   bytes, never on how they were split into pushes.
/// * **Copies**: each byte is copied once into the framer's buffer (none
///   with `read_space`); frames borrow from it.
#[derive(Debug)]
pub struct StreamFramer {
    /// Initialised storage; the bytes not yet framed are
    /// `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How many bytes after `start` were already searched for a trailer in
    /// vain (so that a long frame arriving in small pieces is scanned once).
    scanned: usize,
    max_frame: usize,
    state: State,
    finished: bool,
}

/// Where the framer stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    Boundary,
    /// Within an octet-counted frame whose first part was emitted, with
    /// `remaining` message bytes to come.
    CountedRest { remaining: usize },
    /// Within a non-transparent frame whose first part was emitted.
    StuffedRest { framing: Framing },
}

/// Where the next frame ends, in bytes from `start`.
#[derive(Debug, Clone, Copy)]
struct Cut {
    framing: Framing,
    header: usize,
    message: usize,
    trailer: usize,
    more_parts: bool,
    continuation: bool,
    incomplete: bool,
    next: State,
}

impl Cut {
    fn new(framing: Framing, message: usize, continuation: bool) -> Self {
        Cut {
            framing,
            header: 0,
            message,
            trailer: 0,
            more_parts: false,
            continuation,
            incomplete: false,
            next: State::Boundary,
        }
    }
}

/// What the start of a frame says about octet counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OctetCount {
    /// Not a digit `1`–`9`: non-transparent.
    NotACount,
    /// Digits so far; more bytes needed to decide.
    Unfinished,
    /// Digits, but not a valid count.
    Invalid,
    /// A count of `len` message bytes after a `header`-byte header.
    Valid { len: usize, header: usize },
}

fn octet_count(data: &[u8]) -> OctetCount {
    if !matches!(data.first(), Some(b'1'..=b'9')) {
        return OctetCount::NotACount;
    }
    let digits = data
        .iter()
        .take(MAX_OCTET_COUNT_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits > MAX_OCTET_COUNT_DIGITS {
        return OctetCount::Invalid;
    }
    match data.get(digits) {
        None => OctetCount::Unfinished,
        Some(b' ') => OctetCount::Valid {
            len: data[..digits]
                .iter()
                .fold(0, |n, b| n * 10 + usize::from(b - b'0')),
            header: digits + 1,
        },
        Some(_) => OctetCount::Invalid,
    }
}

impl Default for StreamFramer {
    fn default() -> Self {
        StreamFramer::new(DEFAULT_MAX_FRAME)
    }
}

impl StreamFramer {
    /// A framer for one connection whose frames (messages) are cut into
    /// parts beyond `max_frame` bytes (at least 1).
    pub fn new(max_frame: usize) -> Self {
        StreamFramer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            max_frame: max_frame.max(1),
            state: State::Boundary,
            finished: false,
        }
    }

    /// The frame limit.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes received and not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The most bytes the framer holds once [`next_frame`](Self::next_frame)
    /// has returned `None`: `max_frame` and an octet-counting header.
    pub fn max_buffered(&self) -> usize {
        self.max_frame + MAX_HEADER_LEN
    }

    /// Appends bytes received from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.finished = false;
        self.make_room(data.len());
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Space (at least `min` bytes, and at least 1) to read from the
    /// connection into directly, saving the copy of [`push`](Self::push);
    /// then say how much was read with [`commit`](Self::commit).
    pub fn read_space(&mut self, min: usize) -> &mut [u8] {
        self.make_room(min.max(1));
        &mut self.buf[self.end..]
    }

    /// Takes the first `n` bytes of the last [`read_space`](Self::read_space)
    /// as received (clamped to its size).
    pub fn commit(&mut self, n: usize) {
        self.finished = false;
        self.end = self.end.saturating_add(n).min(self.buf.len());
    }

    /// Says the stream has ended: the next calls to
    /// [`next_frame`](Self::next_frame) return the complete frames still
    /// held, then the unfinished one flagged `incomplete`. (Bytes pushed
    /// after that are still framed, nothing is lost, but a frame already
    /// returned as incomplete stays so.)
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The next frame, or `None` until more bytes are pushed (or, after
    /// [`finish`](Self::finish), when everything was returned).
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let cut = self.cut()?;
        let at = self.start;
        self.start += cut.header + cut.message + cut.trailer;
        self.scanned = 0;
        self.state = cut.next;
        let (header, rest) = self.buf[at..self.start].split_at(cut.header);
        let (message, trailer) = rest.split_at(cut.message);
        Some(Frame {
            framing: cut.framing,
            header,
            message,
            trailer,
            more_parts: cut.more_parts,
            continuation: cut.continuation,
            incomplete: cut.incomplete,
        })
    }

    /// Decides where the next frame ends, if it can be decided yet.
    fn cut(&mut self) -> Option<Cut> {
        let data = &self.buf[self.start..self.end];
        let max = self.max_frame;
        let finished = self.finished;
        match self.state {
            State::Boundary if data.is_empty() => None,
            State::Boundary => match octet_count(data) {
                OctetCount::Valid { len, header } => {
                    let take = len.min(max);
                    let available = data.len() - header;
                    if available >= take {
                        Some(Cut {
                            header,
                            more_parts: len > take,
                            next: if len > take {
                                State::CountedRest {
                                    remaining: len - take,
                                }
                            } else {
                                State::Boundary
                            },
                            ..Cut::new(Framing::OctetCounting, take, false)
                        })
                    } else {
                        finished.then_some(Cut {
                            header,
                            incomplete: true,
                            ..Cut::new(Framing::OctetCounting, available, false)
                        })
                    }
                }
                // The stream ended within the digits.
                OctetCount::Unfinished if finished => cut_non_transparent(
                    data,
                    &mut self.scanned,
                    max,
                    finished,
                    Framing::InvalidOctetCount,
                    false,
                ),
                OctetCount::Unfinished => None,
                OctetCount::Invalid => cut_non_transparent(
                    data,
                    &mut self.scanned,
                    max,
                    finished,
                    Framing::InvalidOctetCount,
                    false,
                ),
                OctetCount::NotACount => cut_non_transparent(
                    data,
                    &mut self.scanned,
                    max,
                    finished,
                    Framing::NonTransparent,
                    false,
                ),
            },
            // Even at the end of the stream: the previous part's
            // `more_parts` with nothing following says it was cut short.
            State::CountedRest { .. } | State::StuffedRest { .. } if data.is_empty() => None,
            State::CountedRest { remaining } => {
                let take = remaining.min(max);
                if data.len() >= take {
                    Some(Cut {
                        more_parts: remaining > take,
                        next: if remaining > take {
                            State::CountedRest {
                                remaining: remaining - take,
                            }
                        } else {
                            State::Boundary
                        },
                        ..Cut::new(Framing::OctetCounting, take, true)
                    })
                } else {
                    finished.then_some(Cut {
                        incomplete: true,
                        ..Cut::new(Framing::OctetCounting, data.len(), true)
                    })
                }
            }
            State::StuffedRest { framing } => {
                cut_non_transparent(data, &mut self.scanned, max, finished, framing, true)
            }
        }
    }

    /// Makes room for `additional` more bytes after `end`, moving the held
    /// bytes to the front or growing the buffer.
    fn make_room(&mut self, additional: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end >= additional {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let needed = self.end + additional;
        if self.buf.len() < needed {
            self.buf.resize(needed, 0);
        }
    }
}

/// Cuts a non-transparent frame (or its next part) from non-empty `data`:
/// up to the first LF or NUL within `max + 1` bytes, else a part of `max`
/// bytes once more than `max` are held, else (at the end of the stream)
/// all of it, incomplete.
fn cut_non_transparent(
    data: &[u8],
    scanned: &mut usize,
    max: usize,
    finished: bool,
    framing: Framing,
    continuation: bool,
) -> Option<Cut> {
    let window = data.len().min(max.saturating_add(1));
    let from = (*scanned).min(window);
    if let Some(i) = memchr::memchr2(b'\n', b'\0', &data[from..window]) {
        return Some(Cut {
            trailer: 1,
            ..Cut::new(framing, from + i, continuation)
        });
    }
    if data.len() > max {
        return Some(Cut {
            more_parts: true,
            next: State::StuffedRest { framing },
            ..Cut::new(framing, max, continuation)
        });
    }
    *scanned = window;
    finished.then_some(Cut {
        incomplete: true,
        ..Cut::new(framing, data.len(), continuation)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A frame with owned bytes, to compare runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        framing: Framing,
        header: Vec<u8>,
        message: Vec<u8>,
        trailer: Vec<u8>,
        more_parts: bool,
        continuation: bool,
        incomplete: bool,
    }

    impl From<Frame<'_>> for Owned {
        fn from(f: Frame<'_>) -> Self {
            Owned {
                framing: f.framing,
                header: f.header.to_vec(),
                message: f.message.to_vec(),
                trailer: f.trailer.to_vec(),
                more_parts: f.more_parts,
                continuation: f.continuation,
                incomplete: f.incomplete,
            }
        }
    }

    fn frame(framing: Framing, header: &[u8], message: &[u8], trailer: &[u8]) -> Owned {
        Owned {
            framing,
            header: header.to_vec(),
            message: message.to_vec(),
            trailer: trailer.to_vec(),
            more_parts: false,
            continuation: false,
            incomplete: false,
        }
    }

    fn counted(header: &str, message: &[u8]) -> Owned {
        frame(Framing::OctetCounting, header.as_bytes(), message, b"")
    }

    fn lf(message: &[u8], trailer: &[u8]) -> Owned {
        frame(Framing::NonTransparent, b"", message, trailer)
    }

    fn drain(framer: &mut StreamFramer, out: &mut Vec<Owned>) {
        while let Some(f) = framer.next_frame() {
            out.push(f.into());
        }
        // The memory bound holds whenever the framer is drained.
        assert!(framer.buffered() <= framer.max_buffered());
    }

    /// Frames `input` pushed in pieces of the given sizes (cycled), then
    /// ended.
    fn frames_chunked(input: &[u8], max_frame: usize, sizes: &[usize]) -> Vec<Owned> {
        let mut framer = StreamFramer::new(max_frame);
        let mut out = Vec::new();
        let mut rest = input;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = sizes
                .next()
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            framer.push(&rest[..n]);
            rest = &rest[n..];
            drain(&mut framer, &mut out);
        }
        framer.finish();
        drain(&mut framer, &mut out);
        assert_eq!(framer.buffered(), 0);
        out
    }

    fn frames(input: &[u8], max_frame: usize) -> Vec<Owned> {
        frames_chunked(input, max_frame, &[usize::MAX])
    }

    fn concat(frames: &[Owned]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| [&f.header[..], &f.message, &f.trailer].concat())
            .collect()
    }

    fn parts(mut frames: Vec<Owned>, flags: &[(bool, bool, bool)]) -> Vec<Owned> {
        for (f, &(more_parts, continuation, incomplete)) in frames.iter_mut().zip(flags) {
            f.more_parts = more_parts;
            f.continuation = continuation;
            f.incomplete = incomplete;
        }
        frames
    }

    /// A stream with every kind of frame, for the chunking tests (max 8).
    const MIXED: &[u8] = b"7 <13>hey<13>lf\n<1>crlf\r\n<13>nul\x0020 0123456789abcdefghij<14>a very long lf line\n\n99999999999 x\n12ab\n0 zero\n3 end";

    fn mixed_expected() -> Vec<Owned> {
        let mut e = vec![
            counted("7 ", b"<13>hey"),
            lf(b"<13>lf", b"\n"),
            lf(b"<1>crlf\r", b"\n"),
            lf(b"<13>nul", b"\0"),
        ];
        e.extend(parts(
            vec![
                counted("20 ", b"01234567"),
                counted("", b"89abcdef"),
                counted("", b"ghij"),
            ],
            &[
                (true, false, false),
                (true, true, false),
                (false, true, false),
            ],
        ));
        e.extend(parts(
            vec![
                lf(b"<14>a ve", b""),
                lf(b"ry long ", b""),
                lf(b"lf line", b"\n"),
            ],
            &[
                (true, false, false),
                (true, true, false),
                (false, true, false),
            ],
        ));
        e.push(lf(b"", b"\n"));
        e.extend(parts(
            vec![
                frame(Framing::InvalidOctetCount, b"", b"99999999", b""),
                frame(Framing::InvalidOctetCount, b"", b"999 x", b"\n"),
            ],
            &[(true, false, false), (false, true, false)],
        ));
        e.push(frame(Framing::InvalidOctetCount, b"", b"12ab", b"\n"));
        e.push(lf(b"0 zero", b"\n"));
        e.extend(parts(vec![counted("3 ", b"end")], &[(false, false, false)]));
        e
    }

    #[test]
    fn mixed_framings_on_one_stream() {
        let got = frames(MIXED, 8);
        assert_eq!(got, mixed_expected());
        assert_eq!(concat(&got), MIXED);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let expected = mixed_expected();
        for split in 0..=MIXED.len() {
            let mut framer = StreamFramer::new(8);
            let mut got = Vec::new();
            framer.push(&MIXED[..split]);
            drain(&mut framer, &mut got);
            framer.push(&MIXED[split..]);
            drain(&mut framer, &mut got);
            framer.finish();
            drain(&mut framer, &mut got);
            assert_eq!(got, expected, "split at {split}");
        }
    }

    #[test]
    fn byte_by_byte_and_uneven_chunks() {
        let expected = mixed_expected();
        assert_eq!(frames_chunked(MIXED, 8, &[1]), expected);
        for sizes in [&[2][..], &[3], &[7], &[1, 5, 2, 9], &[13, 1], &[64]] {
            assert_eq!(frames_chunked(MIXED, 8, sizes), expected, "{sizes:?}");
        }
    }

    #[test]
    fn bogus_octet_count_is_a_message() {
        assert_eq!(
            frames(b"99999999999 x\n<13>y\n", 1024),
            vec![
                frame(Framing::InvalidOctetCount, b"", b"99999999999 x", b"\n"),
                lf(b"<13>y", b"\n"),
            ]
        );
        // Nine digits is a count, trusted even far beyond max_frame.
        let got = frames(b"999999999 abcdef", 4);
        assert_eq!(
            got,
            parts(
                vec![counted("999999999 ", b"abcd"), counted("", b"ef")],
                &[(true, false, false), (false, true, true)]
            )
        );
    }

    #[test]
    fn frames_up_to_max_are_whole() {
        assert_eq!(frames(b"abcd\n", 4), vec![lf(b"abcd", b"\n")]);
        assert_eq!(frames(b"4 abcd", 4), vec![counted("4 ", b"abcd")]);
        assert_eq!(
            frames(b"abcde\n", 4),
            parts(
                vec![lf(b"abcd", b""), lf(b"e", b"\n")],
                &[(true, false, false), (false, true, false)]
            )
        );
        // A 64 KiB message, octet-counted and LF-framed, with the default.
        let body = vec![b'x'; DEFAULT_MAX_FRAME];
        let mut input = format!("{} ", body.len()).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(&body);
        input.push(b'\n');
        let got = frames_chunked(&input, DEFAULT_MAX_FRAME, &[1000, 1, 4096]);
        assert_eq!(got, vec![counted("65536 ", &body), lf(&body, b"\n")]);
    }

    #[test]
    fn end_of_stream_returns_the_unfinished_frame() {
        let incomplete = |f: Owned| Owned {
            incomplete: true,
            ..f
        };
        assert_eq!(
            frames(b"10 abc", 64),
            vec![incomplete(counted("10 ", b"abc"))]
        );
        assert_eq!(frames(b"10 ", 64), vec![incomplete(counted("10 ", b""))]);
        assert_eq!(
            frames(b"<13>partial", 64),
            vec![incomplete(lf(b"<13>partial", b""))]
        );
        assert_eq!(
            frames(b"123", 64),
            vec![incomplete(frame(
                Framing::InvalidOctetCount,
                b"",
                b"123",
                b""
            ))]
        );
        assert_eq!(
            frames(b"10 0123456", 4),
            parts(
                vec![counted("10 ", b"0123"), counted("", b"456")],
                &[(true, false, false), (false, true, true)]
            )
        );
        // Ended right after a part: nothing more to return.
        assert_eq!(
            frames(b"10 0123", 4),
            parts(vec![counted("10 ", b"0123")], &[(true, false, false)])
        );
        assert_eq!(
            frames(b"abcd", 4),
            parts(vec![lf(b"abcd", b"")], &[(false, false, true)])
        );
        // Ended within the digits: a message, in parts if need be.
        assert_eq!(
            frames(b"123456789", 4),
            parts(
                vec![
                    frame(Framing::InvalidOctetCount, b"", b"1234", b""),
                    frame(Framing::InvalidOctetCount, b"", b"5678", b""),
                    frame(Framing::InvalidOctetCount, b"", b"9", b""),
                ],
                &[
                    (true, false, false),
                    (true, true, false),
                    (false, true, true)
                ]
            )
        );
        assert_eq!(frames(b"", 4), vec![]);
        // Without finish, nothing unfinished comes out.
        let mut framer = StreamFramer::new(64);
        framer.push(b"<13>partial");
        assert!(framer.next_frame().is_none());
        assert_eq!(framer.buffered(), 11);
    }

    #[test]
    fn empty_frames_are_returned() {
        assert_eq!(
            frames(b"\n\0\n", 4),
            vec![lf(b"", b"\n"), lf(b"", b"\0"), lf(b"", b"\n")]
        );
    }

    #[test]
    fn read_space_and_commit() {
        let mut framer = StreamFramer::new(16);
        let mut got = Vec::new();
        for chunk in [&b"3 ab"[..], b"c<1>x\n<2", b">y\n"] {
            let space = framer.read_space(chunk.len());
            assert!(space.len() >= chunk.len());
            space[..chunk.len()].copy_from_slice(chunk);
            framer.commit(chunk.len());
            drain(&mut framer, &mut got);
        }
        assert_eq!(
            got,
            vec![
                counted("3 ", b"abc"),
                lf(b"<1>x", b"\n"),
                lf(b"<2>y", b"\n")
            ]
        );
        // Committing more than was offered is clamped, not a panic.
        let offered = framer.read_space(1).len();
        framer.commit(usize::MAX);
        assert_eq!(framer.buffered(), offered);
    }

    #[test]
    fn memory_stays_bounded_on_an_endless_line() {
        let max = 1024;
        let mut framer = StreamFramer::new(max);
        let chunk = vec![b'x'; 100];
        let mut total = 0;
        for _ in 0..2000 {
            framer.push(&chunk);
            while let Some(f) = framer.next_frame() {
                assert_eq!(f.message.len(), max);
                assert!(f.more_parts);
                total += f.stream_len();
            }
            assert!(framer.buffered() <= max);
            assert!(framer.buf.len() <= 2 * max + chunk.len());
        }
        framer.finish();
        while let Some(f) = framer.next_frame() {
            assert!(f.incomplete && f.continuation);
            total += f.stream_len();
        }
        assert_eq!(total, 200_000);
    }

    fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => b'0'..=b'9',
            2 => Just(b' '),
            2 => Just(b'\n'),
            1 => Just(b'\0'),
            1 => Just(b'\r'),
            1 => Just(b'<'),
            3 => Just(b'x'),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..300)
    }

    fn check_stream(input: &[u8], max_frame: usize, sizes: &[usize]) {
        let got = frames_chunked(input, max_frame, sizes);
        // Nothing lost, nothing added: the frames are the stream.
        assert_eq!(concat(&got), input);
        // Chunking does not matter.
        assert_eq!(got, frames(input, max_frame));
        for (i, f) in got.iter().enumerate() {
            assert!(f.message.len() <= max_frame);
            assert!(f.header.len() <= MAX_HEADER_LEN);
            assert!(f.trailer.len() <= 1);
            assert!(!f.incomplete || i + 1 == got.len());
            let previous_more = i > 0 && got[i - 1].more_parts;
            assert_eq!(f.continuation, previous_more, "frame {i}: {got:?}");
            if f.continuation {
                assert!(f.header.is_empty());
                assert_eq!(f.framing, got[i - 1].framing);
            }
            if f.more_parts {
                assert!(f.trailer.is_empty());
                assert_eq!(f.message.len(), max_frame);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn framer_accounts_for_every_byte(
            input in stream_bytes(),
            max_frame in 1usize..40,
            sizes in proptest::collection::vec(1usize..50, 1..8),
        ) {
            check_stream(&input, max_frame, &sizes);
        }

        #[test]
        fn framer_accounts_for_every_arbitrary_byte(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            max_frame in 1usize..300,
            sizes in proptest::collection::vec(1usize..64, 1..8),
        ) {
            check_stream(&input, max_frame, &sizes);
        }
    }
}
