//! The fuzz harness of the part any server reaches first: response framing
//! ([`response::read_response`]) and parsing ([`response::parse_owned`]: imap-proto, then the
//! hand parser), and the client reading them off a socket ([`Client`]).
//!
//! Property tests (proptest) over arbitrary bytes and over grammar-shaped streams (greetings,
//! tagged and untagged status with codes, CAPABILITY, FETCH with literals and nested lists,
//! LIST, STATUS, ESEARCH, NAMESPACE, BYE...) with mutations (cut short, bytes flipped or
//! inserted), partial literals, huge literal counts and deep nesting. Each input must be read
//! without a panic, within a time bound, and with the memory held bounded by the response limit
//! (the bytes this thread allocates are counted).
//!
//! The normal suite runs a few thousand cases; a long run: `PROPTEST_CASES=1000000 cargo test
//! --release --lib imap::fuzz` (README, "Tests"). A failure found is kept in
//! `proptest-regressions/imap/fuzz.txt` (replayed first on every run) and as a named test below.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::conn::test_endpoint;
use super::response::{self, carries_state, read_response, Response};
use super::Client;

/// The response limit of the framing cases: small, so that limits are met often.
const LIMIT: u64 = 64 << 10;

/// The longest one input may take (a loaded machine included): linear work on a few
/// kilobytes takes microseconds.
const TIME_BOUND: Duration = Duration::from_secs(3);

/// How many cases a property runs: `PROPTEST_CASES` when set, else `normal`.
fn cases(normal: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(normal)
}

// ---------------------------------------------------------------------------------------------
// Counting what this thread allocates

/// The global allocator of the library's test binary: the system's, counting the bytes each
/// thread holds (allocated minus freed by it) and the most it held since [`peak_reset`].
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread being torn down has no counters left; nothing to count then.
    let _ = HELD.try_with(|h| {
        let now = h.get() + delta;
        h.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; the counting touches only
// const-initialised thread-locals (no allocation inside the allocator).
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        count(new as isize - layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Start measuring this thread's peak from what it holds now; returns that base.
fn peak_reset() -> isize {
    let held = HELD.with(Cell::get);
    PEAK.with(|p| p.set(held));
    held
}

/// The most this thread held above `base` since [`peak_reset`].
fn peak_since(base: isize) -> usize {
    PEAK.with(Cell::get).saturating_sub(base).max(0) as usize
}

// ---------------------------------------------------------------------------------------------
// Framing and parsing

/// A reader handing out `data` in pieces of `chunk` bytes (a slow or fragmenting link).
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What reading `stream` as a server's responses did.
#[derive(Debug, Default)]
struct Outcome {
    frames: usize,
    parsed: usize,
    /// The most this thread held above what it held before, in bytes.
    peak: usize,
    took: Duration,
}

/// Frame and parse `stream` the way the client does, checking every frame's bounds.
fn read_all(stream: &[u8], chunk: usize) -> Result<Outcome, TestCaseError> {
    let started = Instant::now();
    let base = peak_reset();
    let mut out = Outcome::default();
    {
        let mut r = BufReader::with_capacity(
            chunk.clamp(1, 8192),
            Chunked {
                data: stream,
                chunk,
            },
        );
        let mut buf = Vec::new();
        loop {
            match read_response(&mut r, &mut buf, LIMIT, None) {
                Ok(false) => break,
                Ok(true) => {
                    prop_assert!(buf.len() as u64 <= LIMIT, "{} bytes framed", buf.len());
                    out.frames += 1;
                    let state = carries_state(&buf);
                    let copied = response::parse(&buf);
                    let mut owned = buf.clone();
                    let moved = response::parse_owned(&mut owned);
                    prop_assert_eq!(&copied, &moved, "parse and parse_owned differ");
                    if let Ok(r) = moved {
                        out.parsed += 1;
                        check(&r, state)?;
                    }
                }
                Err(e) => {
                    prop_assert!(
                        matches!(
                            e.kind(),
                            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                        ),
                        "{e}"
                    );
                    break;
                }
            }
        }
    }
    out.peak = peak_since(base);
    out.took = started.elapsed();
    prop_assert!(out.took < TIME_BOUND, "took {:?}", out.took);
    Ok(out)
}

/// What a parsed response may never be.
fn check(r: &Response, _carries_state: bool) -> Result<(), TestCaseError> {
    if let Response::Untagged(response::Untagged::Fetch { item, uid, .. }) = r {
        prop_assert_eq!(item.uid, uid.unwrap_or(0));
        if let Some(b) = &item.body {
            prop_assert!(b.len() as u64 <= LIMIT);
        }
    }
    Ok(())
}

/// Memory held while reading one input may grow with the response limit, never beyond a fixed
/// multiple of it: the frame, its copy here, what parsing one frame makes of it.
const MEMORY_BOUND: usize = 40 * LIMIT as usize;

// ---------------------------------------------------------------------------------------------
// Grammar-shaped responses

fn atom() -> impl Strategy<Value = Vec<u8>> {
    proptest::string::bytes_regex("[A-Za-z0-9$.\\\\-]{1,12}").unwrap()
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("4294967295".to_string()),
        Just("4294967296".to_string()),
        Just("18446744073709551615".to_string()),
        Just("99999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
    ]
}

/// Bytes a server might put in a string: text, protocol look-alikes, anything.
fn text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::string::bytes_regex("[ -~]{0,30}").unwrap(),
        Just(b"A1 OK done\r\n* 1 FETCH (UID 9)".to_vec()),
        Just(b"{5}\r\nabc".to_vec()),
        Just("Entw\u{fc}rfe \u{1b}]0;x\u{7}".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn quoted(t: &[u8]) -> Vec<u8> {
    let mut v = vec![b'"'];
    for &b in t {
        if b == b'"' || b == b'\\' {
            v.push(b'\\');
        }
        v.push(b);
    }
    v.push(b'"');
    v
}

fn literal(t: &[u8]) -> Vec<u8> {
    let mut v = format!("{{{}}}\r\n", t.len()).into_bytes();
    v.extend_from_slice(t);
    v
}

/// A string: quoted, literal (synchronizing or `+`), NIL, or an atom.
fn string() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        text().prop_map(|t| quoted(&t)),
        text().prop_map(|t| literal(&t)),
        text().prop_map(|t| {
            let mut v = format!("{{{}+}}\r\n", t.len()).into_bytes();
            v.extend_from_slice(&t);
            v
        }),
        Just(b"NIL".to_vec()),
        atom(),
    ]
}

fn join(parts: Vec<Vec<u8>>, sep: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            v.extend_from_slice(sep);
        }
        v.extend_from_slice(&p);
    }
    v
}

fn paren(inner: Vec<u8>) -> Vec<u8> {
    let mut v = vec![b'('];
    v.extend_from_slice(&inner);
    v.push(b')');
    v
}

/// Nested lists of strings and numbers (BODYSTRUCTURE-like).
fn nested() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![string(), number().prop_map(String::into_bytes)];
    leaf.prop_recursive(6, 64, 8, |inner| {
        proptest::collection::vec(inner, 0..8).prop_map(|v| paren(join(v, b" ")))
    })
}

fn flags() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b"\\Seen".to_vec()),
            Just(b"\\Recent".to_vec()),
            Just(b"\\*".to_vec()),
            atom(),
        ],
        0..6,
    )
    .prop_map(|v| paren(join(v, b" ")))
}

fn fetch_item() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        number().prop_map(|n| format!("UID {n}").into_bytes()),
        flags().prop_map(|f| [&b"FLAGS "[..], &f].concat()),
        prop_oneof![
            Just(b"\"17-Jul-1996 02:44:25 -0700\"".to_vec()),
            Just(b"NIL".to_vec()),
            string(),
        ]
        .prop_map(|d| [&b"INTERNALDATE "[..], &d].concat()),
        number().prop_map(|n| format!("RFC822.SIZE {n}").into_bytes()),
        number().prop_map(|n| format!("MODSEQ ({n})").into_bytes()),
        number().prop_map(|n| format!("X-GM-MSGID {n}").into_bytes()),
        (
            prop_oneof![
                Just("BODY[]".to_string()),
                Just("BODY[HEADER]".to_string()),
                Just("RFC822".to_string()),
                number().prop_map(|n| format!("BODY[]<{n}>")),
                Just("BODY[HEADER.FIELDS (A B)]".to_string()),
            ],
            string()
        )
            .prop_map(|(n, s)| [n.as_bytes(), b" ", &s].concat()),
        nested().prop_map(|n| [&b"BODYSTRUCTURE "[..], &n].concat()),
    ]
}

fn code() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"[CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS COMPRESS=DEFLATE] ".to_vec()),
        number().prop_map(|n| format!("[UIDVALIDITY {n}] ").into_bytes()),
        number().prop_map(|n| format!("[UIDNEXT {n}] ").into_bytes()),
        (number(), number()).prop_map(|(a, b)| format!("[APPENDUID {a} {b}] ").into_bytes()),
        Just(b"[APPENDUID 7 1:3] ".to_vec()),
        number().prop_map(|n| format!("[HIGHESTMODSEQ {n}] ").into_bytes()),
        flags().prop_map(|f| [&b"[PERMANENTFLAGS "[..], &f, b"] "].concat()),
        Just(b"[THROTTLED 30] ".to_vec()),
        Just(b"[READ-WRITE] ".to_vec()),
        Just(b"[".to_vec()),
        Just(Vec::new()),
    ]
}

/// `head`, up to 20 000 `(`, `middle`, as many `)`, `tail`.
fn deep(
    head: &'static [u8],
    middle: &'static [u8],
    tail: &'static [u8],
) -> impl Strategy<Value = Vec<u8>> {
    (1usize..20_000)
        .prop_map(move |n| [head, &b"(".repeat(n), middle, &b")".repeat(n), tail].concat())
}

/// One response, as a server could send it.
fn response() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just("OK"),
        Just("NO"),
        Just("BAD"),
        Just("PREAUTH"),
        Just("BYE")
    ];
    let tag = prop_oneof![
        Just("A1".to_string()),
        atom().prop_map(|a| String::from_utf8_lossy(&a).into_owned())
    ];
    prop_oneof![
        (status.clone(), code(), text()).prop_map(|(s, c, t)| [
            b"* ",
            s.as_bytes(),
            b" ",
            &c,
            &t,
            b"\r\n"
        ]
        .concat()),
        (tag, status, code(), text()).prop_map(|(g, s, c, t)| [
            g.as_bytes(),
            b" ",
            s.as_bytes(),
            b" ",
            &c,
            &t,
            b"\r\n"
        ]
        .concat()),
        text().prop_map(|t| [&b"+ "[..], &t, b"\r\n"].concat()),
        proptest::collection::vec(atom(), 0..8).prop_map(|c| [
            &b"* CAPABILITY "[..],
            &join(c, b" "),
            b"\r\n"
        ]
        .concat()),
        (number(), proptest::collection::vec(fetch_item(), 0..6)).prop_map(|(n, items)| {
            [
                format!("* {n} FETCH ").as_bytes(),
                &paren(join(items, b" ")),
                b"\r\n",
            ]
            .concat()
        }),
        (
            flags(),
            prop_oneof![Just(b"\"/\"".to_vec()), Just(b"NIL".to_vec()), string()],
            string(),
            proptest::option::of(nested())
        )
            .prop_map(|(a, sep, name, ext)| {
                let mut v = [&b"* LIST "[..], &a, b" ", &sep, b" ", &name].concat();
                if let Some(e) = ext {
                    v.push(b' ');
                    v.extend_from_slice(&e);
                }
                v.extend_from_slice(b"\r\n");
                v
            }),
        (
            string(),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("MESSAGES"),
                        Just("UIDNEXT"),
                        Just("UIDVALIDITY"),
                        Just("HIGHESTMODSEQ"),
                        Just("X")
                    ],
                    number()
                ),
                0..5
            )
        )
            .prop_map(|(name, items)| {
                let items: Vec<Vec<u8>> = items
                    .into_iter()
                    .map(|(k, n)| format!("{k} {n}").into_bytes())
                    .collect();
                [
                    &b"* STATUS "[..],
                    &name,
                    b" ",
                    &paren(join(items, b" ")),
                    b"\r\n",
                ]
                .concat()
            }),
        proptest::collection::vec(number(), 0..10).prop_map(|v| format!(
            "* SEARCH {}\r\n",
            v.join(" ")
        )
        .into_bytes()),
        (number(), number()).prop_map(|(a, b)| format!(
            "* ESEARCH (TAG \"A1\") UID ALL {a}:{b},3 COUNT {b}\r\n"
        )
        .into_bytes()),
        proptest::collection::vec(nested(), 0..3).prop_map(|v| [
            &b"* NAMESPACE "[..],
            &join(v, b" "),
            b"\r\n"
        ]
        .concat()),
        number().prop_map(
            |n| format!("* {n} EXISTS\r\n* {n} EXPUNGE\r\n* {n} RECENT\r\n").into_bytes()
        ),
        deep(b"* 1 FETCH ", b"", b"\r\n"),
        deep(
            b"* 1 FETCH (BODYSTRUCTURE ",
            b"\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1",
            b")\r\n"
        ),
        deep(b"* 1 FETCH (UID 1 X-ITEM ", b"", b")\r\n"),
        deep(b"* NAMESPACE ", b"", b" NIL NIL\r\n"),
        (1usize..20_000)
            .prop_map(|n| [b"* OK [".to_vec(), b"(".repeat(n), b"] x\r\n".to_vec()].concat()),
        (1usize..20_000).prop_map(|n| [
            b"* LIST (\\Noselect) \"/\" x ".to_vec(),
            b"(".repeat(n),
            b"\r\n".to_vec()
        ]
        .concat()),
        Just(b"* 1 FETCH (BODY[] {18446744073709551615}\r\nabc)\r\n".to_vec()),
        Just(b"* 1 FETCH (BODY[] {99999999999999999999}\r\nabc)\r\n".to_vec()),
        (0usize..100)
            .prop_map(|n| format!("* 1 FETCH (UID 1 BODY[] {{{n}}}\r\nshort").into_bytes()),
    ]
}

/// A stream of responses, maybe damaged.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let responses = proptest::collection::vec(response(), 1..8).prop_map(|v| v.concat());
    (
        responses,
        0usize..4,
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 1..8),
    )
        .prop_map(|(mut s, how, at, junk)| {
            let k = at.index(s.len() + 1);
            match how {
                0 => {}
                1 => s.truncate(k),
                2 => {
                    if let Some(b) = s.get_mut(k) {
                        *b ^= junk[0];
                    }
                }
                _ => {
                    s.splice(k..k, junk);
                }
            }
            s
        })
}

fn config(normal: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(normal),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// Grammar-shaped streams, damaged or not, in pieces of any size: no panic, bounded time
    /// and memory.
    #[test]
    fn grammar_shaped_streams_are_read_within_bounds(s in stream(), chunk in 1usize..9000) {
        let r = read_all(&s, chunk)?;
        prop_assert!(r.peak <= MEMORY_BOUND, "{} bytes held for {} bytes of input", r.peak, s.len());
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// Arbitrary bytes, and bytes drawn mostly from the protocol's punctuation.
    #[test]
    fn arbitrary_bytes_are_read_within_bounds(
        s in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4000),
            proptest::collection::vec(
                prop_oneof![
                    Just(b'('), Just(b')'), Just(b'{'), Just(b'}'), Just(b'"'), Just(b'\\'),
                    Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'*'), Just(b'['), Just(b']'),
                    Just(b'+'), b'0'..=b'9', b'A'..=b'Z'
                ],
                0..4000,
            ),
        ],
        chunk in 1usize..9000,
    ) {
        let r = read_all(&s, chunk)?;
        prop_assert!(r.peak <= MEMORY_BOUND, "{} bytes held for {} bytes of input", r.peak, s.len());
    }
}

/// The largest responses the limit lets through, of the shapes that cost parsing most (many
/// flags, many list items, deep nesting): memory stays within the bound.
#[test]
#[allow(clippy::print_stderr)] // what each shape costs, for whoever changes the bound
fn responses_at_the_limit_stay_within_the_memory_bound() {
    let fill = |head: &[u8], unit: &[u8], tail: &[u8]| {
        let n = (LIMIT as usize - head.len() - tail.len()) / unit.len();
        [head, &unit.repeat(n), tail].concat()
    };
    for s in [
        fill(b"* 1 FETCH (FLAGS (", b"a ", b"))\r\n"),
        fill(b"* 1 FETCH (BODYSTRUCTURE (", b"() ", b"))\r\n"),
        fill(b"* LIST (", b"\\A ", b") \"/\" x\r\n"),
        fill(b"* SEARCH", b" 1", b"\r\n"),
        fill(b"* 1 FETCH (X (", b"(", b"))\r\n"),
        fill(b"* CAPABILITY", b" A", b"\r\n"),
        fill(b"* NAMESPACE (", b"(\"\" \"/\")", b") NIL NIL\r\n"),
    ] {
        let r = read_all(&s, 8192).unwrap();
        eprintln!(
            "{:?}…: {} bytes held, {:?}",
            String::from_utf8_lossy(&s[..20]),
            r.peak,
            r.took
        );
        assert!(r.peak <= MEMORY_BOUND, "{} bytes", r.peak);
    }
}

/// With the default response limit (64 MiB), a response of megabytes of tokens (`FLAGS (a a
/// …`, which parsers turn into tens of bytes each) is refused before it is parsed; a SEARCH of
/// as many bytes is read (numbers cost little).
#[test]
fn megabytes_of_protocol_text_are_refused_before_parsing_but_a_search() {
    let big = |head: &[u8], unit: &[u8], tail: &[u8]| {
        [head, &unit.repeat((4 << 20) / unit.len()), tail].concat()
    };
    let flags = big(b"* 1 FETCH (UID 1 FLAGS (", b"a ", b"))\r\n");
    let list = big(b"* LIST (", b"\\A ", b") \"/\" x\r\n");
    for s in [&flags, &list] {
        let base = peak_reset();
        let r = response::parse(s);
        let peak = peak_since(base);
        assert!(r.is_err(), "{:?}", r.map(|_| ()));
        assert!(
            peak < s.len(),
            "{peak} bytes held to refuse {} bytes",
            s.len()
        );
    }
    let search = big(b"* SEARCH", b" 123456", b"\r\n");
    let base = peak_reset();
    let r = response::parse(&search);
    let peak = peak_since(base);
    match r {
        Ok(Response::Untagged(response::Untagged::Search(v))) => assert_eq!(v.len(), (4 << 20) / 7),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(
        peak < 8 * search.len(),
        "{peak} bytes held for a SEARCH of {}",
        search.len()
    );
}

// ---------------------------------------------------------------------------------------------
// The client reading a server's answers off a socket

/// What the client asks the scripted server, whose answer is the fuzzed stream.
fn operate(c: &mut Client, op: u8) -> anyhow::Result<()> {
    match op % 7 {
        0 => c.select("INBOX", true).map(drop),
        1 => c.uid_fetch_meta("1:*", None, &mut |_| Ok(())),
        2 => c
            .uid_fetch_bodies(&[1, 2, 3], &[100, 100, 100], 1 << 20, 2, &mut |_| Ok(()))
            .map(drop),
        3 => c.list().map(drop),
        4 => c.uid_search_all().map(drop),
        5 => c.namespace().map(drop),
        _ => c.uid_fetch_headers("1:3", &mut |_| Ok(())),
    }
}

/// Serve one connection: greet, accept the login, then answer the next command with `answer`
/// (`A1 ` at a line's start standing for that command's tag) and hang up.
fn serve(stream: std::net::TcpStream, answer: Vec<u8>) -> io::Result<()> {
    use std::io::{BufRead, Write};
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = io::BufReader::new(stream.try_clone()?);
    let mut w = stream;
    w.write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] fuzz\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let tag = line.split(' ').next().unwrap_or("*").to_string();
        if line.to_ascii_uppercase().contains(" LOGIN ") {
            w.write_all(
                format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] in\r\n").as_bytes(),
            )?;
            continue;
        }
        let mut out = Vec::with_capacity(answer.len());
        for (i, piece) in answer.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            match piece.strip_prefix(b"A1 ") {
                Some(rest) => out.extend_from_slice(&[tag.as_bytes(), b" ", rest].concat()),
                None => out.extend_from_slice(piece),
            }
        }
        w.write_all(&out)?;
        let _ = w.shutdown(std::net::Shutdown::Both);
        return Ok(());
    }
}

/// `answer` without a stated wait (`[THROTTLED 30]`, `Backoff Time: …`): the client honours
/// one, up to a quarter of an hour, before its next command; that is behaviour, not a hang,
/// and would only make cases slow.
fn defuse(mut answer: Vec<u8>) -> Vec<u8> {
    for word in [&b"backoff"[..], b"throttled", b"limit"] {
        let mut i = 0;
        while i + word.len() <= answer.len() {
            if answer[i..i + word.len()].eq_ignore_ascii_case(word) {
                answer[i + 1] = b'_';
            }
            i += 1;
        }
    }
    answer
}

proptest! {
    #![proptest_config(config(1000))]

    /// The client connects and runs one command that the server answers with a fuzzed stream,
    /// then hangs up: the command ends (an answer or an error) without a panic, in bounded
    /// time and memory.
    #[test]
    fn the_client_reads_fuzzed_answers_within_bounds(
        answer in prop_oneof![stream(), proptest::collection::vec(any::<u8>(), 0..2000)],
        op in any::<u8>(),
        done in any::<bool>(),
    ) {
        let mut answer = defuse(answer);
        if done {
            answer.extend_from_slice(b"A1 OK done\r\n");
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let input = answer.len();
        let server = std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                let _ = serve(s, answer);
            }
        });
        let started = Instant::now();
        let base = peak_reset();
        let result = Client::connect(&test_endpoint(port, Duration::from_secs(5))).and_then(|mut c| operate(&mut c, op));
        let peak = peak_since(base);
        let took = started.elapsed();
        server.join().unwrap();
        drop(result);
        prop_assert!(took < TIME_BOUND + Duration::from_secs(5), "took {took:?}");
        prop_assert!(peak <= MEMORY_BOUND + 64 * input, "{peak} bytes held for {input}");
    }
}

/// The client harness reaches the command: a well-formed answer is read as one.
#[test]
fn the_client_harness_answers_the_command_asked() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        serve(s, b"* SEARCH 3 1 2\r\nA1 OK done\r\n".to_vec()).unwrap();
    });
    let mut c = Client::connect(&test_endpoint(port, Duration::from_secs(5))).unwrap();
    assert_eq!(c.uid_search_all().unwrap(), [1, 2, 3]);
    server.join().unwrap();
}
