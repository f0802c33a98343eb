//! dbt-herd's entry point: parse the command line, pick a face, run, and turn the
//! outcome into an honest exit status (see `error::exit`).

use std::io::IsTerminal;

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use color_eyre::eyre::WrapErr;

use crate::cli::{Cli, Command, OnHangup, RunArgs};
use crate::engine::process;
use crate::error::{UsageError, exit};
use crate::{
    config, config_file, demo, dry_run, html_report, report, runs, server, show, start, tui,
};

/// Runs dbt-herd with the process's arguments; returns the exit status.
pub fn main() -> i32 {
    // Everything dbt-herd and its dbt processes create is private to this user
    // (directories 0700, files 0600): state dirs hold logs, compiled SQL and
    // the run's options, on build boxes other people use too.
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    install_hooks();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_exit(&e),
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(report) => {
            let broken_pipe = report.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                // The reader of our output stopped early (`| head`): not a failure.
                process::kill_all_registered();
                return exit::OK;
            }
            if let Some(usage) = report.downcast_ref::<UsageError>() {
                eprintln!("dbt-herd: {usage}");
                exit::USAGE
            } else {
                eprintln!("dbt-herd: internal failure: {report:?}");
                exit::INTERNAL
            }
        }
    };
    process::kill_all_registered();
    code
}

fn install_hooks() {
    // color-eyre first, so that its panic hook is the one ours chains to. Its
    // environment section is noise for people reading a failure.
    let mut hooks = color_eyre::config::HookBuilder::default().display_env_section(false);
    if !std::io::stderr().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        hooks = hooks.theme(color_eyre::config::Theme::new());
    }
    let installed = hooks.install();
    if let Err(e) = installed {
        eprintln!("dbt-herd: error reports will be plain ({e})");
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Whatever went wrong, no dbt process may outlive us.
        process::kill_all_registered();
        previous(info);
    }));
}

/// Help and version go to stdout (exit 0); a bad command line is one line on
/// stderr naming the bad value (exit 2), not a page of usage.
fn clap_exit(e: &clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            exit::OK
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            exit::USAGE
        }
        _ => {
            eprintln!("dbt-herd: {}", usage_line(e));
            exit::USAGE
        }
    }
}

/// A clap error as one line in dbt-herd's own words: "invalid --flag 'value': why".
pub(crate) fn usage_line(e: &clap::Error) -> String {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let flag = context(ContextKind::InvalidArg)
        .map(|a| a.split([' ', '=']).next().unwrap_or_default().to_string());
    let value = context(ContextKind::InvalidValue);
    match (e.kind(), flag, value) {
        (ErrorKind::ValueValidation, Some(flag), Some(value)) => {
            let why = std::error::Error::source(e).map_or_else(String::new, ToString::to_string);
            if why.starts_with("invalid ") {
                // Our own parsers already name the flag and the value.
                why
            } else {
                format!("invalid {flag} '{value}': {why}")
            }
        }
        (ErrorKind::InvalidValue, Some(flag), Some(value)) => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => format!(": expected one of {}", v.join(", ")),
                _ => String::new(),
            };
            format!("invalid {flag} '{value}'{valid}")
        }
        _ => {
            let text = e.render().to_string();
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string()
        }
    }
}

/// The TUI needs a real terminal on both ends; anything else gets line output.
fn tui_possible() -> bool {
    std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

pub(crate) fn runtime() -> color_eyre::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")
}

fn run(cli: Cli) -> color_eyre::Result<i32> {
    match cli.command {
        Command::Run(args) if args.print_config => {
            config_file::print(&args, &mut std::io::stdout().lock())
        }
        // A resume runs with its stored options; a new run takes the config
        // file's defaults under its flags.
        Command::Run(args) if args.resume.is_none() => run_args(&config_file::merged(&args)?.0),
        Command::Run(args) => run_args(&args),
        Command::Serve => server::daemon::serve(),
        Command::Attach(args) => runtime()?.block_on(runs::attach(&args, tui_possible())),
        Command::Stop(args) => runtime()?.block_on(runs::stop(&args, &mut std::io::stdout())),
        Command::Ls(args) => runtime()?.block_on(runs::ls(&args, &mut std::io::stdout())),
        Command::Demo(args) => demo::run(&args, !args.headless && tui_possible()),
        Command::Show(args) => show::run(&args, &mut std::io::stdout().lock()),
        Command::Report(args) => {
            let path = html_report::write(&args.state_dir, args.output.as_deref())?;
            println!("{}", path.display());
            Ok(exit::OK)
        }
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "dbt-herd", &mut text);
            print_all(&text)
        }
        Command::Man => print_all(&man_page().wrap_err("cannot render the man page")?),
    }
}

/// One man page: the command, then each subcommand's synopsis and options (so
/// `man dbt-herd` documents `run`'s flags too).
fn man_page() -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        writeln!(page, ".SH \"DBT-HERD {}\"", name.to_uppercase())?;
        let sub = sub.clone().bin_name(format!("dbt-herd {name}"));
        let man = clap_mangen::Man::new(sub);
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
    }
    Ok(page)
}

/// `dbt-herd run`: a dry run, a run in the background (with or without the TUI),
/// or a headless run in the foreground.
fn run_args(args: &RunArgs) -> color_eyre::Result<i32> {
    if args.dry_run {
        return dry_run::run(args, args.json, &mut std::io::stdout().lock());
    }
    // JSON events are for scripts: they imply a headless run.
    let interactive = !args.headless && !args.json && tui_possible();
    if args.detach || interactive {
        return run_served(args, interactive && !args.detach);
    }
    run_headless(args)
}

/// Writes `text` to stdout; a reader that stopped early (`| head`) is not a failure.
fn print_all(text: &[u8]) -> color_eyre::Result<i32> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).wrap_err("cannot write to stdout")
        }
        _ => Ok(exit::OK),
    }
}

/// A run in the background, with the TUI attached to it (`tui`) or not
/// (`--detach`: print the state dir and return).
fn run_served(args: &RunArgs, tui: bool) -> color_eyre::Result<i32> {
    if args.resume.is_none() {
        // Bad options are reported here, at once, not from the background.
        config::RunSettings::from_args(args)?;
    }
    runtime()?.block_on(async {
        let state_dir = match server::daemon::launch(args, tui, None).await? {
            Ok(dir) => dir,
            Err(code) => return Ok(code),
        };
        let shown = state_dir.display().to_string();
        if !tui {
            println!("{shown}");
            eprintln!(
                "dbt-herd: the run goes on in the background · attach: dbt-herd attach {shown} · stop: dbt-herd stop {shown} · log: {shown}/{}",
                server::daemon::LOG_FILE
            );
            return Ok(exit::OK);
        }
        let link = match server::client::RemoteLink::connect(&state_dir, false).await {
            Ok(l) => l,
            Err(e) => {
                return Err(color_eyre::eyre::eyre!(
                    "the run started but its control socket does not answer ({e:?}); see {shown}/{}",
                    server::daemon::LOG_FILE
                ));
            }
        };
        let opts = tui::TuiOptions {
            mouse: !args.no_mouse,
            stop_on_hangup: args.on_hangup == Some(OnHangup::Stop),
            ..Default::default()
        };
        tui::attach(link, opts, &shown).await
    })
}

/// A headless run in the foreground: the engine in this process, served on its
/// control socket too (so `attach` can watch or steer it), stopped by SIGHUP.
fn run_headless(args: &RunArgs) -> color_eyre::Result<i32> {
    let started = std::time::Instant::now();
    let prepared = start::prepare(args)?;
    let state_dir = prepared.state.root.clone();
    runtime()?.block_on(async {
        let handle = start::launch(prepared, true);
        let opts = server::ServeOptions {
            wait_for_client: None,
            observer: None,
        };
        let (server, local) = server::Server::start(handle, &state_dir, opts)?;
        if !args.json {
            let outcome = report::run_headless(local, std::io::stdout(), None, false).await?;
            return Ok(server::daemon::finish(server, outcome, &state_dir, started).await);
        }
        // JSON events on stdout; the lines for people on stderr.
        let events = std::sync::Arc::new(std::sync::Mutex::new(report::json::JsonEvents::new(
            std::io::stdout(),
        )));
        let feed = events.clone();
        let observer: report::Observer = Box::new(move |ev, _| {
            if let Ok(mut e) = feed.lock() {
                e.on_event(ev);
            }
        });
        let outcome = report::run_headless(local, std::io::stderr(), Some(observer), false).await?;
        let summary = outcome.engine.summary.clone();
        let path = outcome.engine.summary_path.clone();
        let code = server::daemon::finish(server, outcome, &state_dir, started).await;
        if let Ok(mut e) = events.lock() {
            e.finished(code, &summary, path.as_deref());
        }
        Ok(code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> String {
        let e = Cli::try_parse_from(std::iter::once("dbt-herd").chain(args.iter().copied()))
            .unwrap_err();
        usage_line(&e)
    }

    #[test]
    fn clap_errors_read_as_one_line_naming_flag_and_value() {
        assert_eq!(
            line(&["run", "--workers", "0"]),
            "invalid --workers '0': must be at least 1"
        );
        assert_eq!(
            line(&["run", "-w", "x"]),
            "invalid --workers 'x': expected a whole number"
        );
        assert_eq!(
            line(&["run", "--budget", "999999999999999999999"]),
            "invalid --budget '999999999999999999999': too large (at most 4294967295)"
        );
        assert_eq!(
            line(&["run", "--command", "compile"]),
            "invalid --command 'compile': expected one of build, run, test, seed, snapshot"
        );
        assert_eq!(
            line(&["run", "--step", "3x"]),
            "invalid --step '3x': expected Nd, Nw or Nmo with N ≥ 1 (e.g. 1d, 2w, 1mo)"
        );
        assert_eq!(
            line(&["run", "--budget", "lots"]),
            "invalid --budget 'lots': expected a whole number or auto"
        );
        assert_eq!(
            line(&["run", "--breaker", "never"]),
            "invalid --breaker 'never': expected a whole number or off"
        );
        assert!(line(&["run", "--no-such-flag"]).contains("--no-such-flag"));
        assert!(!line(&["run", "--no-such-flag"]).contains('\n'));
    }
}
