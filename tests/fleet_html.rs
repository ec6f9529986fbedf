//! `fleet status --html` (issue 13): the page a migration manager opens, rendered in headless
//! Chromium: the rows counted from the DOM after its script ran, a screenshot kept in the test's
//! output directory.

mod common;

use std::process::Command;

use common::run::{imapferry, Run};
use common::*;

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

#[test]
fn the_html_status_page_renders_in_chromium_with_one_row_per_account() {
    let Some(browser) = chromium() else {
        panic!("headless Chromium is needed: apt-get install chromium (scripts/test does)");
    };
    let mut cfg = DovecotConfig::new();
    cfg.users = (0..4).map(|i| (format!("u{i}"), format!("p{i}"))).collect();
    let h1 = Dovecot::start(cfg.clone());
    let h2 = Dovecot::start(cfg);
    for i in 0..4 {
        seed(&h1, &format!("u{i}"), &Corpus::small());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..4 {
        // The last one has a wrong host2 password.
        let pw2 = if i == 3 {
            "nope".to_string()
        } else {
            format!("p{i}")
        };
        text += &format!(
            "127.0.0.1;u{i};p{i};127.0.0.1;u{i};{pw2};--port1 {} --tls1 none --port2 {} --tls2 none;\n",
            h1.port(),
            h2.port()
        );
    }
    let accounts = dir.path().join("accounts");
    std::fs::write(&accounts, text).unwrap();
    let stores = dir.path().join("stores");
    let run: Run = imapferry()
        .args(["fleet", "run"])
        .arg(&accounts)
        .arg("--stores")
        .arg(&stores)
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 3, "{}", run.stderr);

    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-html");
    std::fs::create_dir_all(&out).unwrap();
    let page = out.join("fleet.html");
    let status: Run = imapferry()
        .args(["fleet", "status", "--stores"])
        .arg(&stores)
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap()
        .into();
    assert_eq!(status.code, 3, "not every account is done");
    eprintln!("{}", status.stdout);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network resource"
    );

    let url = format!("file://{}", page.display());
    let profile = dir.path().join("chromium-profile");
    let headless = |extra: &[String]| {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1400,500",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = headless(&["--dump-dom".into()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let rows = dom.matches("<tr class=\"account").count();
    let failed = dom.matches("<tr class=\"account failed").count();
    assert_eq!((rows, failed), (4, 1), "{dom}");
    assert!(dom.contains("3 done, 1 failed"), "{dom}");
    let shot = out.join("fleet.png");
    headless(&[format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real screenshot"
    );
    eprintln!(
        "{} rows ({} failed) in the DOM; screenshot {} ({} bytes)",
        rows,
        failed,
        shot.display(),
        png.len()
    );
}
