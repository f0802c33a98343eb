//! dbt-herd's entry point: parse the command line, pick a face, run, exit with an
//! honest status (0 all succeeded, 1 some did not, 2 usage, 130 interrupted).

use std::io::IsTerminal;

use clap::Parser;
use dbt_herd::cli::{Cli, Command};
use dbt_herd::engine::process;
use dbt_herd::error::UsageError;
use dbt_herd::{demo, report, start, tui};

fn main() {
    // color-eyre first, so that its panic hook is the one our own hook chains to.
    let _ = color_eyre::install();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Whatever went wrong, no dbt process may outlive us.
        process::kill_all_registered();
        previous(info);
    }));

    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                std::process::exit(
                    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        2
                    } else {
                        0
                    },
                );
            }
            // One line naming the bad value, not a page of usage.
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("dbt-herd: {}", first.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };

    let code = match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dbt-herd: error: {e}");
            2
        }
    };
    process::kill_all_registered();
    std::process::exit(code);
}

/// The TUI needs a real terminal on both ends; anything else gets line output.
fn tui_possible() -> bool {
    std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn real_main(cli: Cli) -> Result<i32, UsageError> {
    match cli.command {
        Command::Run(args) => {
            let prepared = start::prepare(&args)?;
            let interactive = !args.headless && tui_possible();
            for id in &prepared.changed {
                eprintln!("dbt-herd: batch {id} changed since it succeeded; it runs again");
            }
            let rt = runtime().map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
            rt.block_on(async {
                let handle = start::start(prepared)
                    .map_err(|e| UsageError(format!("cannot open the journal: {e}")))?;
                let outcome = if interactive {
                    tui::run(handle, tui::TuiOptions::default()).await
                } else {
                    report::run_headless(handle, std::io::stdout(), None).await
                }
                .map_err(|e| UsageError(format!("{e}")))?;
                Ok(outcome.exit_code())
            })
        }
        Command::Demo(args) => demo::run(&args, !args.headless && tui_possible()),
    }
}
