//! What `fleet run` records of each account, one JSON file per account in `DIR/.fleet/`, so
//! that `fleet status` can show it after the process is gone and a re-run knows what was
//! interrupted. Written whole to a temporary file and renamed: a kill leaves the old record or
//! the new one, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Done,
    Failed,
    /// Was running when the fleet process died; the next run takes it again.
    Interrupted,
    /// Stopped cleanly by a daily byte budget (exit 4): nothing is wrong, the next run after
    /// the time in its reason continues it.
    Budget,
}

/// A message or folder an account could not move.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub folder: String,
    pub uid: Option<u32>,
    pub reason: String,
}

/// One account's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub line: usize,
    pub host1: String,
    pub user1: String,
    pub host2: String,
    pub user2: String,
    pub phase: String,
    pub state: State,
    /// For a failed account: whether running it again may help (a dropped link may; a wrong
    /// password or bad options do not).
    pub retry_helps: Option<bool>,
    pub reason: Option<String>,
    /// For a failed account: what to change (the option or the accounts file's field).
    #[serde(default)]
    pub hint: Option<String>,
    pub started: i64,
    pub seconds: f64,
    pub exit_status: Option<i32>,
    pub pid: Option<u32>,
    /// Messages and bytes the pull fetched, the push sent.
    pub pulled: u64,
    pub pulled_bytes: u64,
    pub pushed: u64,
    pub pushed_bytes: u64,
    pub peak_rss_bytes: Option<u64>,
    pub failures: Vec<Item>,
}

/// The records directory of `stores`.
pub fn dir(stores: &Path) -> PathBuf {
    stores.join(".fleet")
}

/// Create `path` and any missing parent 0700 (the names in it say which accounts are being
/// migrated); `Ok(Some(mode))` when it already existed open to others.
pub fn private_dir(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let existed = path.is_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    Ok((existed && mode & 0o077 != 0).then_some(mode))
}

/// The records directory of `stores`, made private (it is the fleet's own: an earlier
/// version made it 0755).
pub fn records_dir(stores: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let d = dir(stores);
    if private_dir(&d)?.is_some() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(d)
}

pub fn write(stores: &Path, r: &Record) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = records_dir(stores)?;
    let tmp = d.join(format!(".{}.json.tmp", r.name));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, serde_json::to_string_pretty(r)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, d.join(format!("{}.json", r.name)))?;
    Ok(())
}

/// Every record under `stores`, sorted by name; unreadable files are skipped.
pub fn read_all(stores: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir(stores)) else {
        return Vec::new();
    };
    let mut v: Vec<Record> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| std::fs::read(&p).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Whether process `pid` is alive (a record left `running` by a fleet that died is not).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
