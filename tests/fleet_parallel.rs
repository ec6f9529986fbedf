//! GNU parallel running `imapferry fleet run --shard K/3` for real, over ssh, the way
//! docs/fleet.md tells users to: two sshd instances on loopback ports stand for two machines,
//! one job slot each, three shards; the shard with the wrong password exits 3 and the joblog
//! says so; `fleet status` over the three stores directories sees the whole fleet; after the
//! password is fixed, `parallel --resume-failed` runs that shard again and every account is
//! exact on host2.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{status_of, the_failed_account, Fleet, WRONG};
use common::run::{binary, imapferry, Run};
use common::server::free_port;

const SSHD: &str = "/usr/sbin/sshd";

/// The most one `parallel` invocation may take (`--timeout` per job is below it).
const LIMIT: Duration = Duration::from_secs(50);

/// Run a command to completion (stdout and stderr to files in `dir`), killed and failed after
/// `limit`.
fn run_bounded(mut c: Command, dir: &Path, what: &str, limit: Duration) -> Run {
    let out = dir.join(format!("{what}.out"));
    let err = dir.join(format!("{what}.err"));
    let mut child = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} still running after {limit:?}:\n{}{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sshd on 127.0.0.1:`port`, in the foreground, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Start it with a config of its own in `dir` (host key and authorized keys there too)
    /// and wait until it answers with its banner.
    fn start(dir: &Path, n: usize) -> Sshd {
        // Privilege separation needs this directory; the system service would create it.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let config = dir.join(format!("sshd-{n}.conf"));
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     HostKey {dir}/host-key\n\
                     PidFile {dir}/sshd-{n}.pid\n\
                     AuthorizedKeysFile {dir}/authorized_keys\n\
                     StrictModes no\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     UsePAM no\n\
                     PermitRootLogin yes\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            let log = dir.join(format!("sshd-{n}.log"));
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start sshd");
            let mut sshd = Sshd { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if sshd.child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile, or a bad config: the log says
                }
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut banner = [0u8; 4];
                    if s.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                        return sshd;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(sshd);
            last = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start:\n{last}");
    }
}

/// Two sshds ("machines") that let the test's own key in, and the files GNU parallel needs
/// to log in to them: an ssh client config and an sshloginfile with one job slot each.
struct Machines {
    sshd: [Sshd; 2],
    sshloginfile: PathBuf,
}

impl Machines {
    fn start(dir: &Path) -> Machines {
        keygen(&dir.join("host-key"));
        keygen(&dir.join("client-key"));
        std::fs::copy(dir.join("client-key.pub"), dir.join("authorized_keys")).unwrap();
        let sshd = [Sshd::start(dir, 1), Sshd::start(dir, 2)];
        let client = dir.join("ssh_config");
        std::fs::write(
            &client,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n",
                dir.join("client-key").display()
            ),
        )
        .unwrap();
        let user = Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        // GNU parallel takes a port for an IPv4 host only as part of an ssh command:
        // `[ncpus/]ssh OPTIONS user@host`, the host last.
        let sshloginfile = dir.join("sshloginfile");
        let lines: String = sshd
            .iter()
            .map(|s| {
                format!(
                    "1/ssh -F {} -p {} {user}@127.0.0.1\n",
                    client.display(),
                    s.port
                )
            })
            .collect();
        std::fs::write(&sshloginfile, lines).unwrap();
        Machines { sshd, sshloginfile }
    }
}

/// One line of a GNU parallel joblog.
#[derive(Debug)]
struct Job {
    seq: u32,
    host: String,
    exitval: i32,
}

/// The joblog read back: tab-separated, the columns named by its first line.
fn joblog(path: &Path) -> Vec<Job> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (seq, host, exitval) = (col("Seq"), col("Host"), col("Exitval"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Job {
                seq: f[seq].trim().parse().unwrap(),
                host: f[host].to_string(),
                exitval: f[exitval].trim().parse().unwrap(),
            }
        })
        .collect()
}

/// `parallel [--resume-failed] --joblog JOBLOG --sshloginfile FILE imapferry fleet run ACCOUNTS
/// --stores DIR/stores-{} --shard {}/3 ::: 1 2 3`, absolute paths (the same machine).
fn parallel(dir: &Path, m: &Machines, accounts: &Path, resume_failed: bool) -> Command {
    let mut c = Command::new("parallel");
    if resume_failed {
        c.arg("--resume-failed");
    }
    c.arg("--joblog")
        .arg(dir.join("joblog"))
        .arg("--sshloginfile")
        .arg(&m.sshloginfile)
        .args(["--timeout", &(LIMIT.as_secs() - 5).to_string()])
        .arg(binary())
        .args(["fleet", "run"])
        .arg(accounts)
        .arg("--stores")
        .arg(format!("{}/stores-{{}}", dir.display()))
        .args(["--shard", "{}/3", ":::", "1", "2", "3"]);
    c
}

#[test]
fn gnu_parallel_runs_three_shards_on_two_ssh_machines_and_resume_failed_finishes_the_fleet() {
    common::require_tool(SSHD, "-V", "openssh-server");
    common::require_tool("parallel", "--version", "parallel");
    let whole = Instant::now();
    let f = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let m = Machines::start(dir);
    let accounts = f.accounts_in_files(dir, false);
    let stores: Vec<PathBuf> = (1..=3).map(|k| dir.join(format!("stores-{k}"))).collect();
    let stores: Vec<&Path> = stores.iter().map(|p| p.as_path()).collect();
    eprintln!("fixture and two sshds in {:.1?}", whole.elapsed());

    let t = Instant::now();
    let run = run_bounded(parallel(dir, &m, &accounts, false), dir, "parallel", LIMIT);
    let took = t.elapsed();
    let log = std::fs::read_to_string(dir.join("joblog")).unwrap();
    eprintln!(
        "parallel in {took:.1?}, exit status {}:\n{}{}\njoblog:\n{log}",
        run.code, run.stdout, run.stderr
    );
    // GNU parallel's exit status is the number of jobs that failed.
    assert_eq!(run.code, 1, "{}", run.stderr);
    let jobs = joblog(&dir.join("joblog"));
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let mut exits: Vec<i32> = jobs.iter().map(|j| j.exitval).collect();
    exits.sort();
    assert_eq!(exits, [0, 0, 3], "{jobs:?}");
    for s in &m.sshd {
        let p = format!("-p {} ", s.port);
        assert!(
            jobs.iter().any(|j| j.host.contains(&p)),
            "no job ran through port {}: {jobs:?}",
            s.port
        );
    }
    let failed_seq = jobs.iter().find(|j| j.exitval == 3).unwrap().seq;

    let s = status_of(&stores);
    let bad = the_failed_account(&s);
    assert!(
        bad["reason"].as_str().unwrap().contains("cannot log in"),
        "{bad}"
    );
    f.assert_exact(Some(WRONG));

    // The password fixed in the accounts file; the same command with --resume-failed.
    f.accounts_in_files(dir, true);
    let t = Instant::now();
    let again = run_bounded(parallel(dir, &m, &accounts, true), dir, "resume", LIMIT);
    let took = t.elapsed();
    let log = std::fs::read_to_string(dir.join("joblog")).unwrap();
    eprintln!(
        "parallel --resume-failed in {took:.1?}, exit status {}:\n{}{}\njoblog:\n{log}",
        again.code, again.stdout, again.stderr
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    let jobs = joblog(&dir.join("joblog"));
    assert_eq!(jobs.len(), 4, "only the failed shard runs again: {jobs:?}");
    assert_eq!(jobs[3].seq, failed_seq, "{jobs:?}");
    assert_eq!(jobs[3].exitval, 0, "{jobs:?}");

    let s = status_of(&stores);
    assert_eq!(s["totals"]["accounts"], 12, "{s}");
    assert_eq!(s["totals"]["done"], 12, "{s}");
    f.assert_exact(None);
    let mut table = imapferry();
    table.args(["fleet", "status"]);
    for s in &stores {
        table.arg("--stores").arg(s);
    }
    let table: Run = table.output().unwrap().into();
    assert_eq!(table.code, 0, "{}", table.stderr);
    eprintln!("{}", table.stdout);
    eprintln!("whole test in {:.1?}", whole.elapsed());
}
