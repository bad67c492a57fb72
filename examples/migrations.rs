//! The crate's SQL migrations, for a Supabase CLI project.
//!
//! ```text
//! cargo run --example migrations -- list
//! cargo run --example migrations -- write <supabase/migrations> <applied version>
//! ```
//!
//! `list` prints every migration file with the schema version it brings.
//! `write` copies the files a project at schema version `applied` lacks (0
//! for a new project; `select tenancy_schema_version()` tells, and the
//! crate's start-up check names it) into the project's migrations folder,
//! named after its latest migration, for `supabase db push`. The same is
//! `tenancy::migrations::write_missing` in your own code.

use std::process::ExitCode;

use tenancy::migrations::{MIGRATIONS, SCHEMA_VERSION, write_missing};

fn usage() -> ExitCode {
    eprintln!(
        "usage: migrations list\n       migrations write <supabase/migrations dir> <applied version>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["list"] => {
            for migration in MIGRATIONS {
                println!("{:>3}  {}", migration.version, migration.file);
            }
            println!("this crate needs schema version {SCHEMA_VERSION}");
            ExitCode::SUCCESS
        }
        ["write", dir, applied] => {
            let Ok(applied) = applied.parse::<u32>() else {
                eprintln!("applied version: not a whole number: {applied:?}");
                return usage();
            };
            match write_missing(dir.as_ref(), applied, chrono::Utc::now()) {
                Ok(written) if written.is_empty() => {
                    println!("nothing to write: schema version {applied} lacks no file");
                    ExitCode::SUCCESS
                }
                Ok(written) => {
                    for path in written {
                        println!("wrote {}", path.display());
                    }
                    println!("now run: supabase db push");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
