//! The `imapferry fleet` fixture shared by tests/fleet.rs and tests/fleet_parallel.rs: two
//! host1 and two host2 Dovecots (one of each namespace style), 12 accounts, one of them with a
//! wrong host2 password, and the accounts files that name them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::corpus::Corpus;
use super::dovecot::{Dovecot, DovecotConfig, NamespaceStyle};
use super::imap::seed;
use super::offline::{assert_same_contents, contents_of};
use super::run::{imapferry, Run};

/// Users on each Dovecot (`user0`..): 6 per host1, 12 accounts in all.
pub const USERS: usize = 6;

/// The account whose host2 password is wrong: user0 of the second host1.
pub const WRONG: (usize, usize) = (1, 0);

fn server(style: NamespaceStyle) -> Dovecot {
    let mut cfg = DovecotConfig::new().namespace(style);
    cfg.users = (0..USERS)
        .map(|i| (format!("user{i}"), format!("pw-{i}")))
        .collect();
    Dovecot::start(cfg)
}

/// Two host1s and two host2s (one of each namespace style); 12 accounts, account i of host1
/// `a` going to the same user on host2 `a`; account 0 of the second host1 has a wrong password
/// for host2 ([`WRONG`]).
pub struct Fleet {
    pub host1: [Dovecot; 2],
    pub host2: [Dovecot; 2],
}

impl Fleet {
    pub fn start() -> Fleet {
        let f = Fleet {
            host1: [
                server(NamespaceStyle::Slash),
                server(NamespaceStyle::InboxDot),
            ],
            host2: [
                server(NamespaceStyle::InboxDot),
                server(NamespaceStyle::Slash),
            ],
        };
        for h in &f.host1 {
            for i in 0..USERS {
                seed(h, &format!("user{i}"), &Corpus::small());
            }
        }
        f
    }

    /// `dir/accounts.txt`: passwords through a file and the environment (`FLEET_PW_i`, see
    /// [`fleet_command`]), the wrong one literal; a malformed line 14.
    pub fn accounts(&self, dir: &Path) -> PathBuf {
        let text = self.lines(dir, |s, i| {
            if (s, i) == WRONG {
                "wrong".to_string()
            } else {
                format!("env:FLEET_PW_{i}")
            }
        }) + "127.0.0.1;broken-line\n";
        let path = dir.join("accounts.txt");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `dir/accounts-files.txt`: every password as `file:PATH`, for runs that do not inherit
    /// the test's environment (a command over ssh). The [`WRONG`] account's host2 password
    /// file holds a wrong password unless `fixed`. No malformed line: it would make every
    /// shard exit 3, as every shard reads the whole file.
    pub fn accounts_in_files(&self, dir: &Path, fixed: bool) -> PathBuf {
        let wrong = dir.join("pw-wrong");
        std::fs::write(&wrong, "wrong\n").unwrap();
        let text = self.lines(dir, |s, i| {
            if (s, i) == WRONG && !fixed {
                format!("file:{}", wrong.display())
            } else {
                format!("file:{}", dir.join(format!("pw-{s}-{i}")).display())
            }
        });
        let path = dir.join("accounts-files.txt");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A comment line and one line per account; host1 passwords through `dir/pw-S-I` files,
    /// host2's from `pw2(S, I)`.
    fn lines(&self, dir: &Path, pw2: impl Fn(usize, usize) -> String) -> String {
        let mut text = String::from("# host1;user1;password1;host2;user2;password2;options\n");
        for (s, (h1, h2)) in self.host1.iter().zip(&self.host2).enumerate() {
            for i in 0..USERS {
                let pw_file = dir.join(format!("pw-{s}-{i}"));
                std::fs::write(&pw_file, format!("pw-{i}\n")).unwrap();
                text += &format!(
                    "127.0.0.1;user{i};file:{};127.0.0.1;user{i};{};--port1 {} --tls1 none --port2 {} --tls2 none;\n",
                    pw_file.display(),
                    pw2(s, i),
                    h1.port(),
                    h2.port()
                );
            }
        }
        text
    }

    /// Every account but `except` has on host2 exactly what it has on host1.
    pub fn assert_exact(&self, except: Option<(usize, usize)>) {
        for (s, (h1, h2)) in self.host1.iter().zip(&self.host2).enumerate() {
            for i in 0..USERS {
                if Some((s, i)) == except {
                    continue;
                }
                let user = format!("user{i}");
                assert_same_contents(
                    &contents_of(&h2.account(&user)),
                    &contents_of(&h1.account(&user)),
                    &format!("host2 #{s} {user}"),
                );
            }
        }
    }
}

/// `imapferry fleet run ACCOUNTS --stores STORES EXTRA…` with the `FLEET_PW_i` variables of
/// [`Fleet::accounts`] set.
pub fn fleet_command(accounts: &Path, stores: &Path, extra: &[&str]) -> Command {
    let mut c = imapferry();
    c.args(["fleet", "run"])
        .arg(accounts)
        .arg("--stores")
        .arg(stores)
        .args(extra);
    for i in 0..USERS {
        c.env(format!("FLEET_PW_{i}"), format!("pw-{i}"));
    }
    c
}

/// `imapferry fleet status --json` over one or more stores directories.
pub fn status_of(stores: &[&Path]) -> serde_json::Value {
    let mut c = imapferry();
    c.args(["fleet", "status", "--json"]);
    for s in stores {
        c.arg("--stores").arg(s);
    }
    let run: Run = c.output().unwrap().into();
    run.json()
}

/// The one failed account of a status of the fixture's 12 accounts (11 done).
pub fn the_failed_account(s: &serde_json::Value) -> serde_json::Value {
    assert_eq!(s["totals"]["accounts"], 12, "{s}");
    assert_eq!(s["totals"]["done"], 11, "{s}");
    s["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"] == "failed")
        .cloned()
        .unwrap()
}
