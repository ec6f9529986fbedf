//! The commands that need no server: `bundle`, `export`, `import`, `verify`, `gc`. Each handler
//! returns a [`super::exit::Outcome`]; errors go up to `main`.

use anyhow::Result;

use super::args::{BundleArgs, BundleCommand, ExportArgs, GcArgs, ImportArgs, VerifyArgs};
use super::exit::{print_summary, usage, Outcome};
use imapferry::folders::Selection;
use imapferry::{bundle, export, import, ui, verify};

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    ui::print_json(v)
}

/// `imapferry bundle …`
pub fn bundle(a: BundleArgs) -> Result<Outcome> {
    match a.command {
        BundleCommand::Create(c) => {
            let r = bundle::create(&c.store, &c.out, c.full, c.max_size)?;
            for w in &r.warnings {
                ui::warn(w);
            }
            if c.json {
                print_json(&r)?;
            } else {
                print_summary(&r.summary());
            }
        }
        BundleCommand::Apply(c) => {
            let reports = bundle::apply(&c.store, &c.files)?;
            if c.json {
                print_json(&reports)?;
            } else {
                for r in &reports {
                    print_summary(&r.summary());
                }
            }
        }
        BundleCommand::List(c) => {
            for line in bundle::describe_store(&c.store)? {
                ui::print(&line);
            }
        }
    }
    Ok(Outcome::Done)
}

/// `imapferry export`
pub fn export(a: ExportArgs) -> Result<Outcome> {
    let opts = export::ExportOptions {
        store: a.store,
        format: a.format.into(),
        selection: Selection::new(&a.folders, &[], &[])?,
        out: a.out,
    };
    let r = export::run(&opts)?;
    if a.json {
        print_json(&r)?;
    } else {
        print_summary(&r.summary(&opts.out));
    }
    Ok(Outcome::from_complete(r.failures.is_empty()))
}

/// `imapferry import`
pub fn import(a: ImportArgs) -> Result<Outcome> {
    let source = match (a.maildir, a.mbox) {
        (Some(m), None) => import::Source::Maildir(m),
        (None, Some(f)) => import::Source::Mbox(f),
        _ => {
            return Err(usage("give exactly one of --maildir and --mbox"));
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
        print_summary(&r.summary());
    }
    Ok(Outcome::from_complete(r.failures.is_empty()))
}

/// `imapferry verify`: exit 3 when anything is wrong.
pub fn verify(a: VerifyArgs) -> Result<Outcome> {
    let r = verify::verify(&a.store, a.sample)?;
    if a.json {
        print_json(&r)?;
    } else {
        print_summary(&r.text());
    }
    Ok(Outcome::from_complete(r.problems.is_empty()))
}

/// `imapferry gc`
pub fn gc(a: GcArgs) -> Result<Outcome> {
    let r = verify::gc(&a.store, a.yes)?;
    if a.json {
        print_json(&r)?;
    } else {
        print_summary(&r.text());
    }
    Ok(Outcome::Done)
}
