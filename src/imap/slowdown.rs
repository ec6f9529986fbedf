//! Gmail's slow-down: past a limit (or under load) it keeps answering, but sends bodies at
//! under 1 KiB/s and completes commands with `OK Success [THROTTLED]` (imapsync FAQ.Gmail;
//! traces in MailKit#1396, node-imap#593). Nothing fails, so nothing would stop a client that
//! does not look: it would crawl on, drawing on the account's daily limit.
//!
//! [`Slowdown`] is the policy of one connection: each `[THROTTLED]` answer to a command sent
//! after the last wait was asked for asks for the next wait (2 s, doubling up to a minute), held by every
//! connection of the endpoint before its next command; an answer without it ends the streak.
//! After [`GIVE_UP`] such waits in a row the connection stops ([`Slowdown::given_up`]): the
//! engines read that as the server's daily quota (exit 4, go on tomorrow), not as a failure.

use std::time::Duration;

/// Waits answered `[THROTTLED]` again after which the run stops for the day (2 + 4 + 8 + 16 +
/// 32 + 60 s, about two minutes of waiting).
pub const GIVE_UP: u32 = 6;

const FIRST_WAIT: Duration = Duration::from_secs(2);
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// Whether a tagged OK says `[THROTTLED]`: as its response code, or (as Gmail puts it) at the
/// end of its text.
pub fn says_throttled(code: Option<&str>, text: &str) -> bool {
    code.is_some_and(|c| {
        let kw = c.split_ascii_whitespace().next().unwrap_or("");
        kw.eq_ignore_ascii_case("THROTTLED")
    }) || text.to_ascii_uppercase().contains("[THROTTLED]")
}

/// One connection's streak of `[THROTTLED]` answers.
#[derive(Debug, Default, Clone)]
pub struct Slowdown {
    /// Throttled answers in a row, each to a command sent after the last wait was asked for.
    streak: u32,
    /// Commands (by tag number) sent before the last wait was asked for: their answers were
    /// already taken into account by it.
    fence: u64,
    /// Throttled answers on this connection, all told.
    total: u64,
}

impl Slowdown {
    /// The tagged OK of command number `tag` arrived; `throttled` when it said so; `next_tag`
    /// is the number the next command will get. Returns the wait to hold from now, when one is
    /// due.
    pub fn answer(&mut self, throttled: bool, tag: u64, next_tag: u64) -> Option<Duration> {
        self.total += u64::from(throttled);
        if tag < self.fence {
            // Sent before the wait: its answer (throttled or not) says nothing new.
            return None;
        }
        if !throttled {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.given_up() {
            return None;
        }
        self.fence = next_tag;
        Some((FIRST_WAIT * 2u32.pow(self.streak - 1)).min(LONGEST_WAIT))
    }

    /// True once [`GIVE_UP`] waits in a row were answered `[THROTTLED]` again.
    pub fn given_up(&self) -> bool {
        self.streak > GIVE_UP
    }

    /// Throttled answers on this connection.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmails_throttled_is_read_from_the_code_or_the_end_of_the_text() {
        assert!(says_throttled(None, "Success [THROTTLED]"));
        assert!(says_throttled(Some("THROTTLED"), "slow down"));
        assert!(!says_throttled(None, "Success"));
        assert!(!says_throttled(Some("READ-WRITE"), "selected"));
    }

    #[test]
    fn waits_double_answers_to_commands_sent_before_a_wait_do_not_count_and_a_clear_answer_ends_the_streak(
    ) {
        let s = Duration::from_secs;
        let mut p = Slowdown::default();
        // Commands 1-3 in flight; 1 is answered throttled.
        assert_eq!(p.answer(true, 1, 4), Some(s(2)));
        // 2 and 3 were sent before the wait.
        assert_eq!(p.answer(true, 2, 4), None);
        assert_eq!(p.answer(false, 3, 4), None);
        assert_eq!(p.answer(true, 4, 6), Some(s(4)));
        assert_eq!(p.answer(false, 6, 7), None);
        assert_eq!(p.answer(true, 7, 8), Some(s(2)));
        assert_eq!(p.total(), 4);
    }

    #[test]
    fn the_connection_gives_up_after_six_waits_answered_throttled_again() {
        let mut p = Slowdown::default();
        let mut waits = Vec::new();
        let mut tag = 1;
        while let Some(w) = p.answer(true, tag, tag + 1) {
            waits.push(w.as_secs());
            tag += 1;
        }
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60]);
        assert!(p.given_up());
    }
}
