//! Command-line options and handlers of the commands that need no server: `bundle`, `export`,
//! `import`, `verify`, `gc`. Each handler returns the process exit status (0 fine, 3 when
//! verify finds problems or import or export leaves something out, each listed); errors go up to `main`,
//! which prints them and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::folders::Selection;
use crate::{bundle, export, import, ui, verify};

#[derive(Args, Debug)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub command: BundleCommand,
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write what another store needs into FILE: everything the first time, afterwards what
    /// changed since this store's previous bundle.
    Create(BundleCreateArgs),
    /// Check bundles completely, then merge them into a store (created when missing).
    Apply(BundleApplyArgs),
    /// List the bundles a store made and applied.
    List(StoreOnlyArgs),
}

#[derive(Args, Debug)]
pub struct BundleCreateArgs {
    /// The store to bundle
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// The bundle file to write (must not exist)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A full bundle even when an earlier one exists
    #[arg(long)]
    pub full: bool,
    /// Split into volumes FILE.001, FILE.002, … each smaller than SIZE (K, M, G = binary
    /// units; 4G fits FAT32)
    #[arg(long = "max-size", value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BundleApplyArgs {
    /// The store to bring up to date (created when missing)
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Bundle files (for volumes: FILE, FILE.001 or any one volume); applied oldest first
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StoreOnlyArgs {
    /// The store directory
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The store to export
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// maildir (Maildir++) or mbox (mboxrd, one file per folder)
    #[arg(long, value_enum)]
    pub format: export::Format,
    /// Output directory (new or empty)
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Only this folder (UTF-8 path with `/`, e.g. `Archive/2024`); repeatable
    #[arg(long = "folder", value_name = "NAME")]
    pub folders: Vec<String>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["maildir", "mbox"])))]
pub struct ImportArgs {
    /// The store to import into (created when missing; not one made by pull)
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// A Maildir tree (Maildir++ or nested maildirs)
    #[arg(long, value_name = "PATH")]
    pub maildir: Option<PathBuf>,
    /// An mbox file (mboxrd)
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<PathBuf>,
    /// mbox: the folder to import into (default: the file name). Maildir: the folder the root
    /// becomes, subfolders below it (default: INBOX, subfolders at the top)
    #[arg(long, value_name = "NAME")]
    pub folder: Option<String>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The store to check
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Re-hash only about N % of the objects, chosen at random (e.g. 10%); sizes are checked
    /// for all
    #[arg(long, value_name = "N%", value_parser = parse_percent)]
    pub sample: Option<f64>,
    /// Print a machine-readable report (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// The store to clean
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Remove them; without it, only say what would be freed
    #[arg(long)]
    pub yes: bool,
    /// Print a machine-readable report (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 10%"))?;
    if n > 0.0 && n <= 100.0 {
        Ok(n)
    } else {
        Err(format!(
            "{s:?}: the sample must be above 0% and at most 100%"
        ))
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `imapferry bundle …`
pub fn bundle(a: BundleArgs) -> Result<ExitCode> {
    match a.command {
        BundleCommand::Create(c) => {
            let max = c
                .max_size
                .as_deref()
                .map(bundle::format::parse_size)
                .transpose()?;
            let r = bundle::create(&c.store, &c.out, c.full, max)?;
            for w in &r.warnings {
                ui::warn(w);
            }
            if c.json {
                print_json(&r)?;
            } else {
                ui::info(&r.summary());
            }
        }
        BundleCommand::Apply(c) => {
            let reports = bundle::apply(&c.store, &c.files)?;
            if c.json {
                print_json(&reports)?;
            } else {
                for r in &reports {
                    ui::info(&r.summary());
                }
            }
        }
        BundleCommand::List(c) => {
            for line in bundle::describe_store(&c.store)? {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `imapferry export`
pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let opts = export::ExportOptions {
        store: a.store,
        format: a.format,
        selection: Selection::new(&a.folders, &[])?,
        out: a.out,
    };
    let r = export::run(&opts)?;
    if a.json {
        print_json(&r)?;
    } else {
        ui::info(&r.summary(&opts.out));
    }
    Ok(exit_status(r.failures.is_empty()))
}

/// `imapferry import`
pub fn import(a: ImportArgs) -> Result<ExitCode> {
    let source = match (a.maildir, a.mbox) {
        (Some(m), None) => import::Source::Maildir(m),
        (None, Some(f)) => import::Source::Mbox(f),
        _ => {
            eprintln!("error: give exactly one of --maildir and --mbox");
            return Ok(ExitCode::from(2));
        }
    };
    let r = import::run(&import::ImportOptions {
        store: a.store,
        source,
        folder: a.folder,
    })?;
    if a.json {
        print_json(&r)?;
    } else {
        ui::info(&r.summary());
    }
    Ok(exit_status(r.failures.is_empty()))
}

/// 0 when everything was done, 3 when something was left out (each is listed).
fn exit_status(complete: bool) -> ExitCode {
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// `imapferry verify`: exit 3 when anything is wrong.
pub fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let r = verify::verify(&a.store, a.sample)?;
    if a.json {
        print_json(&r)?;
    } else {
        eprintln!("{}", crate::ui::printable_lines(&r.text()));
    }
    Ok(exit_status(r.problems.is_empty()))
}

/// `imapferry gc`
pub fn gc(a: GcArgs) -> Result<ExitCode> {
    let r = verify::gc(&a.store, a.yes)?;
    if a.json {
        print_json(&r)?;
    } else {
        eprintln!("{}", crate::ui::printable_lines(&r.text()));
    }
    Ok(ExitCode::SUCCESS)
}
