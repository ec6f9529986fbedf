//! What the user sees while a run goes: warnings, info lines, and progress (an indicatif bar on a
//! terminal, plain lines otherwise). All of it goes to stderr: stdout carries only a command's
//! result (its summary, or its `--json` document).

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crate::text::{printable, printable_lines};

use indicatif::style::ProgressTracker;
use indicatif::TermLike;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::imap::ByteMeter;

/// 0 = quiet, 1 = normal, 2 = verbose, 3 = protocol trace.
static VERBOSITY: AtomicU8 = AtomicU8::new(1);

pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

// What a run says. Each function here shows what it is given through [`printable`] before it
// reaches the screen (through `crate::stdio`, which escapes again, or the bar) and the run log
// (which escapes again): names and texts a server, a bundle or a file chose reach neither raw,
// whatever the caller did. lib.rs and main.rs refuse `print!` and `eprint!` (clippy); the bar
// draws only what these functions gave it.

/// The bar on screen, if any: lines printed while it is drawn must go through it, or they leave
/// bar remnants behind and the bar redraws over them.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Print `msg` as one line to stderr, escaped, above the bar when one is drawn.
fn say(msg: &str) {
    let line = printable(msg).into_owned();
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        // indicatif clears the bar, prints the line (the terminal wraps a long one; indicatif
        // counts the wrapped rows) and draws the bar again below it.
        Some(bar) => bar.println(line),
        None => crate::stdio::err(&line),
    }
}

/// The run is being stopped (a signal): the bar or board goes, `line` stays.
pub fn stopped(line: &str) {
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    crate::stdio::err(line);
}

/// Always shown, as `warning: msg`.
pub fn warn(msg: &str) {
    always(&format!("warning: {msg}"));
}

/// Always shown on stderr and logged, as it is (an `error:`, `hint:` or `failed:` line).
pub fn always(msg: &str) {
    crate::runlog::write(&printable(msg));
    say(msg);
}

/// Shown unless `-q`.
pub fn info(msg: &str) {
    crate::runlog::write(&printable(msg));
    if verbosity() >= 1 {
        say(msg);
    }
}

/// Shown with `-v`.
pub fn detail(msg: &str) {
    crate::runlog::write(&printable(msg));
    if verbosity() >= 2 {
        say(msg);
    }
}

/// A line of the wire layer's trace (`-v`, `-vv`: see `imap::set_log_level`), on stderr only.
pub fn trace(msg: &str) {
    say(&format!("imap: {msg}"));
}

/// A command's result on stdout (its summary, a table), each line escaped, line breaks kept.
pub fn print(text: &str) {
    crate::stdio::out(text);
}

/// A command's result as JSON on stdout (pretty), with every character [`printable`] would
/// escape written as a JSON `\uXXXX` escape: the same value for a program, nothing a terminal
/// acts on for a person.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    crate::stdio::out(&json_text(v)?);
    Ok(())
}

/// `v` as pretty JSON, escaped as [`print_json`] prints it.
pub fn json_text<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<String> {
    let raw = serde_json::to_string_pretty(v)?;
    // serde_json escapes line breaks inside strings: a raw LF is layout. Every other character
    // to escape can only be inside a string, where `\uXXXX` is the same character.
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c != '\n' && crate::text::needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Which way a run moves messages: the words on its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// pull: host1 into the store.
    Fetch,
    /// push: the store into host2.
    Send,
}

impl Direction {
    fn command(self) -> &'static str {
        match self {
            Direction::Fetch => "pull",
            Direction::Send => "push",
        }
    }

    fn to_do(self) -> &'static str {
        match self {
            Direction::Fetch => "to fetch",
            Direction::Send => "to send",
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Direction::Fetch => "fetching",
            Direction::Send => "sending",
        }
    }
}

/// One folder's work as the display knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Messages expected before the folder is examined (pull: what LIST-STATUS counts beyond
    /// what the store holds; push: what the store does not record on host2).
    pub estimate: u64,
    /// Their bytes, when known before the folder is examined (push knows them from the store).
    pub estimate_bytes: Option<u64>,
    /// Once examined: (messages, bytes) this run moves for it, what already moved included.
    pub examined: Option<(u64, u64)>,
    /// Messages moved so far.
    pub messages_done: u64,
    /// Bytes that arrived (or went) so far, pieces of unfinished messages included.
    pub bytes_done: u64,
}

/// Messages and bytes of all planned work. Bytes of folders not examined yet are estimated at
/// the average message size of those examined, so the total is near its end value early and
/// the bar seldom runs backwards; `None` while no message size is known at all.
pub fn totals<'a>(work: impl IntoIterator<Item = &'a Work>) -> (u64, Option<u64>) {
    let (mut messages, mut bytes, mut unexamined) = (0u64, 0u64, 0u64);
    for w in work {
        match (w.examined, w.estimate_bytes) {
            (Some((m, b)), _) => {
                messages += m;
                bytes += b;
            }
            (None, Some(b)) => {
                messages += w.estimate;
                bytes += b;
            }
            (None, None) => unexamined += w.estimate,
        }
    }
    let bytes = match (unexamined, messages) {
        (0, _) => Some(bytes),
        (_, 0) => None,
        (u, m) => Some(bytes.saturating_add((bytes / m).saturating_mul(u))),
    };
    (messages + unexamined, bytes)
}

/// A transfer rate that forgets the past smoothly: bytes and seconds are both decayed with a
/// time constant of [`RATE_WINDOW`] s, so one fast burst or a pause between folders moves it
/// gradually, and a stall shows as a falling rate rather than a frozen one.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    last: Option<(f64, u64)>,
    bytes: f64,
    secs: f64,
}

/// Seconds over which [`Rate`] forgets.
pub const RATE_WINDOW: f64 = 10.0;
/// Seconds of data flow before a rate (and an ETA) is shown: the first seconds say little.
pub const RATE_WARMUP: f64 = 3.0;

impl Rate {
    /// The position `pos` (bytes) at time `t` (seconds since any fixed start).
    pub fn sample(&mut self, t: f64, pos: u64) {
        let Some((t0, p0)) = self.last else {
            self.last = Some((t, pos));
            return;
        };
        let dt = t - t0;
        if dt < 0.1 {
            return;
        }
        self.last = Some((t, pos));
        // Before the first byte (listing, examining folders) there is no rate to measure.
        if pos == 0 || pos < p0 {
            return;
        }
        let keep = (-dt / RATE_WINDOW).exp();
        self.bytes = self.bytes * keep + (pos - p0) as f64;
        self.secs = self.secs * keep + dt;
    }

    /// Bytes per second, once data has flowed long enough to say.
    pub fn per_sec(&self) -> Option<f64> {
        (self.secs >= RATE_WARMUP).then(|| self.bytes / self.secs)
    }
}

/// Longest ETA worth showing: beyond it the rate says "stalled" more than "this long".
const ETA_CAP_SECS: f64 = 99.0 * 3600.0;

/// "ETA 3m 05s" for `remaining` bytes at `rate` bytes/s; "ETA --" while either is unknown or
/// nothing moves, "ETA >99h" beyond the cap.
pub fn eta_text(remaining: Option<u64>, rate: Option<f64>) -> String {
    let (Some(remaining), Some(rate)) = (remaining, rate) else {
        return "ETA --".into();
    };
    if remaining == 0 {
        return "ETA 0s".into();
    }
    if rate < 1.0 {
        return "ETA --".into();
    }
    let secs = remaining as f64 / rate;
    if secs > ETA_CAP_SECS {
        return "ETA >99h".into();
    }
    let secs = secs.ceil() as u64;
    match secs {
        0..60 => format!("ETA {secs}s"),
        60..3600 => format!("ETA {}m {:02}s", secs / 60, secs % 60),
        _ => format!("ETA {}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What the bar shows, kept up to date by the workers.
#[derive(Debug, Default)]
struct Plan {
    work: BTreeMap<usize, Work>,
    /// Folders in progress now, by slot.
    running: BTreeMap<usize, String>,
    folders: usize,
    /// Folders finished (or found unchanged without a command).
    finished: usize,
}

impl Plan {
    fn work(&mut self, slot: usize) -> &mut Work {
        self.work.entry(slot).or_default()
    }

    /// The first bar line: folders finished, and those running now.
    fn header(&self, direction: Direction) -> String {
        let mut line = format!(
            "{} {}/{} folders",
            direction.command(),
            self.finished,
            self.folders
        );
        if !self.running.is_empty() {
            let names: Vec<&str> = self.running.values().map(String::as_str).collect();
            line += &format!(", now: {}", names.join(", "));
        }
        printable(&line).into_owned()
    }

    /// The bar's length: the planned bytes, never less than what already moved.
    fn length(&self) -> Option<u64> {
        let moved: u64 = self.work.values().map(|w| w.bytes_done).sum();
        totals(self.work.values()).1.map(|b| b.max(moved))
    }

    /// (messages moved, messages planned).
    fn messages(&self) -> (u64, u64) {
        let done = self.work.values().map(|w| w.messages_done).sum();
        (done, totals(self.work.values()).0)
    }

    /// Whether the byte total is partly a guess (folders with messages not examined yet whose
    /// bytes are not known either).
    fn estimated(&self) -> bool {
        self.work
            .values()
            .any(|w| w.examined.is_none() && w.estimate_bytes.is_none() && w.estimate > 0)
    }
}

/// The bar's third line: bytes and messages, done of planned; `~` marks an estimated total.
fn amount_text(
    direction: Direction,
    pos: u64,
    len: Option<u64>,
    estimated: bool,
    messages: (u64, u64),
) -> String {
    let about = if estimated { "~" } else { "" };
    let len = len.map_or("?".to_string(), |l| {
        format!("{about}{}", human_bytes(l.max(pos)))
    });
    format!(
        "{} of {len} · {}/{} messages {}",
        human_bytes(pos),
        messages.0,
        messages.1.max(messages.0),
        direction.to_do()
    )
}

/// The rate and ETA of the bar: sampled at each tick, smoothed by [`Rate`].
#[derive(Clone, Default)]
struct Pace {
    started: Option<Instant>,
    rate: Rate,
}

impl ProgressTracker for Pace {
    fn clone_box(&self) -> Box<dyn ProgressTracker> {
        Box::new(self.clone())
    }

    fn tick(&mut self, state: &ProgressState, now: Instant) {
        let started = *self.started.get_or_insert(now);
        let t = now.saturating_duration_since(started).as_secs_f64();
        self.rate.sample(t, state.pos());
    }

    fn reset(&mut self, _: &ProgressState, _: Instant) {}

    fn write(&self, state: &ProgressState, w: &mut dyn fmt::Write) {
        let rate = self.rate.per_sec();
        let remaining = state.len().map(|l| l.saturating_sub(state.pos()));
        let shown = rate.map_or("-- B".into(), |r| human_bytes(r as u64));
        let _ = write!(w, "{shown}/s {}", eta_text(remaining, rate));
    }
}

/// Progress of one run over several folders, told by the workers (several at once).
pub struct Progress {
    direction: Direction,
    plan: Arc<Mutex<Plan>>,
    bar: Option<ProgressBar>,
    /// Set when the run ends: the progress file's writer stops (see [`set_progress_file`]).
    ended: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Orders setting the bar's length and header. The plan's lock is never held while the bar
    /// is touched: a draw locks the plan (see [`bar_style`]).
    order: Mutex<()>,
}

impl Progress {
    /// A bar when stderr is a terminal and not quiet; otherwise plain lines from
    /// [`Progress::line`]. `folders`: how many the run covers.
    pub fn new(direction: Direction, folders: usize) -> Progress {
        let plan = Arc::new(Mutex::new(Plan {
            folders,
            ..Plan::default()
        }));
        let bar = (verbosity() >= 1 && std::io::stderr().is_terminal()).then(|| {
            let screen = ProgressDrawTarget::term_like_with_hz(Box::new(Screen::stderr()), 20);
            let bar = ProgressBar::with_draw_target(None, screen);
            bar.set_style(bar_style(direction, &plan));
            bar.enable_steady_tick(Duration::from_millis(200));
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            bar
        });
        let ended = progress_file().map(|path| write_progress(path, direction, &plan));
        let p = Progress {
            direction,
            plan,
            bar,
            ended,
            order: Mutex::new(()),
        };
        p.refresh();
        p
    }

    /// Whether bytes are counted as they move (a bar is drawn, or a progress file written):
    /// then [`Progress::meter`] gives a meter, and [`Progress::moved`] is told no bytes.
    pub fn metered(&self) -> bool {
        self.bar.is_some() || self.ended.is_some()
    }

    /// The folder of `slot` is expected to hold `messages` of `bytes` to move, before it is
    /// examined (push knows both from the store, so its total is right from the start).
    pub fn expect_bytes(&self, slot: usize, messages: u64, bytes: u64) {
        {
            let mut plan = self.plan();
            let w = plan.work(slot);
            w.estimate = messages;
            w.estimate_bytes = Some(bytes);
        }
        self.refresh();
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Show the plan's header and length on the bar.
    fn refresh(&self) {
        let Some(bar) = &self.bar else { return };
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let (header, length) = {
            let plan = self.plan();
            (plan.header(self.direction), plan.length())
        };
        match length {
            Some(l) => bar.set_length(l),
            None => bar.unset_length(),
        }
        bar.set_message(header);
    }

    /// `n` folders need no work (unchanged since the last run).
    pub fn settled(&self, n: usize) {
        self.plan().finished += n;
        self.refresh();
    }

    /// The folder of `slot` is expected to hold `messages` to move, before it is examined.
    pub fn expect(&self, slot: usize, messages: u64) {
        self.plan().work(slot).estimate = messages;
        self.refresh();
    }

    /// The folder of `slot` is being worked on now.
    pub fn start(&self, slot: usize, path: &str) {
        self.plan().running.insert(slot, path.to_string());
        self.refresh();
    }

    /// The folder of `slot` was examined: `messages` of `bytes` are left to move (again after a
    /// retry: what already moved is kept).
    pub fn folder(&self, slot: usize, messages: u64, bytes: u64) {
        let (path, count) = {
            let mut plan = self.plan();
            let w = plan.work(slot);
            w.examined = Some((w.messages_done + messages, w.bytes_done + bytes));
            let path = plan.running.get(&slot).cloned().unwrap_or_default();
            (path, plan.folders)
        };
        if self.bar.is_some() {
            self.refresh();
        } else if messages > 0 {
            detail(&format!(
                "[{}/{count}] {path}: {} {messages} messages ({})",
                slot + 1,
                self.direction.doing(),
                human_bytes(bytes)
            ));
        }
    }

    /// The folder of `slot` is finished (done or failed): what it moved is all it will move,
    /// so a failed folder's remaining work leaves the totals.
    pub fn done(&self, slot: usize) {
        {
            let mut plan = self.plan();
            if plan.running.remove(&slot).is_some() {
                plan.finished += 1;
            }
            let w = plan.work(slot);
            w.examined = Some((w.messages_done, w.bytes_done));
        }
        self.refresh();
    }

    /// `messages` more were moved for `slot`, with `bytes` no meter counted.
    pub fn moved(&self, slot: usize, messages: u64, bytes: u64) {
        {
            let mut plan = self.plan();
            let w = plan.work(slot);
            w.messages_done += messages;
            w.bytes_done += bytes;
        }
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// A meter for the connection working on `slot`: counts message bytes as they arrive or
    /// go (see [`crate::mailbox::Mailbox::set_literal_meter`]). `None` when nothing shows them
    /// (see [`Progress::metered`]).
    pub fn meter(&self, slot: usize) -> Option<ByteMeter> {
        if !self.metered() {
            return None;
        }
        let bar = self.bar.clone();
        let plan = Arc::clone(&self.plan);
        Some(Arc::new(move |n| {
            plan.lock()
                .unwrap_or_else(|e| e.into_inner())
                .work(slot)
                .bytes_done += n;
            if let Some(bar) = &bar {
                bar.inc(n);
            }
        }))
    }

    /// A line that stays (a finished folder, a failure), above the bar.
    pub fn line(&self, msg: &str) {
        match &self.bar {
            Some(_) => always(msg),
            None => info(msg),
        }
    }

    pub fn finish(&self) {
        if let Some(ended) = &self.ended {
            ended.store(true, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            *active = None;
            drop(active);
            bar.finish_and_clear();
        }
    }
}

/// Where this process writes its progress for another to read (`fleet run`'s board).
static PROGRESS_FILE: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

/// Write the progress of this process's runs to `path` (twice a second, replaced whole):
/// `{"direction", "done", "total", "messages_done", "messages"}`, bytes done and planned
/// (`total` null while unknown).
pub fn set_progress_file(path: std::path::PathBuf) {
    *PROGRESS_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
}

fn progress_file() -> Option<std::path::PathBuf> {
    PROGRESS_FILE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Start the writer of the progress file: a thread that writes `plan` at `path` until the
/// flag it returns is set (once more then, with the last numbers).
fn write_progress(
    path: std::path::PathBuf,
    direction: Direction,
    plan: &Arc<Mutex<Plan>>,
) -> Arc<std::sync::atomic::AtomicBool> {
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop, plan) = (Arc::clone(&ended), Arc::clone(plan));
    std::thread::spawn(move || loop {
        let last = stop.load(Ordering::Relaxed);
        let doc = {
            let plan = plan.lock().unwrap_or_else(|e| e.into_inner());
            let done: u64 = plan.work.values().map(|w| w.bytes_done).sum();
            let (messages_done, messages) = plan.messages();
            serde_json::json!({
                "direction": direction.command(),
                "done": done,
                "total": plan.length(),
                "messages_done": messages_done,
                "messages": messages,
            })
        };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, doc.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        if last {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    ended
}

/// A wait the run is in (a retry's backoff, a server's stated wait, the last look of a push):
/// what for, and until when. Shown on the bar's first line with the seconds left.
static WAIT: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// Shows a wait on the bar until dropped.
pub struct Waiting(());

/// Say on the bar that the run waits `what` (e.g. "to retry INBOX") until `until`.
pub fn waiting(what: impl Into<String>, until: Instant) -> Waiting {
    *WAIT.lock().unwrap_or_else(|e| e.into_inner()) = Some((what.into(), until));
    Waiting(())
}

impl Drop for Waiting {
    fn drop(&mut self) {
        *WAIT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// " · waiting 12 s to retry INBOX" while a wait runs, else nothing.
fn wait_note() -> String {
    let wait = WAIT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match wait {
        Some((what, until)) => {
            let left = until
                .saturating_duration_since(Instant::now())
                .as_secs_f64();
            format!(" · waiting {:.0} s {what}", left.ceil())
        }
        None => String::new(),
    }
}

impl Drop for Progress {
    /// A run that ends with an error leaves no bar ticking over its message.
    fn drop(&mut self) {
        self.finish();
    }
}

/// A live status of several lines (a fleet's accounts) on a terminal, redrawn in place, with
/// lines printed above it; nothing when stderr is not a terminal or the run is quiet (the
/// caller prints plain lines then).
pub struct Board {
    bar: Option<ProgressBar>,
}

impl Board {
    pub fn new() -> Board {
        let bar = (verbosity() >= 1 && std::io::stderr().is_terminal()).then(|| {
            let screen = ProgressDrawTarget::term_like_with_hz(Box::new(Screen::stderr()), 10);
            let bar = ProgressBar::with_draw_target(None, screen);
            bar.set_style(
                ProgressStyle::with_template("{wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            bar
        });
        Board { bar }
    }

    /// Whether the board is drawn (else the caller says things in plain lines).
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// The status lines now.
    pub fn set(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(printable_lines(text));
        }
    }

    /// A line that stays, above the board.
    pub fn line(&self, msg: &str) {
        always(msg);
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
            bar.finish_and_clear();
        }
    }
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.finish();
    }
}

/// stderr as indicatif draws on it, except that a line is as wide as its text: indicatif pads
/// each line with spaces to the terminal's width, and a terminal narrowed by a resize then
/// rewraps every padded line into two rows, which the next redraw does not clear. Each pad
/// becomes an erase-to-end-of-line, and the row change it implied a CR LF.
#[derive(Debug)]
struct Screen {
    term: console::Term,
    pen: Mutex<Pen>,
}

/// Where [`Screen`] is in indicatif's drawing: it writes each line's text, then its pad.
#[derive(Debug, Default)]
struct Pen {
    pad_next: bool,
    newline_due: bool,
}

impl Screen {
    fn stderr() -> Screen {
        Screen {
            term: console::Term::buffered_stderr(),
            pen: Mutex::new(Pen::default()),
        }
    }

    /// Any cursor movement ends a drawing: no pad, no row change due.
    fn moved(&self) {
        *self.pen.lock().unwrap_or_else(|e| e.into_inner()) = Pen::default();
    }
}

impl TermLike for Screen {
    fn width(&self) -> u16 {
        self.term.size().1
    }

    fn height(&self) -> u16 {
        self.term.size().0
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.moved();
        self.term.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.moved();
        self.term.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.moved();
        self.term.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.moved();
        self.term.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.moved();
        self.term.write_line(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut pen = self.pen.lock().unwrap_or_else(|e| e.into_inner());
        if pen.pad_next {
            pen.pad_next = false;
            pen.newline_due = true;
            // An empty pad means the text ended in the last column: nothing to erase (an
            // erase there would take the last character).
            if s.is_empty() {
                return Ok(());
            }
            return self.term.write_str("\x1b[K");
        }
        if std::mem::take(&mut pen.newline_due) {
            self.term.write_str("\r\n")?;
        }
        pen.pad_next = true;
        self.term.write_str(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.moved();
        self.term.clear_line()
    }

    fn flush(&self) -> std::io::Result<()> {
        self.term.flush()
    }
}

/// Three lines: what runs; the bar with rate and ETA; bytes and messages. None is padded to
/// the terminal's width (see [`Screen`]); at 60 columns each fits on one row.
fn bar_style(direction: Direction, plan: &Arc<Mutex<Plan>>) -> ProgressStyle {
    let for_header = Arc::clone(plan);
    // Drawn at every tick, so a wait's seconds count down.
    let header = move |_: &ProgressState, w: &mut dyn fmt::Write| {
        let head = for_header
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .header(direction);
        let _ = write!(w, "{head}{}", printable(&wait_note()));
    };
    let plan = Arc::clone(plan);
    let amount = move |state: &ProgressState, w: &mut dyn fmt::Write| {
        let (messages, estimated) = {
            let plan = plan.lock().unwrap_or_else(|e| e.into_inner());
            (plan.messages(), plan.estimated())
        };
        let line = amount_text(direction, state.pos(), state.len(), estimated, messages);
        let _ = w.write_str(&line);
    };
    ProgressStyle::with_template("{header}\n[{elapsed_precise}] {bar:25} {pace}\n{amount}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("header", header)
        .with_key("pace", Pace::default())
        .with_key("amount", amount)
        .progress_chars("=> ")
}

/// This process's peak resident memory (VmHWM) in bytes, where the OS reports it (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `1.5 MB`-style sizes for humans (powers of 1000, like the rates).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examined(messages: u64, bytes: u64) -> Work {
        Work {
            examined: Some((messages, bytes)),
            ..Work::default()
        }
    }

    fn expected(messages: u64) -> Work {
        Work {
            estimate: messages,
            ..Work::default()
        }
    }

    #[test]
    fn totals_count_listed_messages_before_their_folders_are_examined() {
        // Nothing examined yet: messages known from LIST-STATUS, bytes not.
        assert_eq!(totals(&[expected(100), expected(50)]), (150, None));
        // One folder examined: the other is estimated at its average size.
        let work = [examined(100, 1_000_000), expected(50)];
        assert_eq!(totals(&work), (150, Some(1_500_000)));
        // All examined: exact.
        let work = [examined(100, 1_000_000), examined(50, 2_000_000)];
        assert_eq!(totals(&work), (150, Some(3_000_000)));
        assert_eq!(totals(&[]), (0, Some(0)));
    }

    #[test]
    fn a_retried_folder_is_not_counted_twice() {
        let mut plan = Plan::default();
        plan.work(0).estimate = 10;
        plan.work(0).examined = Some((10, 1000));
        plan.work(0).messages_done = 4;
        plan.work(0).bytes_done = 450;
        // The second attempt finds 6 left (550 bytes): the plan still says 10 and 1000.
        let w = plan.work(0);
        w.examined = Some((w.messages_done + 6, w.bytes_done + 550));
        assert_eq!(plan.messages(), (4, 10));
        assert_eq!(plan.length(), Some(1000));
    }

    #[test]
    fn the_header_names_every_folder_running_now() {
        let mut plan = Plan {
            folders: 5,
            finished: 2,
            ..Plan::default()
        };
        plan.running.insert(3, "Archive/2024".into());
        plan.running.insert(1, "INBOX".into());
        assert_eq!(
            plan.header(Direction::Fetch),
            "pull 2/5 folders, now: INBOX, Archive/2024"
        );
        plan.running.clear();
        assert_eq!(plan.header(Direction::Send), "push 2/5 folders");
    }

    #[test]
    fn the_amount_line_says_fetch_for_pull_and_send_for_push() {
        let line = amount_text(Direction::Fetch, 1_500_000, Some(3_000_000), false, (3, 7));
        assert_eq!(line, "1.5 MB of 3.0 MB · 3/7 messages to fetch");
        let line = amount_text(Direction::Fetch, 1_500_000, Some(3_000_000), true, (3, 7));
        assert_eq!(line, "1.5 MB of ~3.0 MB · 3/7 messages to fetch");
        let line = amount_text(Direction::Send, 1_500_000, None, true, (3, 7));
        assert_eq!(line, "1.5 MB of ? · 3/7 messages to send");
    }

    #[test]
    fn the_rate_is_hidden_until_data_has_flowed_for_a_few_seconds() {
        let mut r = Rate::default();
        // Listing and examining: no bytes, no rate.
        for i in 0..20 {
            r.sample(i as f64 * 0.2, 0);
        }
        assert_eq!(r.per_sec(), None);
        let mut t = 4.0;
        let mut pos = 0;
        while t < 6.0 {
            t += 0.2;
            pos += 20_000;
            r.sample(t, pos);
        }
        assert_eq!(r.per_sec(), None, "2 s of data is not enough");
        while t < 30.0 {
            t += 0.2;
            pos += 20_000;
            r.sample(t, pos);
        }
        let rate = r.per_sec().unwrap();
        assert!((rate - 100_000.0).abs() < 1_000.0, "{rate}");
    }

    #[test]
    fn one_stalled_second_lowers_the_rate_only_a_little() {
        let mut r = Rate::default();
        let mut pos = 0;
        for i in 0..100 {
            pos += 50_000;
            r.sample(i as f64 * 0.2, pos);
        }
        let before = r.per_sec().unwrap();
        for i in 100..105 {
            r.sample(i as f64 * 0.2, pos);
        }
        let after = r.per_sec().unwrap();
        assert!(
            after < before && after > before * 0.8,
            "{before} -> {after}"
        );
        // A long stall brings it down towards nothing rather than freezing it.
        for i in 105..400 {
            r.sample(i as f64 * 0.2, pos);
        }
        assert!(r.per_sec().unwrap() < before * 0.01);
    }

    #[test]
    fn the_eta_is_sane_or_not_shown() {
        assert_eq!(eta_text(None, Some(1000.0)), "ETA --");
        assert_eq!(eta_text(Some(1000), None), "ETA --");
        assert_eq!(eta_text(Some(1000), Some(0.0)), "ETA --");
        assert_eq!(eta_text(Some(0), Some(0.0)), "ETA 0s");
        assert_eq!(eta_text(Some(42_000), Some(1000.0)), "ETA 42s");
        assert_eq!(eta_text(Some(185_000), Some(1000.0)), "ETA 3m 05s");
        assert_eq!(eta_text(Some(7_500_000), Some(1000.0)), "ETA 2h 05m");
        // What once showed as "4390y": a near-zero rate over gigabytes.
        assert_eq!(eta_text(Some(5_000_000_000), Some(36.0)), "ETA >99h");
    }

    #[test]
    fn json_output_escapes_what_a_terminal_acts_on_and_keeps_the_value() {
        let v = serde_json::json!({ "name": "a\u{1b}]0;t\u{7}b\u{7f}\u{9b}\u{202e}Entwürfe\nx" });
        let text = json_text(&v).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && crate::text::needs_escape(c)),
            "{text:?}"
        );
        assert!(
            text.contains(r#"a\u001b]0;t\u0007b\u007f\u009b\u202eEntwürfe\nx"#),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn human_bytes_uses_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(52_400_000), "52.4 MB");
    }
}
